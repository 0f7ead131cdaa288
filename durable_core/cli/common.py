"""What the commands share: user errors, loading the user's module, tables, trio with signals."""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
import trio

from ..config import ConfigError, DurableConfig, load_config
from ..durations import parse_duration
from ..errors import DurableExecutionError
from ..executor import DurableExecutor
from ..storage.contract import Storage
from ..storage.opening import open_storage
from ..tasks import Task
from .config_file import check_storage_options
from .logs import say

T = TypeVar("T")


class UserError(Exception):
    """A mistake of the user's: ``durable`` prints its one-line message and exits with code 2."""


USER_ERRORS = (UserError, ConfigError, DurableExecutionError)
"""Reported as one line without a traceback; anything else is a bug and keeps its traceback."""


def run(async_fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``trio.run``, with a user error or Ctrl-C raised inside a nursery unwrapped from its exception
    group, so that ``main`` reports it as such."""
    try:
        return trio.run(async_fn, *args)
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        if len(leaves) == 1 and isinstance(leaves[0], (*USER_ERRORS, KeyboardInterrupt)):
            raise leaves[0] from None
        raise


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    return [leaf for exc in group.exceptions
            for leaf in (_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])]


def _stopping(signum: int) -> None:
    say(f"\n{signal.Signals(signum).name} received: stopping")


async def run_until_signal(body: Callable[[], Awaitable[object]]) -> bool:
    """Run ``body`` until it returns or SIGINT/SIGTERM arrives; True if a signal stopped it.

    The caller then shuts down gracefully, outside the cancelled scope. A second signal during
    that shutdown gets the default handling: Ctrl-C raises KeyboardInterrupt, which ends the wait.
    """
    interrupted = False
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                nonlocal interrupted
                async for signum in signals:
                    interrupted = True
                    _stopping(signum)
                    nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            await body()
            nursery.cancel_scope.cancel()
    return interrupted


class Interruption:
    """What ``stopped_by_signals`` saw: ``received`` is set by the first signal, ``repeated``
    tells whether another one cut the shutdown short."""

    def __init__(self) -> None:
        self.received = trio.Event()
        self.repeated = False


@asynccontextmanager
async def stopped_by_signals(executor: DurableExecutor) -> AsyncIterator[Interruption]:
    """Watch SIGINT and SIGTERM for the whole life of ``executor``, its shutdown included (enter
    this first): the first signal sets ``received``, for the caller to shut down gracefully; any
    later one cuts that shutdown short (``DurableExecutor.cut_shutdown_short``), so the running
    executions are handed back at once instead of the process dying with them."""
    interruption = Interruption()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                async for signum in signals:
                    if not interruption.received.is_set():
                        _stopping(signum)
                        interruption.received.set()
                        continue
                    say(f"{signal.Signals(signum).name} received again: handing the running "
                        "executions back now")
                    interruption.repeated = True
                    executor.cut_shutdown_short()

            nursery.start_soon(watch)
            yield interruption
            nursery.cancel_scope.cancel()


# ----------------------------------------------------------------------------- the user's module


def import_target(target: str, what: str) -> tuple[Any, str]:
    """Import the module of ``MODULE:NAME`` (the working directory first on ``sys.path``, as with
    ``python -m``); returns the module and NAME. A module that does not exist is a user error; an
    import error inside the module keeps its traceback, as it is a bug there."""
    module_name, _, name = target.partition(":")
    if not module_name or not name:
        raise UserError(f"{target!r} is not MODULE:{what.upper()}; write e.g. app:{what} for the {what} in app.py")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (module_name + ".").startswith(exc.name + "."):
            raise
        raise UserError(
            f"module {module_name!r} not found in the working directory or on sys.path; "
            f"check the part before ':' in {target!r}"
        ) from None
    return module, name


def _attribute(module: Any, name: str, kind: type[T], what: str) -> T:
    candidates = sorted(key for key, value in vars(module).items() if isinstance(value, kind))
    value = getattr(module, name, None)
    if isinstance(value, kind):
        return value
    if value is None:
        close = difflib.get_close_matches(name, candidates, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UserError(f"module {module.__name__!r} has no {what} {name!r}; {hint}"
                        f"its {what}s: {', '.join(candidates) or 'none'}")
    article = "an" if what[0] in "aeiou" else "a"
    raise UserError(f"{module.__name__}:{name} is a {type(value).__name__}, not {article} {what}; "
                    f"its {what}s: {', '.join(candidates) or 'none'}")


def load_executor(target: str) -> DurableExecutor:
    """The ``DurableExecutor`` named by ``MODULE:EXECUTOR``."""
    module, name = import_target(target, "executor")
    return _attribute(module, name, DurableExecutor, "executor")


def load_task(target: str) -> tuple[DurableExecutor, Task]:
    """The task named by ``MODULE:TASK`` and the module-level executor that defines it. TASK is
    the task's id, or the name of the variable holding it (often the same)."""
    module, name = import_target(target, "task")
    executors = [value for value in vars(module).values() if isinstance(value, DurableExecutor)]
    by_id = [executor for executor in executors if name in executor.tasks]
    if not isinstance(getattr(module, name, None), Task) and by_id:
        return by_id[0], by_id[0].tasks[name]
    task = _attribute(module, name, Task, "task")
    for executor in executors:
        if executor.tasks.get(task.id) is task:
            return executor, task
    raise UserError(f"{target} is task {task.id!r}, but no DurableExecutor at the top level of "
                    f"module {module.__name__!r} defines it; define the executor in that module")


def task_id(task: str) -> str:
    """The task id that a ``TASK`` argument means: ``MODULE:TASK`` as for ``enqueue``, or a task id."""
    return load_task(task)[1].id if ":" in task else task


def executor_target(task_target: str, executor: DurableExecutor) -> str:
    """``MODULE:EXECUTOR`` for the executor that ``load_task(task_target)`` found, for a worker."""
    module = sys.modules[task_target.partition(":")[0]]
    name = next((key for key, value in vars(module).items() if value is executor), "EXECUTOR")
    return f"{module.__name__}:{name}"


def describe_storage(name: str, options: Mapping[str, Any], source: str | None = None) -> str:
    """``storage 'sqlite' (path='durable.db'; from durable.toml)``: where executions are, or are not."""
    shown = ", ".join(f"{key}={value!r}" for key, value in options.items())
    return f"storage {name!r} ({shown or 'no options'}{f'; from {source}' if source else ''})"


def warn_unless_shared(storage: Storage) -> None:
    """A storage confined to one process (``memory``) shows this command nothing of any other."""
    if not storage.capabilities.multi_process:
        click.echo("warning: this storage keeps executions inside one process, so this command and your "
                   "workers do not see each other's; select a shared one, e.g.: durable config set storage.name sqlite",
                   err=True)


@asynccontextmanager
async def client(executor: DurableExecutor) -> AsyncIterator[DurableExecutor]:
    """The executor started as a client: it enqueues, waits and wakes up, but claims nothing, so
    no task runs in this process (running them is the worker's job)."""
    executor.options = dataclasses.replace(executor.options, max_concurrent_task_executions=0)
    async with executor:
        warn_unless_shared(executor.storage)
        yield executor


@asynccontextmanager
async def configured_storage() -> AsyncIterator[tuple[Storage, DurableConfig]]:
    """The storage the configuration selects (and the configuration), for commands that need
    no user module."""
    config = load_config()
    check_storage_options(config)  # a bad option named with the file it is in
    async with open_storage(config.storage.name, **config.storage.options) as storage:
        warn_unless_shared(storage)
        yield storage, config


# ----------------------------------------------------------------------------- input and output


def json_value(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """Click callback: the option's JSON value, None when it is not given."""
    if value is None:
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON ({exc}); quote it for the shell, e.g. "
                                 f"'{{\"file\": \"report.pdf\"}}'") from None
    except RecursionError:
        raise click.BadParameter("JSON nested too deeply to read") from None
    except ValueError as exc:  # an integer longer than sys.get_int_max_str_digits()
        raise click.BadParameter(f"cannot read this JSON: {exc}") from None


def duration(value: str) -> float:
    """The seconds of a duration option's value: 90s, 30m, 12h, 7d, 2w (``--older-than``, ``--delay``)."""
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def to_json(value: Any) -> str:
    """JSON for output: datetimes in ISO 8601 with their time zone, other values JSON cannot
    represent as their ``str``."""
    return json.dumps(value, default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v), ensure_ascii=False)


STATUS_COLORS = {"completed": "green", "ready": "cyan", "running": "yellow",
                 "waiting_for_children": "yellow", "waiting_for_finalize": "yellow"}


def styled(status: str) -> str:
    """A status coloured for a terminal, errors red; plain with ``NO_COLOR`` set (no-color.org).
    ``click.echo`` drops the colour where the output is not a terminal."""
    if os.environ.get("NO_COLOR"):
        return status
    return click.style(status, fg=STATUS_COLORS.get(status, "red"))


def timestamp(seconds: float | None) -> str:
    """A time for a table: ``2025-01-01 12:00:00`` (UTC, which the column header says)."""
    return "-" if seconds is None else datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def iso_timestamp(seconds: float | None) -> str | None:
    """A time for JSON: ISO 8601 with its time zone, ``2025-01-01T12:00:00.123456+00:00``."""
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC).isoformat()


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Rows as left-aligned columns under upper-case headers."""
    cells = [[str(header).upper() for header in headers], *[[str(cell) for cell in row] for row in rows]]
    widths = [max(len(click.unstyle(row[column])) for row in cells) for column in range(len(headers))]
    return "\n".join(
        "  ".join(cell + " " * (width - len(click.unstyle(cell))) for cell, width in zip(row, widths)).rstrip()
        for row in cells
    )
