"""What the clients do, by task id and execution id, through a running executor (trio side).

A standalone client's executor runs no task (``max_concurrent_task_executions=0``) and defines
none, so its enqueues are ``deferred_record``s that the executor defining the task completes when
it claims them; an executor a client was attached to in-process enqueues the tasks it defines
with their own defaults and validation, like ``enqueue_task``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import trio

from ..errors import DurableExecutionError
from ..executor import check_idempotency_key
from ..metrics import unmetered
from ..models import RetryOptions, TaskExecution
from ..records import deferred_record, new_record
from ..status import TaskExecutionStatus
from ..storage.contract import ExecutionRecord, TransactionalInserts
from ..tasks import check_delay, check_priority, check_queue
from .direct import ThreadConnections

if TYPE_CHECKING:
    from ..executor import DurableExecutor

MAX_LIST_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class EnqueueOptions:
    """The options of one enqueue, checked when made; None takes the task's default."""

    idempotency_key: str | None = None
    timeout: float | None = None
    retry: RetryOptions | None = None
    sleep_before_run: float | None = None
    queue: str | None = None
    priority: int | None = None
    delay: float | None = None
    at: datetime | None = None
    context: dict[str, str] | None = None
    """What plugins keep with the executions, from the caller's thread (``durable_execution_context``)."""

    def __post_init__(self) -> None:
        check_idempotency_key(self.idempotency_key)
        if self.queue is not None:
            check_queue("an enqueue", self.queue)
        if self.priority is not None:
            check_priority("an enqueue", self.priority)
        check_delay("an enqueue", self.delay, self.at, time.time())


def check_inputs(inputs: object) -> list[Any]:
    """``enqueue_many``'s inputs as a list: any sequence or iterable but a string or bytes."""
    if isinstance(inputs, str | bytes | dict) or not hasattr(inputs, "__iter__"):
        raise TypeError(f"inputs must be a list of inputs (one execution each), got {type(inputs).__name__}")
    return list(inputs)


def check_statuses(status: object) -> list[TaskExecutionStatus] | None:
    """``list``'s ``status`` filter: None, one status, or several."""
    if status is None:
        return None
    names = [status] if isinstance(status, str) else status
    if not isinstance(names, Sequence | set | frozenset):
        raise TypeError(f"status must be a status name or a list of them, got {type(status).__name__}")
    try:
        return sorted({TaskExecutionStatus(name) for name in names})
    except ValueError:
        valid = ", ".join(s.value for s in TaskExecutionStatus)
        raise ValueError(f"Unknown status in {status!r}; valid statuses: {valid}") from None


def check_limit(limit: object) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIST_LIMIT:
        raise ValueError(f"limit must be an integer from 1 to {MAX_LIST_LIMIT}, got {limit!r}")
    return limit


def check_wait_timeout(timeout: object) -> float:
    """``wait``'s timeout in seconds; None waits as long as it takes."""
    if timeout is None:
        return math.inf
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or math.isnan(timeout) or timeout < 0:
        raise ValueError(f"timeout must be a number of seconds >= 0 or None, got {timeout!r}")
    return float(timeout)


class ClientOperations:
    """The clients' operations, run in the portal's trio run on ``executor`` (running)."""

    def __init__(self, executor: DurableExecutor, *, on_caller_thread: bool):
        self.executor = executor
        self._on_caller_thread = on_caller_thread
        """Whether enqueues may be written on the caller's thread (``direct``): not on a virtual
        clock, whose time only the trio run knows."""
        self._thread_connections: ThreadConnections | None = None
        self._lock = threading.Lock()

    def thread_connections(self) -> ThreadConnections | None:
        """The calling threads' own connections, if the storage lends them (``direct``)."""
        if self._on_caller_thread and self._thread_connections is None:
            with self._lock:
                storage = unmetered(self.executor.engine.storage)
                if not isinstance(storage, TransactionalInserts):
                    self._on_caller_thread = False
                elif self._thread_connections is None:
                    self._thread_connections = ThreadConnections(storage)
        return self._thread_connections

    def try_enqueue_here(self, connections: ThreadConnections, task_id: str, inputs: Sequence[Any],
                         options: EnqueueOptions) -> list[str] | None:
        """``enqueue_here`` if it need not wait (``ThreadConnections.try_insert``), else None."""
        stored = connections.try_insert(self.build_records(task_id, inputs, options, time.time()))
        return None if stored is None else [record.execution_id for record in stored]

    def enqueue_here(self, connections: ThreadConnections, task_id: str, inputs: Sequence[Any],
                     options: EnqueueOptions) -> list[str]:
        """``enqueue`` on the caller's thread, through its own connection."""
        stored = connections.insert(self.build_records(task_id, inputs, options, time.time()))
        return [record.execution_id for record in stored]

    def close(self) -> None:
        """Close the calling threads' connections."""
        if self._thread_connections is not None:
            self._thread_connections.close()

    def build_records(self, task_id: str, inputs: Sequence[Any], options: EnqueueOptions,
                      now: float) -> list[ExecutionRecord]:
        """The records of new executions of ``task_id`` (checked by the client); pure, so
        callable from any thread."""
        codec = self.executor.codec
        task = self.executor.find_task(task_id)
        if task is not None:
            return [new_record(task, input, now, codec, retry=options.retry, timeout=options.timeout,
                               sleep_before_run=options.sleep_before_run, idempotency_key=options.idempotency_key,
                               context=options.context, queue=options.queue, priority=options.priority,
                               delay=options.delay, at=options.at)
                    for input in inputs]
        return [deferred_record(task_id, input, now, codec, retry=options.retry, timeout=options.timeout,
                                sleep_before_run=options.sleep_before_run, idempotency_key=options.idempotency_key,
                                context=options.context, queue=options.queue, priority=options.priority,
                                delay=options.delay, at=options.at)
                for input in inputs]

    async def enqueue(self, task_id: str, inputs: Sequence[Any], options: EnqueueOptions) -> list[str]:
        engine = self.executor.engine
        engine.check_accepting()
        stored = await engine.insert(self.build_records(task_id, inputs, options, engine.now()))
        return [record.execution_id for record in stored]

    async def get(self, execution_id: str) -> TaskExecution:
        return await self.executor.engine.get_execution(execution_id)

    async def wait(self, execution_id: str, timeout: float) -> TaskExecution:
        engine = self.executor.engine
        with trio.move_on_after(timeout):
            return await engine.wait_until_finished(execution_id)
        execution = await engine.get_execution(execution_id)
        raise TimeoutError(f"Task execution {execution_id} did not finish within {timeout:g} s "
                           f"(it is {execution.status})")

    async def cancel(self, execution_id: str) -> None:
        engine = self.executor.engine
        await engine.get_record(execution_id)  # an unknown id is an error, not a no-op
        await engine.cancel([execution_id])

    async def wakeup(self, task_id: str, unique_id: str, output: Any, error: str | None) -> TaskExecution:
        if error is not None and (not isinstance(error, str) or not error):
            raise DurableExecutionError(f"error must be a non-empty message string, got {error!r}",
                                        is_retryable=False)
        status = "completed" if error is None else "failed"
        return await self.executor.engine.wake_sleeping(task_id, unique_id, status=status, output=output,
                                                        error=error)

    async def list_executions(self, statuses: list[TaskExecutionStatus] | None, task_id: str | None,
                   limit: int) -> list[TaskExecution]:
        engine = self.executor.engine
        records = await engine.storage.list_executions(statuses=statuses, task_id=task_id, limit=limit)
        return [engine.execution(record) for record in records]

    # ----------------------------------------------------------------------------- in the caller's transaction

    def insert_on(self, connection: Any, task_id: str, inputs: Sequence[Any], options: EnqueueOptions) -> list[str]:
        """Enqueue in the open transaction of the caller's sync ``connection``, on the caller's
        thread (the storage's ``TransactionalInserts``)."""
        stored = self._transactional().insert_executions_on(
            connection, self.build_records(task_id, inputs, options, time.time()))
        return [record.execution_id for record in stored]

    async def insert_on_async(self, connection: Any, task_id: str, inputs: Sequence[Any],
                              options: EnqueueOptions) -> list[str]:
        """``insert_on`` for an asyncio connection, on the caller's event loop."""
        stored = await self._transactional().insert_executions_on_async(
            connection, self.build_records(task_id, inputs, options, time.time()))
        return [record.execution_id for record in stored]

    def _transactional(self) -> TransactionalInserts:
        storage = unmetered(self.executor.engine.storage)
        if not isinstance(storage, TransactionalInserts):
            raise DurableExecutionError(
                f"The {type(storage).__name__} storage cannot enqueue in your transaction (connection=); "
                "use the sqlite or postgres storage, or enqueue without connection=", is_retryable=False)
        return storage
