"""Hook specifications of durable's plugin framework (pluggy project ``durable``).

A plugin is a module or object with functions marked ``@durable_core.hookimpl`` and named after
these specs. Hooks are synchronous; what they register may be async. Installed distributions
expose plugins through the ``durable`` entry-point group.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

if TYPE_CHECKING:
    import click

    from ..events import TaskExecutionEvent
    from ..options import Option
    from ..serialization import Serializer
    from ..storage.contract import Storage

hookspec = pluggy.HookspecMarker("durable")

StorageFactory = Callable[..., "Storage | Awaitable[Storage]"]
"""Called with the storage's options as keyword arguments; returns a storage, or an awaitable
of one when opening needs I/O."""


class RegisterStorage(Protocol):
    """The ``register`` that ``durable_register_storages`` receives."""

    def __call__(self, name: str, factory: StorageFactory, options: Iterable[Option] | None = None) -> None: ...


@hookspec
def durable_register_storages(register: RegisterStorage) -> None:
    """Register storage backends by name.

    Called once when plugins are loaded; if it raises, the whole plugin is skipped.

    :param register: call ``register(name, factory, options)`` once per backend;
        ``factory(**options)`` returns a storage (or an awaitable of one) and is called when an
        executor or ``open_storage`` selects ``name``. ``options`` declares every keyword the
        factory takes (``durable_core.Option``); given options are checked against it before
        the factory is called, by ``durable config set`` too, and ``durable plugins --json``
        lists them. Without ``options`` nothing is checked.
    """


@hookspec
def durable_register_serializers(register: Callable[[str, Callable[[], Serializer]], None]) -> None:
    """Register payload serializers by name.

    :param register: call ``register(name, factory)``; ``factory()`` returns a serializer whose
        ``name`` equals ``name``.
    """


@hookspec(firstresult=True)
def durable_input_validator(schema: Any, task_id: str) -> Callable[[Any], Any] | None:
    """Turn an ``input_schema`` the core does not know into a validation function.

    Called once when a task is defined with ``input_schema=schema``. Stops at first non-None
    result.

    :param schema: the object given as ``input_schema``.
    :param task_id: the task being defined.
    :return: a function taking the raw input and returning the validated input, raising
        ``ValueError`` (or any exception) naming the offending field; or None if this plugin
        does not recognise ``schema``.
    """


@hookspec
def durable_task_execution_event(event: TaskExecutionEvent) -> None:
    """Observe a state change of an execution, after it is stored.

    Called for every change, unless ``durable_observing`` says that no observer listens. Must be
    quick; it runs on the engine's trio thread. One that raises is logged and disturbs nothing.

    :param event: what changed and why (``event.kind``, a ``durable_core.EventKind``); see
        ``durable_core.TaskExecutionEvent``.
    """


@hookspec
def durable_observing() -> Callable[[], bool] | None:
    """Say when this plugin wants ``durable_task_execution_event`` calls.

    Called once when plugins are loaded; if it raises, the whole plugin is skipped. The engine
    builds an event only while some observer listens: one that implements this hook while the
    function it returned says True, one that does not always. So an observer that listens only
    some of the time costs nothing the rest of the time.

    :return: a function called before every state change, on the engine's trio thread, so it
        must be quick: True while this plugin wants events. None: it always does.
    """


@hookspec
def durable_register_commands(cli: click.Group) -> None:
    """Add sub-commands to the ``durable`` command line.

    :param cli: the top-level click group; call ``cli.add_command(...)``.
    """
