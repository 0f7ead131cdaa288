"""Declared options: each with its name, type, default, bounds and a line of help.

One declaration serves everything that handles an option: the executor checks its keyword
arguments with it, the configuration file accepts ``[executor]`` keys by it, ``durable config
set`` validates with it, and error messages quote its bounds and default. Storage and serializer
plugins declare theirs with the same ``Option`` (see docs/plugins.md).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar, overload

_MiB = 1024 * 1024

OptionValue = int | float | str | bool
"""What an option may hold: the scalar types a TOML file and a command line can give."""

OptionType = type[int] | type[float] | type[str] | type[bool] | type[Path]
"""The declared type of an option: ``Path`` is a string or any ``os.PathLike``."""


@dataclass(frozen=True, slots=True)
class Option:
    """One option a component accepts.

    ``type`` is ``int``, ``float``, ``str``, ``bool`` or ``Path`` (an ``int`` is accepted where a
    ``float`` is expected, a string or an ``os.PathLike`` where a ``Path`` is). Numbers must be at
    least ``minimum`` (and above it when ``exclusive``) and at most ``maximum``; ``None`` leaves a
    side open. ``default`` None means the option is optional and has no default value: None is
    then accepted, meaning "not given".
    """

    name: str
    type: OptionType
    default: OptionValue | None
    help: str
    minimum: float | None = None
    exclusive: bool = False
    maximum: float | None = None

    def expected(self) -> str:
        """What a valid value looks like, for error messages: ``an integer >= 0 (default 1000)``."""
        kind = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
                Path: "a file path"}[self.type]
        bounds = []
        if self.minimum is not None:
            bounds.append(f"{'>' if self.exclusive else '>='} {self.minimum:g}")
        if self.maximum is not None:
            bounds.append(f"<= {self.maximum:g}")
        default = "" if self.default is None else f" (default {self.default!r})"
        return f"{kind}{' ' + ' and '.join(bounds) if bounds else ''}{default}"

    def accepts(self, value: object) -> bool:
        """Whether ``value`` has this option's type and lies within its bounds."""
        if value is None:
            return self.default is None
        if self.type is Path:
            return isinstance(value, str | os.PathLike)
        if self.type is bool or isinstance(value, bool):
            return isinstance(value, bool) and self.type is bool
        if self.type is str:
            return isinstance(value, str)
        number_types = (int,) if self.type is int else (int, float)
        if not isinstance(value, number_types) or math.isnan(value) or math.isinf(value):
            return False
        if self.minimum is not None and (value <= self.minimum if self.exclusive else value < self.minimum):
            return False
        return self.maximum is None or value <= self.maximum

    def check(self, value: object, owner: str) -> Any:
        """``value`` if it is valid, else ``ValueError`` naming ``owner``, the option and the bounds."""
        if not self.accepts(value):
            raise ValueError(f"Invalid {owner} option {self.name}: expected {self.expected()}, got {value!r}")
        return value

    def describe(self) -> dict[str, OptionValue | None]:
        """The declaration as JSON-ready data (``durable plugins --json``): name, type by name
        (``int``, ``float``, ``str``, ``bool``, ``Path``), default, help, and ``expected()``."""
        return {"name": self.name, "type": self.type.__name__, "default": self.default, "help": self.help,
                "expected": self.expected()}


def _option(default: OptionValue, help: str, **bounds: Any) -> Any:
    """A field of ``ExecutorOptions`` carrying its declaration (see ``Option``)."""
    return dataclasses.field(default=default, metadata={"help": help, **bounds})


@dataclass(frozen=True, slots=True)
class ExecutorOptions:
    """The tuning options of ``DurableExecutor``, checked when it is made (see docs/config.md)."""

    max_concurrent_task_executions: int = _option(
        1000, "Executions this executor runs at once; 0 makes it a client that never runs a task.", minimum=0)
    max_task_executions_per_batch: int = _option(
        100, "Executions claimed (and leases expired) per storage call.", minimum=0, exclusive=True)
    expire_leeway: float = _option(
        300.0, "Seconds a run may overrun its task's timeout (ignoring cancellation) before its "
        "executor stops renewing its lease and gives it up to another executor.", minimum=0)
    poll_interval: float = _option(
        0.5, "Seconds between looks for due work and expired leases when nothing wakes the executor.",
        minimum=0, exclusive=True)
    heartbeat_interval: float = _option(
        3.0, "Seconds between two heartbeats, each renewing the leases of every running execution; "
        "less than lease_duration.", minimum=0, exclusive=True)
    lease_duration: float = _option(
        10.0, "Seconds a lease lasts unless a heartbeat renews it: a crashed executor's executions "
        "are claimed again within lease_duration + poll_interval.", minimum=0, exclusive=True)
    shutdown_timeout: float = _option(
        15.0, "Seconds running tasks get to finish at shutdown before they are handed back.", minimum=0)
    max_lease_expirations: int = _option(
        10, "Lease expiries after which an execution fails instead of running again.", minimum=0)
    max_children_per_task_execution: int = _option(
        1000, "Children one parent task may return.", minimum=0, exclusive=True)
    max_serialized_input_size: int = _option(
        _MiB, "Bytes a serialized input may take.", minimum=0, exclusive=True)
    max_serialized_output_size: int = _option(
        _MiB, "Bytes a serialized output may take.", minimum=0, exclusive=True)

    def __post_init__(self) -> None:
        for option in EXECUTOR_OPTIONS.values():
            option.check(getattr(self, option.name), "executor")
        if self.heartbeat_interval >= self.lease_duration:
            raise ValueError(f"Invalid executor option heartbeat_interval: expected less than lease_duration "
                             f"({self.lease_duration:g}), got {self.heartbeat_interval!r}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> ExecutorOptions:
        """Options from a mapping of names to values (a config table); unknown names raise."""
        unknown = sorted(set(values) - set(EXECUTOR_OPTIONS))
        if unknown:
            raise ValueError(f"Unknown executor option {unknown[0]!r}; known: {', '.join(EXECUTOR_OPTIONS)}")
        return cls(**values)  # type: ignore[arg-type]  # each value is checked in __post_init__


def _declared(field: dataclasses.Field[Any]) -> Option:
    kind: type[int | float] = {"int": int, "float": float}[str(field.type)]
    default = field.default
    assert isinstance(default, int | float)
    bounds = {key: value for key, value in field.metadata.items() if key != "help"}
    return Option(field.name, kind, default, field.metadata["help"], **bounds)


EXECUTOR_OPTIONS: dict[str, Option] = {field.name: _declared(field) for field in dataclasses.fields(ExecutorOptions)}
"""Every executor option by name, in declaration order."""


T = TypeVar("T")


class HasOptions(Protocol):
    options: ExecutorOptions


class OptionView(Generic[T]):
    """A read-only attribute of the executor that shows one of its options, so that
    ``executor.poll_interval`` reads ``executor.options.poll_interval``."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    @overload
    def __get__(self, instance: None, owner: type) -> OptionView[T]: ...

    @overload
    def __get__(self, instance: HasOptions, owner: type) -> T: ...

    def __get__(self, instance: HasOptions | None, owner: type) -> OptionView[T] | T:
        if instance is None:
            return self
        value: T = getattr(instance.options, self._name)
        return value

    def __set__(self, instance: HasOptions, value: T) -> None:
        raise AttributeError(f"{self._name} is read-only; replace executor.options before the executor starts")
