"""Stored records: building a new execution's record, and turning a record into what users see."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from .errors import DurableExecutionError
from .ids import new_execution_id
from .models import ExecutionRef, ParentRef, RetryOptions, TaskExecution
from .payloads import PayloadCodec
from .status import TaskExecutionStatus as S
from .storage.contract import ExecutionRecord, Payload
from .tasks import (
    Task,
    TaskKind,
    check_delay,
    check_priority,
    check_queue,
    check_retry,
    check_sleep_before_run,
    check_timeout,
)


def new_record(task: Task, input: Any, now: float, codec: PayloadCodec, *,
               retry: RetryOptions | None = None, sleep_before_run: float | None = None,
               timeout: float | None = None, root: ExecutionRef | None = None,
               parent: ParentRef | None = None, idempotency_key: str | None = None,
               payload: Payload | None = None, context: Mapping[str, str] | None = None,
               queue: str | None = None, priority: int | None = None, delay: float | None = None,
               at: datetime | None = None) -> ExecutionRecord:
    """A new execution of ``task``; ``payload`` (an already serialized input) wins over ``input``;
    ``context`` is what plugins keep with it (``durable_execution_context``).

    Options left None take the task's defaults. ``delay`` (or ``at``, as a delay from ``now``)
    comes before the ``sleep_before_run``: the record is stored ``ready``, due at ``start_at``.
    A sleeping execution is stored ``running`` at once, its lease lasting its timeout: it waits
    to be woken, not to be claimed.
    """
    retry = task.retry if retry is None else check_retry(task.id, retry)
    sleep = task.sleep_before_run if sleep_before_run is None else check_sleep_before_run(task.id, sleep_before_run)
    timeout = task.timeout if timeout is None else check_timeout(task.id, timeout)
    queue = task.queue if queue is None else check_queue(f"task {task.id}", queue)
    priority = task.priority if priority is None else check_priority(f"task {task.id}", priority)
    wait = check_delay(f"task {task.id}", delay, at, now)
    if task.kind is TaskKind.SLEEPING:
        if delay is not None or at is not None:
            raise DurableExecutionError(f"Invalid enqueue of sleeping task {task.id}: it waits to be woken from "
                                        "its enqueue on, so delay and at do not apply", is_retryable=False)
        unique_id = codec.decode(payload) if payload is not None else input
        check_unique_id(task.id, unique_id)
        payload = payload or codec.encode(unique_id, task.id, "input")
        return ExecutionRecord(
            execution_id=new_execution_id(), task_id=task.id, status=S.RUNNING, input=payload,
            retry=retry, timeout=timeout, sleep_before_run=sleep, created_at=now,
            updated_at=now, start_at=now, root=root, parent=parent, is_sleeping=True,
            sleeping_unique_id=unique_id, idempotency_key=idempotency_key, started_at=now,
            lease_expires_at=now + sleep + timeout, context=context, queue=queue, priority=priority,
        )
    start_at = now + wait + sleep
    return ExecutionRecord(
        execution_id=new_execution_id(), task_id=task.id, status=S.READY,
        input=payload or codec.encode(input, task.id, "input"), retry=retry, timeout=timeout,
        sleep_before_run=sleep, created_at=now, updated_at=now, start_at=start_at, root=root,
        parent=parent, idempotency_key=idempotency_key, ready_at=start_at, context=context, queue=queue,
        priority=priority,
    )


DEFERRABLE_OPTIONS = ("retry", "timeout", "sleep_before_run")


def deferred_record(task_id: str, input: Any, now: float, codec: PayloadCodec, *,
                    retry: RetryOptions | None = None, sleep_before_run: float | None = None,
                    timeout: float | None = None, idempotency_key: str | None = None,
                    context: Mapping[str, str] | None = None, queue: str | None = None,
                    priority: int | None = None, delay: float | None = None,
                    at: datetime | None = None) -> ExecutionRecord:
    """A new execution of a task this process does not define (a client's enqueue by task id).

    The options not given are the task's defaults, which only the executor that defines it knows:
    they are stored as placeholders, named in ``deferred_options``, and ``with_task_defaults``
    replaces them when that executor claims the execution. The queue and the priority decide
    which worker claims it, and when: not given, they are the default queue and priority 0.
    A deferred ``sleep_before_run``'s placeholder is the enqueue's delay (``delay`` or ``at``),
    which the task's sleep then follows.
    """
    given = {"retry": retry, "timeout": timeout, "sleep_before_run": sleep_before_run}
    record = new_record(_placeholder(task_id), input, now, codec, retry=retry, sleep_before_run=sleep_before_run,
                        timeout=timeout, idempotency_key=idempotency_key, context=context, queue=queue,
                        priority=priority, delay=delay, at=at)
    record.deferred_options = frozenset(name for name in DEFERRABLE_OPTIONS if given[name] is None)
    if sleep_before_run is None:
        record.sleep_before_run = record.start_at - now
    return record


@functools.lru_cache(maxsize=1024)
def _placeholder(task_id: str) -> Task:
    """The stand-in for a task a client does not define: its defaults are the placeholders."""
    return Task(id=task_id, kind=TaskKind.TASK, timeout=1.0, retry=RetryOptions(), sleep_before_run=0.0)


def with_task_defaults(record: ExecutionRecord, task: Task) -> ExecutionRecord:
    """``record`` with its deferred options (see ``deferred_record``) taken from ``task``. A
    deferred ``sleep_before_run`` moves ``start_at`` to the end of the enqueue's delay (its
    placeholder) and the task's sleep: the runner hands such a claim back to ``ready`` until then.
    From ``created_at``, not from ``start_at``: a lease lost or handed back before this ran moved
    that to the time it happened."""
    deferred = record.deferred_options
    if not deferred:
        return record
    sleep = task.sleep_before_run if "sleep_before_run" in deferred else record.sleep_before_run
    return record.copy(
        retry=task.retry if "retry" in deferred else record.retry,
        timeout=task.timeout if "timeout" in deferred else record.timeout,
        sleep_before_run=sleep,
        start_at=(record.created_at + record.sleep_before_run + sleep if "sleep_before_run" in deferred
                  else record.start_at),
        deferred_options=frozenset(),
    )


def check_unique_id(task_id: str, unique_id: object) -> str:
    """A sleeping execution's input: the unique id its waker finds it by, 1..255 characters."""
    if not isinstance(unique_id, str):
        raise DurableExecutionError(
            f"Input must be a unique id string for sleeping task [taskId={task_id}] "
            f"[input={type(unique_id).__name__}]",
            is_retryable=False,
        )
    if not unique_id:
        raise DurableExecutionError(
            f"A non-empty unique id string is required for sleeping task [taskId={task_id}]",
            is_retryable=False,
        )
    if len(unique_id) > 255:
        raise DurableExecutionError(
            f"The unique id string must be shorter than 256 characters for sleeping task "
            f"[taskId={task_id}] [inputLength={len(unique_id)}]",
            is_retryable=False,
        )
    return unique_id


def _datetime(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def to_task_execution(record: ExecutionRecord, decode: Callable[[Payload], Any]) -> TaskExecution:
    """The user's view of a record: payloads decoded, times as aware UTC datetimes, and fields
    that do not apply to its status None."""
    completed = record.status is S.COMPLETED
    return TaskExecution(
        task_id=record.task_id,
        execution_id=record.execution_id,
        status=record.status,
        input=decode(record.input),
        output=decode(record.output) if completed and record.output is not None else None,
        error=None if completed else record.error,
        retry_attempts=record.retry_attempts,
        root=record.root,
        parent=record.parent,
        children=record.children,
        finalize=record.finalize,
        created_at=datetime.fromtimestamp(record.created_at, UTC),
        updated_at=datetime.fromtimestamp(record.updated_at, UTC),
        start_at=datetime.fromtimestamp(record.start_at, UTC),
        started_at=_datetime(record.started_at),
        finished_at=_datetime(record.finished_at),
        expires_at=_datetime(record.lease_expires_at) if record.status is S.RUNNING else None,
        waiting_for_children_started_at=_datetime(record.waiting_for_children_started_at),
        waiting_for_finalize_started_at=_datetime(record.waiting_for_finalize_started_at),
        sleeping_task_unique_id=record.sleeping_unique_id,
    )
