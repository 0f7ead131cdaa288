"""Hook specifications of durable's plugin framework (pluggy project ``durable``).

A plugin is a module or object with functions marked ``@durable_core.hookimpl`` and named after
these specs. Hooks are synchronous; what they register may be async. Installed distributions
expose plugins through the ``durable`` entry-point group.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

if TYPE_CHECKING:
    import click

    from ..events import ExecutionRun, TaskExecutionEvent
    from ..metrics import StorageOperationMetrics
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


class RunningExecutor(Protocol):
    """What ``durable_executor_running`` may use of the ``DurableExecutor`` it is given."""

    executor_id: str

    @property
    def storage(self) -> Storage:
        """The executor's storage, open (every call timed: ``get_storage_metrics``)."""
        ...

    def get_storage_metrics(self) -> dict[str, StorageOperationMetrics]:
        """Per storage operation: count, total, min, max and percentiles of its durations."""
        ...


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


@hookspec
def durable_execution_context() -> dict[str, str] | None:
    """Give what to keep with a new execution from the code that creates it (the trace it
    belongs to, a tenant), handed back when it runs (``ExecutionRun.context``).

    Called when an execution is created, in the creating code's context: the caller's task or
    thread for ``enqueue_task`` and the clients, the parent's run for a child or a finalize. Must
    be quick. The answers of all plugins are merged and stored with the execution; prefix your
    keys with your plugin's name unless they follow a standard (``traceparent``). One that raises,
    or returns anything but a dict of strings, is logged and left out.

    :return: a few short strings by name (4 KiB in all at most), or None.
    """


@hookspec
def durable_wrap_run(run: ExecutionRun) -> AbstractContextManager[object] | None:
    """Wrap each run of an execution by this executor: a span, a timer.

    Called on the engine's trio thread when a claimed execution starts running; the context
    manager returned is entered in the run's own trio task before the task's function is called,
    and left once the run's outcome is stored (``run.status`` and ``run.error`` then say what it
    was) or the run was cut off (``run.status`` None), so whatever it makes current (a
    ``contextvars`` value, an OpenTelemetry span) is current in the task's code and in the
    executions it creates. Only implemented hooks cost anything. One that raises when entered or
    left is logged, and the run goes on.

    :param run: the execution, attempt and times of this run (``durable_core.ExecutionRun``).
    :return: a context manager, or None to leave this run alone.
    """


@hookspec
def durable_executor_running(executor: RunningExecutor) -> Callable[[], Awaitable[None]] | None:
    """Work beside an executor while it runs: poll its storage for a gauge, flush a buffer.

    Called on the executor's trio thread once it has started (its storage open). The async
    function returned runs in the executor's background until it shuts down, then it is
    cancelled; one that raises is logged and the executor goes on.

    :param executor: the running ``DurableExecutor``, seen through ``RunningExecutor``.
    :return: an async function taking no argument, or None.
    """


@hookspec
def durable_http_endpoints(register: Callable[[str, Callable[[], tuple[str, bytes]]], None]) -> None:
    """Serve read-only GET endpoints from the HTTP servers durable runs: ``durable serve`` and
    ``durable worker --metrics-port``.

    Called once per server when it starts. Two plugins registering one path is an error.

    :param register: call ``register(path, render)``; ``render()`` returns ``(content_type,
        body)`` and is called for every request, on a thread of the server (not the engine's),
        so it must be thread-safe.
    """
