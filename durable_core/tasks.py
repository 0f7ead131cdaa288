"""Tasks: what ``executor.task`` and friends register (checked at definition time), the children
a parent task asks for, and how user code is called."""

from __future__ import annotations

import functools
import inspect
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import trio

from .models import RetryOptions
from .storage.contract import DEFAULT_QUEUE, MAX_PRIORITY

_TASK_ID = re.compile(r"[A-Za-z0-9_]+")
_QUEUE = re.compile(r"[A-Za-z0-9_.:-]{1,255}")


class TaskKind(StrEnum):
    TASK = "task"
    PARENT = "parent"
    SLEEPING = "sleeping"
    SEQUENTIAL = "sequential"
    LOOPING = "looping"


@dataclass(frozen=True, slots=True, eq=False)
class Task:
    """A registered task. Executors know tasks by ``id``; the object carries its defaults.

    ``run`` is the user's function (async, or plain ``def`` run in a worker thread). For parent
    kinds, ``finalize`` is a ``Task`` or a callable; ``steps`` holds a sequence's tasks or a loop's
    iteration task; ``max_attempts`` and ``iteration_sleep`` configure a loop.
    """

    id: str
    kind: TaskKind
    timeout: float
    retry: RetryOptions
    sleep_before_run: float
    run: Callable[..., Any] | None = None
    validator: Callable[[Any], Any] | None = None
    finalize: Task | Callable[..., Any] | None = None
    steps: tuple[Task, ...] = ()
    max_attempts: int = 0
    iteration_sleep: float | Callable[[int], float] | None = None
    queue: str = DEFAULT_QUEUE
    priority: int = 0
    max_concurrency: int | None = None
    """At most this many executions of the task running at once across every executor on the
    storage (None: no limit); the storage enforces it in its claim."""
    rate_limit: tuple[int, float] | None = None
    """At most this many (first) executions claimed per sliding period of this many seconds across
    every executor on the storage, parsed from "N/s|m|h|d" (None: no limit); the storage enforces it."""

    def __repr__(self) -> str:
        return f"<Task {self.id} ({self.kind})>"


def check_task_id(task_id: object) -> str:
    if not isinstance(task_id, str) or not task_id:
        raise ValueError(f"Task id cannot be empty (got {task_id!r})")
    if len(task_id) > 255:
        raise ValueError(f"Task id cannot be longer than 255 characters [idLength={len(task_id)}]")
    if not _TASK_ID.fullmatch(task_id):
        raise ValueError(
            f"Task id can only contain alphanumeric characters and underscores (got {task_id!r})"
        )
    return task_id


def check_queue(owner: str, queue: object) -> str:
    """A queue name (of ``owner``: "task x", "the worker"): 1..255 letters, digits, ``_-.:``."""
    if not isinstance(queue, str) or not _QUEUE.fullmatch(queue):
        raise ValueError(f"Invalid queue for {owner}: a name of 1 to 255 letters, digits, '_', '-', '.' "
                         f"or ':' is expected, got {queue!r}")
    return queue


def check_priority(owner: str, priority: object) -> int:
    """A priority (of ``owner``: "task x"): an integer from 0 to ``MAX_PRIORITY``, higher claimed first."""
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= MAX_PRIORITY:
        raise ValueError(f"Invalid priority for {owner}: an integer from 0 to {MAX_PRIORITY:,} is expected "
                         f"(higher runs first), got {priority!r}")
    return priority


MAX_LIMIT = 1_000_000
"""The largest ``max_concurrency``, and the largest N of a ``rate_limit``: more is surely a mistake."""


def check_max_concurrency(owner: str, max_concurrency: object) -> int | None:
    """A concurrency limit (of ``owner``: "task x"): None, or an integer from 1 to ``MAX_LIMIT``."""
    if max_concurrency is not None and (isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int)
                                        or not 1 <= max_concurrency <= MAX_LIMIT):
        raise ValueError(f"Invalid max_concurrency for {owner}: an integer of at least 1 and at most 1,000,000 "
                         f"(or None, no limit) is expected, got {max_concurrency!r}")
    return max_concurrency


_RATE = re.compile(r"([1-9][0-9]{0,6})/([smhd])")
_PERIODS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def check_rate_limit(owner: str, rate_limit: object) -> tuple[int, float] | None:
    """A rate limit (of ``owner``: "task x"): None, or "N/s", "N/m", "N/h" or "N/d" (N at least 1)
    as (N, period in seconds)."""
    if rate_limit is None:
        return None
    match = _RATE.fullmatch(rate_limit) if isinstance(rate_limit, str) else None
    if match is None or int(match[1]) > MAX_LIMIT:
        raise ValueError(f"Invalid rate_limit for {owner}: \"N/s\", \"N/m\", \"N/h\" or \"N/d\" with N an integer "
                         f"from 1 to 1,000,000 (or None, no limit) is expected, e.g. \"100/m\", got {rate_limit!r}")
    return int(match[1]), _PERIODS[match[2]]


MAX_DELAY = 10 * 365.25 * 86400
"""The longest wait an enqueue may ask for (``delay``, ``at``): 10 years, in seconds."""


def check_delay(owner: str, delay: object, at: object, now: float) -> float:
    """The seconds an enqueue (of ``owner``: "task x", "an enqueue") at ``now`` waits before it
    is due: its ``delay``, or until its ``at`` (a timezone-aware datetime; one in the past is now);
    0 without either. Beyond ``MAX_DELAY``, surely a mistake (milliseconds for seconds): refused."""
    if delay is not None and at is not None:
        raise ValueError(f"Invalid enqueue of {owner}: give delay (seconds from now) or at (a datetime), not both")
    if at is not None:
        if not isinstance(at, datetime):
            raise ValueError(f"Invalid at for {owner}: a timezone-aware datetime is expected, got {at!r}")
        if at.utcoffset() is None:
            raise ValueError(f"Invalid at for {owner}: {at.isoformat()} has no time zone; give it one, e.g. "
                             "tzinfo=timezone.utc or tzinfo=ZoneInfo('Europe/Paris')")
        seconds = max(0.0, at.timestamp() - now)
        if seconds > MAX_DELAY:
            raise ValueError(f"Invalid at for {owner}: at most 10 years from now is allowed, got {at.isoformat()}")
        return seconds
    if delay is None:
        return 0.0
    if isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 <= delay <= MAX_DELAY:
        raise ValueError(f"Invalid delay for {owner}: a number of seconds from 0 to {MAX_DELAY:,.0f} (10 years) "
                         f"is expected, got {delay!r}")
    return float(delay)


def check_timeout(task_id: str, timeout: object) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0 or math.isinf(timeout):
        raise ValueError(f"Invalid timeout value for task {task_id}: must be a finite number of seconds > 0, got {timeout!r}")
    return float(timeout)


def check_sleep_before_run(task_id: str, sleep: object) -> float:
    if sleep is None:
        return 0.0
    if isinstance(sleep, bool) or not isinstance(sleep, int | float) or not sleep >= 0 or math.isinf(sleep):
        raise ValueError(f"Invalid sleep_before_run for task {task_id}: must be a finite number of seconds >= 0, got {sleep!r}")
    return float(sleep)


def check_retry(task_id: str, retry: object) -> RetryOptions:
    if retry is None:
        return RetryOptions()
    if not isinstance(retry, RetryOptions):
        raise ValueError(f"Invalid retry options for task {task_id}: expected RetryOptions, got {retry!r}")
    return retry


@dataclass(frozen=True, slots=True)
class ChildTask:
    """One child a parent task asks for; options left None use the child task's defaults."""

    task: Task
    input: Any = None
    retry: RetryOptions | None = None
    sleep_before_run: float | None = None
    timeout: float | None = None


def child_task(
    task: Task,
    input: Any = None,
    *,
    retry: RetryOptions | None = None,
    sleep_before_run: float | None = None,
    timeout: float | None = None,
) -> ChildTask:
    return ChildTask(task, input, retry, sleep_before_run, timeout)


@dataclass(frozen=True, slots=True)
class ParentTaskResult:
    """What a parent task's run function returns: its own output and the children to run."""

    output: Any = None
    children: list[ChildTask] = field(default_factory=list)


async def call_user_code(fn: Callable[..., Any], *args: Any) -> Any:
    """Call a run or finalize function: coroutine functions directly, plain functions in a worker
    thread (abandoned if cancelled), so that user code never blocks the engine."""
    if _is_async(fn):
        return await fn(*args)
    return await trio.to_thread.run_sync(functools.partial(fn, *args), abandon_on_cancel=True)


def _is_async(fn: Callable[..., Any]) -> bool:
    try:
        return _is_async_cached(fn)
    except TypeError:  # unhashable callable
        return _is_coroutine_function(fn)


def _is_coroutine_function(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))


_is_async_cached = functools.cache(_is_coroutine_function)
