"""``Client``: durable executions from plain Python (scripts, Flask, Django, notebooks)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import trio

from ..errors import DurableExecutionError
from ..executor import DurableExecutor
from ..models import RetryOptions, TaskExecution
from ..serialization import Serializer
from ..storage.contract import Storage
from .base import ClientBase, Operation, T, client_executor
from .portal import ThreadPortal


class Client(ClientBase):
    """A thread-safe client of the executions in a storage, for code without an event loop.

    Opened like an executor (``Client("sqlite", storage_options={"path": "app.db"})`` or
    ``Client.from_config()``), it needs no task definitions: it enqueues by task id, and the worker
    that defines the task runs it with the task's defaults for the options not given here. Its
    trio side runs in a thread of its own, opened on first use or by ``with``; ``close`` ends it.
    """

    def __init__(self, storage: Storage | str | None = None, *, storage_options: dict[str, Any] | None = None,
                 serializer: Serializer | str | None = None, executor: DurableExecutor | None = None,
                 clock: trio.abc.Clock | None = None, **executor_options: Any):
        """``executor``, instead of a storage: a client of that executor, which the client runs
        (tasks included) in its thread while open; see ``run_executor``. ``clock``: the trio clock
        of the client's run; under an autojumping ``trio.testing.MockClock`` virtual time moves
        only while a call is in flight (the testing kit, docs/testing.md)."""
        if executor is None:
            executor = client_executor(storage, storage_options, serializer, executor_options)
        super().__init__(executor, on_caller_thread=clock is None)
        self._portal = ThreadPortal(executor, clock)
        self._lock = threading.Lock()
        self._started = False

    @classmethod
    @contextmanager
    def run_executor(cls, executor: DurableExecutor, *, clock: trio.abc.Clock | None = None) -> Iterator[Client]:
        """Run ``executor`` in a background thread while the block runs, and give a client of it.

        Leaving the block shuts the executor down as ``durable worker`` does: running executions
        get ``shutdown_timeout`` seconds, then go back to ``ready`` for another worker.
        """
        with cls(executor=executor, clock=clock) as client:
            yield client

    def __enter__(self) -> Client:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def open(self) -> None:
        """Start the client's thread and open the storage; the first call does it if not done."""
        if self._started:
            return
        with self._lock:
            if not self._started:
                self._portal.start()
                self._started = True

    def close(self) -> None:
        """Stop the executor and its thread (calls still in flight fail). Idempotent."""
        self._operations.close()
        self._portal.close()

    def _call(self, operation: Operation[T]) -> T:
        _check_thread(self._portal.on_portal_thread())
        self.open()
        call = self._portal.submit(operation.fn, *operation.args)
        try:
            return call.future.result()
        except BaseException:
            self._portal.cancel(call)  # e.g. KeyboardInterrupt while waiting
            raise

    def _store(self, enqueue: Operation[list[str]], connection: Any) -> list[str]:
        """In the caller's transaction (``connection``), on the caller's thread (``direct``), or
        through the portal."""
        _check_thread(self._portal.on_portal_thread())
        self.open()
        if connection is not None:
            return self._operations.insert_on(connection, *enqueue.args)
        connections = self._operations.thread_connections()
        if connections is None:
            return self._call(enqueue)
        return self._operations.enqueue_here(connections, *enqueue.args)

    # ----------------------------------------------------------------------------- operations

    def enqueue(self, task_id: str, input: Any = None, *, idempotency_key: str | None = None,
                timeout: float | None = None, retry: RetryOptions | None = None,
                sleep_before_run: float | None = None, queue: str | None = None, priority: int | None = None,
                delay: float | None = None, at: datetime | None = None, connection: Any = None) -> str:
        """Store a new execution of ``task_id`` and return its id. With ``connection`` (a
        ``sqlite3`` or psycopg connection on the storage's database), it is written in that
        connection's open transaction: it exists if and only if the caller commits.
        ``queue`` and ``priority`` override the task's; a client without the task's definition
        enqueues on the default queue at priority 0 unless given them. ``delay`` (seconds) or ``at``
        (a timezone-aware datetime) makes it due later; the task's ``sleep_before_run`` follows."""
        operation = self._enqueue(task_id, [input], idempotency_key=idempotency_key, timeout=timeout, retry=retry,
                                  sleep_before_run=sleep_before_run, queue=queue, priority=priority, delay=delay,
                                  at=at)
        (execution_id,) = self._store(operation, connection)
        return execution_id

    def enqueue_many(self, task_id: str, inputs: Sequence[Any], *, timeout: float | None = None,
                     retry: RetryOptions | None = None, sleep_before_run: float | None = None,
                     queue: str | None = None, priority: int | None = None, delay: float | None = None,
                     at: datetime | None = None, connection: Any = None) -> list[str]:
        """Store one execution per input, atomically, and return their ids in input order."""
        operation = self._enqueue(task_id, inputs, timeout=timeout, retry=retry, sleep_before_run=sleep_before_run,
                                  queue=queue, priority=priority, delay=delay, at=at)
        return self._store(operation, connection)

    def get(self, execution_id: str) -> TaskExecution:
        """The execution as stored now; ``DurableExecutionNotFoundError`` for an unknown id."""
        return self._call(self._get(execution_id))

    def wait(self, execution_id: str, *, timeout: float | None = None) -> TaskExecution:
        """The execution once finished; ``TimeoutError`` after ``timeout`` seconds."""
        return self._call(self._wait(execution_id, timeout))

    def cancel(self, execution_id: str) -> None:
        """Cancel the execution and its unfinished descendants (no-op once it finished)."""
        self._call(self._cancel(execution_id))

    def wakeup(self, task_id: str, unique_id: str, *, output: Any = None, error: str | None = None) -> TaskExecution:
        """Finish the sleeping execution of ``task_id`` waiting under ``unique_id``: completed
        with ``output``, or failed with the message ``error``. Returns it as finished."""
        return self._call(self._wakeup(task_id, unique_id, output, error))

    def list(self, *, status: str | Sequence[str] | None = None, task_id: str | None = None,
             limit: int = 100) -> list[TaskExecution]:
        """Executions, newest first, filtered by status(es) and task id."""
        return self._call(self._list(status, task_id, limit))


def _check_thread(on_portal_thread: bool) -> None:
    """A sync call must not block an event loop (it may be the one the call needs)."""
    if on_portal_thread:
        raise DurableExecutionError("Client methods block; inside the executor's own trio run, await the "
                                    "DurableExecutor's methods instead", is_retryable=False)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise DurableExecutionError("Client methods block, and this thread runs an asyncio event loop; "
                                    "use AsyncClient (await client.enqueue(...)) instead", is_retryable=False)
    if not trio.lowlevel.in_trio_run():
        return
    raise DurableExecutionError("Client methods block, and this thread runs trio; await the DurableExecutor's "
                                "methods instead", is_retryable=False)
