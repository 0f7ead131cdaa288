"""The connection-thread base on a tiny backend: stdlib sqlite3 in memory, calls ``fn(conn, *args)``.

A call that holds the thread (``held``) makes the calls after it queue up, so that what the thread
takes together, and what a cancellation finds, is certain.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from durable_core.storage import Call, ConnectionThreads, StorageError

pytestmark = pytest.mark.real_clock  # the calls run in a thread, which a virtual clock does not wait for


class Busy(Exception):
    """Fails the whole transaction, which runs again."""


class MemoryThreads(ConnectionThreads[sqlite3.Connection, sqlite3.Connection, None]):
    """One thread on an in-memory database with a table ``t (x)``; counts transactions begun."""

    def __init__(self, *, max_retries: int = 0):
        conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        conn.execute("CREATE TABLE t (x)")
        self.begun = 0
        self.disconnected = False
        super().__init__([conn], name="test storage", thread_name="durable-test", max_batch_size=100,
                         max_retries=max_retries)

    def begin(self, conn: sqlite3.Connection, calls: list[Call[None]]) -> sqlite3.Connection:
        conn.execute("BEGIN")
        self.begun += 1
        return conn

    def commit(self, conn: sqlite3.Connection, calls: list[Call[None]]) -> None:
        conn.execute("COMMIT")

    def rollback(self, conn: sqlite3.Connection) -> None:
        conn.execute("ROLLBACK")

    def run(self, conn: sqlite3.Connection, call: Call[None]) -> object:
        return call.fn(conn, *call.args)

    def fails_transaction(self, exc: Exception) -> bool:
        return isinstance(exc, Busy)

    retryable = fails_transaction

    def disconnect(self, conn: sqlite3.Connection) -> None:
        conn.close()
        self.disconnected = True


class InterruptibleThreads(MemoryThreads):
    """Interrupting fails the transaction running (as a database server does)."""

    interruptible = True

    def __init__(self) -> None:
        self.interrupted = threading.Event()
        super().__init__()

    def interrupt(self, conn: sqlite3.Connection) -> None:
        self.interrupted.set()


def insert(conn: sqlite3.Connection, x: int) -> int:
    conn.execute("INSERT INTO t VALUES (?)", (x,))
    if x < 0:
        raise ValueError(f"{x} is negative")
    return x


def rows(conn: sqlite3.Connection) -> list[int]:
    return [x for (x,) in conn.execute("SELECT x FROM t ORDER BY x")]


@asynccontextmanager
async def opened(threads: MemoryThreads | None = None) -> AsyncIterator[MemoryThreads]:
    threads = threads or MemoryThreads()
    try:
        with trio.fail_after(10):
            yield threads
    finally:
        await threads.close()


@asynccontextmanager
async def held(threads: MemoryThreads, scope: trio.CancelScope | None = None) -> AsyncIterator[list[object]]:
    """Holds the thread in a call inserting 100 (under ``scope``) until the block ends; yields
    what that call returned (once it did)."""
    running, release = trio.Event(), threading.Event()
    token = trio.lowlevel.current_trio_token()
    received: list[object] = []

    def hold(conn: sqlite3.Connection) -> str:
        insert(conn, 100)
        trio.from_thread.run_sync(running.set, trio_token=token)
        release.wait()
        return "held"

    async def call() -> None:
        with scope or trio.CancelScope():
            received.append(await threads.call(None, hold))
            await trio.lowlevel.checkpoint()  # where a cancellation arrives

    async with trio.open_nursery() as nursery:
        nursery.start_soon(call)
        await running.wait()
        try:
            yield received
        finally:
            release.set()


async def start_all(nursery: trio.Nursery, calls: list[Callable[[], Awaitable[object]]]) -> None:
    """Start ``calls`` and return once they are all queued."""
    for call in calls:
        nursery.start_soon(call)
    await trio.testing.wait_all_tasks_blocked()


async def test_pending_calls_are_committed_together_in_one_transaction() -> None:
    async with opened() as threads:
        seen: list[tuple[int, int]] = []

        async def call(x: int) -> None:
            seen.append(await threads.call(None, lambda conn: (insert(conn, x), threads.begun)))

        async with trio.open_nursery() as nursery, held(threads):
            await start_all(nursery, [functools.partial(call, x) for x in range(5)])
        assert sorted(seen) == [(x, 2) for x in range(5)]  # the held call's transaction was the first
        assert await threads.call(None, rows) == [0, 1, 2, 3, 4, 100]


async def test_a_failing_call_rolls_back_only_itself() -> None:
    async with opened() as threads:
        outcomes: dict[int, object] = {}

        async def call(x: int) -> None:
            try:
                outcomes[x] = await threads.call(None, insert, x)
            except ValueError as exc:
                outcomes[x] = str(exc)

        async with trio.open_nursery() as nursery, held(threads):
            await start_all(nursery, [functools.partial(call, x) for x in (1, 2, -3, 4)])
        assert outcomes == {1: 1, 2: 2, -3: "-3 is negative", 4: 4}
        assert await threads.call(None, rows) == [1, 2, 4, 100]


async def test_a_transaction_failing_as_a_whole_runs_again() -> None:
    async with opened(MemoryThreads(max_retries=1)) as threads:
        attempts = 0

        def busy_once(conn: sqlite3.Connection) -> int:
            nonlocal attempts
            attempts += 1
            insert(conn, attempts)
            if attempts == 1:
                raise Busy
            return attempts

        assert await threads.call(None, busy_once) == 2
        assert await threads.call(None, rows) == [2]


async def test_a_call_cancelled_before_it_is_taken_is_dropped() -> None:
    async with opened() as threads:
        scope = trio.CancelScope()
        returned = trio.Event()

        async def call() -> None:
            with scope:
                await threads.call(None, insert, 1)
            returned.set()

        async with trio.open_nursery() as nursery, held(threads):
            await start_all(nursery, [call])
            scope.cancel()
            await returned.wait()  # at once: the thread is still held
        assert scope.cancelled_caught
        assert await threads.call(None, rows) == [100]


async def test_a_call_cancelled_once_taken_is_applied_and_its_result_delivered() -> None:
    async with opened() as threads:
        scope = trio.CancelScope()
        async with held(threads, scope) as received:
            scope.cancel()
        assert received == ["held"] and scope.cancelled_caught
        assert await threads.call(None, rows) == [100]


async def test_close_runs_what_is_queued_then_refuses_calls() -> None:
    threads = MemoryThreads()
    seen: list[int] = []

    async def call(x: int) -> None:
        seen.append(await threads.call(None, insert, x))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery, held(threads):
            await start_all(nursery, [functools.partial(call, x) for x in range(3)])
            await start_all(nursery, [threads.close])
            assert not threads.disconnected
        assert sorted(seen) == [0, 1, 2] and threads.disconnected
        with pytest.raises(StorageError, match="The test storage is closed"):
            await threads.call(None, rows)
        await threads.close()  # again: nothing to do


async def test_a_transaction_every_caller_of_which_was_cancelled_is_interrupted() -> None:
    """The database abandons it: the callers see Cancelled at once, nothing was applied."""
    async with opened(InterruptibleThreads()) as threads:
        assert isinstance(threads, InterruptibleThreads)
        scope = trio.CancelScope()
        running = trio.Event()
        token = trio.lowlevel.current_trio_token()

        def wait_for_a_lock(conn: sqlite3.Connection) -> None:
            insert(conn, 1)
            trio.from_thread.run_sync(running.set, trio_token=token)
            threads.interrupted.wait()
            raise Busy  # what an interrupted statement raises

        async with trio.open_nursery() as nursery:

            async def call() -> None:
                with scope:
                    await threads.call(None, wait_for_a_lock)

            nursery.start_soon(call)
            await running.wait()
            scope.cancel()
        assert scope.cancelled_caught
        assert await threads.call(None, rows) == []
