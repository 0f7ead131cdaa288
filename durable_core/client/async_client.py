"""``AsyncClient``: durable executions from asyncio applications (FastAPI, Starlette, aiohttp)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import sniffio
import trio

from ..errors import DurableExecutionError
from ..executor import DurableExecutor
from ..models import RetryOptions, TaskExecution
from ..serialization import Serializer
from ..storage.contract import Storage
from .base import ClientBase, Operation, T, client_executor
from .portal import GuestPortal, ThreadPortal


class AsyncClient(ClientBase):
    """The asyncio twin of ``Client``: the same methods, awaited.

    Standalone (``AsyncClient("sqlite", ...)``, ``AsyncClient.from_config()``) its trio side runs
    in a thread of its own, so the event loop never waits on storage I/O; opened on first use or by
    ``async with``. ``AsyncClient.run_executor(executor)`` instead runs an executor in-process, as
    a trio guest on the running loop.
    """

    def __init__(self, storage: Storage | str | None = None, *, storage_options: dict[str, Any] | None = None,
                 serializer: Serializer | str | None = None, executor: DurableExecutor | None = None,
                 on_loop: bool = False, clock: trio.abc.Clock | None = None, **executor_options: Any):
        """``executor``, instead of a storage: a client of that executor, which the client runs
        (tasks included) while open — in a thread, or with ``on_loop`` on the running asyncio loop
        (see ``run_executor``). ``clock``: the trio clock of the client's run, as in
        ``Client``."""
        if executor is None:
            executor = client_executor(storage, storage_options, serializer, executor_options)
        super().__init__(executor, on_caller_thread=clock is None)
        self._portal: GuestPortal | ThreadPortal = (GuestPortal if on_loop else ThreadPortal)(executor, clock)
        self._opening: asyncio.Lock | None = None
        self._started = False

    @classmethod
    @asynccontextmanager
    async def run_executor(cls, executor: DurableExecutor, *,
                           clock: trio.abc.Clock | None = None) -> AsyncIterator[AsyncClient]:
        """Run ``executor`` on the running asyncio loop (trio's guest mode) while the block runs,
        and give a client of it — for example for the lifespan of a FastAPI app.

        Leaving the block shuts the executor down as ``durable worker`` does: running executions
        get ``shutdown_timeout`` seconds, then go back to ``ready`` for another worker.
        """
        async with cls(executor=executor, on_loop=True, clock=clock) as client:
            yield client

    async def __aenter__(self) -> AsyncClient:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Start the executor and open the storage; the first call does it if not done."""
        if self._started:
            return
        self._opening = self._opening or asyncio.Lock()
        async with self._opening:
            if not self._started:
                portal = self._portal
                await (portal.start() if isinstance(portal, GuestPortal) else asyncio.to_thread(portal.start))
                self._started = True

    async def close(self) -> None:
        """Stop the executor (calls still in flight fail). Idempotent."""
        self._operations.close()
        portal = self._portal
        await (portal.close() if isinstance(portal, GuestPortal) else asyncio.to_thread(portal.close))

    async def _call(self, operation: Operation[T]) -> T:
        _check_asyncio()
        await self.open()
        call = self._portal.submit(operation.fn, *operation.args)
        try:
            return await asyncio.wrap_future(call.future)
        except asyncio.CancelledError:
            self._portal.cancel(call)
            raise

    # ----------------------------------------------------------------------------- operations

    async def enqueue(self, task_id: str, input: Any = None, *, idempotency_key: str | None = None,
                      timeout: float | None = None, retry: RetryOptions | None = None,
                      sleep_before_run: float | None = None, queue: str | None = None,
                      priority: int | None = None, delay: float | None = None, at: datetime | None = None,
                      connection: Any = None) -> str:
        """Store a new execution of ``task_id`` and return its id. With ``connection`` (a psycopg
        ``AsyncConnection``, or a ``sqlite3`` connection, on the storage's database), it is
        written in that connection's open transaction: it exists if and only if the caller commits.
        ``queue`` and ``priority`` override the task's; a client without the task's definition
        enqueues on the default queue at priority 0 unless given them. ``delay`` (seconds) or ``at``
        (a timezone-aware datetime) makes it due later; the task's ``sleep_before_run`` follows."""
        operation = self._enqueue(task_id, [input], idempotency_key=idempotency_key, timeout=timeout, retry=retry,
                                  sleep_before_run=sleep_before_run, queue=queue, priority=priority, delay=delay,
                                  at=at)
        (execution_id,) = await self._store(operation, connection)
        return execution_id

    async def enqueue_many(self, task_id: str, inputs: Sequence[Any], *, timeout: float | None = None,
                           retry: RetryOptions | None = None, sleep_before_run: float | None = None,
                           queue: str | None = None, priority: int | None = None, delay: float | None = None,
                           at: datetime | None = None, connection: Any = None) -> list[str]:
        """Store one execution per input, atomically, and return their ids in input order."""
        operation = self._enqueue(task_id, inputs, timeout=timeout, retry=retry, sleep_before_run=sleep_before_run,
                                  queue=queue, priority=priority, delay=delay, at=at)
        return await self._store(operation, connection)

    async def _store(self, enqueue: Operation[list[str]], connection: Any) -> list[str]:
        """In the caller's transaction (``connection``); on the loop's thread, through a connection
        of its own, when the storage can tell the write will not wait (``NonBlockingInserts``);
        else on a worker thread of the loop's (``direct``: the loop never waits on storage I/O),
        or through the portal."""
        _check_asyncio()
        await self.open()
        if connection is not None:
            return await self._operations.insert_on_async(connection, *enqueue.args)
        connections = self._operations.thread_connections()
        if connections is None:
            return await self._call(enqueue)
        ids = self._operations.try_enqueue_here(connections, *enqueue.args)
        if ids is not None:  # written on the loop's thread: it could not wait (``NonBlockingInserts``)
            await asyncio.sleep(0)  # a loop enqueuing many lets the others run between them
            return ids
        return await asyncio.to_thread(self._operations.enqueue_here, connections, *enqueue.args)

    async def get(self, execution_id: str) -> TaskExecution:
        """The execution as stored now; ``DurableExecutionNotFoundError`` for an unknown id."""
        return await self._call(self._get(execution_id))

    async def wait(self, execution_id: str, *, timeout: float | None = None) -> TaskExecution:
        """The execution once finished; ``TimeoutError`` after ``timeout`` seconds."""
        return await self._call(self._wait(execution_id, timeout))

    async def cancel(self, execution_id: str) -> None:
        """Cancel the execution and its unfinished descendants (no-op once it finished)."""
        await self._call(self._cancel(execution_id))

    async def wakeup(self, task_id: str, unique_id: str, *, output: Any = None,
                     error: str | None = None) -> TaskExecution:
        """Finish the sleeping execution of ``task_id`` waiting under ``unique_id``: completed
        with ``output``, or failed with the message ``error``. Returns it as finished."""
        return await self._call(self._wakeup(task_id, unique_id, output, error))

    async def list(self, *, status: str | Sequence[str] | None = None, task_id: str | None = None,
                   limit: int = 100) -> list[TaskExecution]:
        """Executions, newest first, filtered by status(es) and task id."""
        return await self._call(self._list(status, task_id, limit))


def _check_asyncio() -> None:
    if sniffio.current_async_library() != "asyncio":
        raise DurableExecutionError("AsyncClient runs on asyncio; under trio, await the DurableExecutor's "
                                    "methods instead", is_retryable=False)
