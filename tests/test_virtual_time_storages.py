"""The engine in virtual time (``MockClock(autojump_threshold=0)``) on every storage: retries with
backoff, timeouts, sleeping tasks, leases and heartbeats behave on SQLite and PostgreSQL exactly
as in memory, because a storage call in flight holds the clock still."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest
import trio

from durable_core import DurableExecutor, RetryOptions, TaskExecution, TaskExecutionStatus, TaskRunContext
from durable_core.storage.contract import Storage
from durable_core.storage.opening import open_storage
from durable_storage_memory import MemoryStorage
from durable_storage_postgres.testing import scratch_schema, test_dsn

S = TaskExecutionStatus
LONG_WAITS = dict(poll_interval=60, lease_duration=60, heartbeat_interval=20)
"""Options for hours of virtual time: the engine polls its storage every ``poll_interval``, which
costs real time on a real storage (four calls a round); the change feed wakes it meanwhile."""
StorageOpener = Callable[[], AbstractAsyncContextManager[Storage]]


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def storage_on(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StorageOpener]:
    """``async with storage_on() as storage``: a storage on the test's data; each call opens
    another one on the same data, as another process would (memory: the same object)."""
    if request.param == "memory":
        memory = MemoryStorage()

        @asynccontextmanager
        async def shared() -> AsyncIterator[Storage]:
            yield memory

        yield shared
    elif request.param == "sqlite":
        yield lambda: open_storage("sqlite", path=tmp_path / "durable.db")
    else:
        dsn = test_dsn()
        with scratch_schema(dsn) as schema:
            yield lambda: open_storage("postgres", dsn=dsn, schema=schema)


async def finished(ex: DurableExecutor, task_id: str, execution_id: str) -> TaskExecution:
    handle = await ex.get_task_execution_handle(task_id, execution_id)
    return await handle.wait_and_get_finished_execution()


async def test_retries_wait_their_backoff_in_virtual_time(storage_on: StorageOpener) -> None:
    attempts: list[float] = []
    async with storage_on() as storage:
        ex = DurableExecutor(storage, **LONG_WAITS)

        @ex.task(id="charge", timeout=30,
                 retry=RetryOptions(max_attempts=5, base_delay=60, delay_multiplier=2, max_delay=900))
        async def charge(ctx: TaskRunContext, input: None) -> str:
            attempts.append(trio.current_time())
            if ctx.attempt < 5:
                raise ConnectionError("gateway down")
            return "charged"

        async with ex:
            done = await (await ex.enqueue_task(charge)).wait_and_get_finished_execution()
    assert done.output == "charged"
    assert [round(b - a) for a, b in zip(attempts, attempts[1:])] == [60, 120, 240, 480, 900]


async def test_a_run_past_its_timeout_times_out_at_its_deadline(storage_on: StorageOpener) -> None:
    async with storage_on() as storage:
        ex = DurableExecutor(storage)

        @ex.task(id="slow", timeout=30)
        async def slow(ctx: TaskRunContext, input: None) -> None:
            await trio.sleep(3600)

        async with ex:
            started = trio.current_time()
            done = await (await ex.enqueue_task(slow)).wait_and_get_finished_execution()
    assert done.status is S.TIMED_OUT
    assert 30 <= trio.current_time() - started < 31


async def test_a_sleeping_task_is_woken_after_hours(storage_on: StorageOpener) -> None:
    async with storage_on() as storage:
        ex = DurableExecutor(storage, **LONG_WAITS)
        webhook = ex.sleeping_task(id="webhook", timeout=24 * 3600)
        async with ex:
            handle = await ex.enqueue_task(webhook, "payment-1")
            await trio.sleep(5 * 3600)
            assert (await handle.get_execution()).status is S.RUNNING
            await ex.wakeup_sleeping_task_execution(webhook, "payment-1", output={"paid": True})
            done = await handle.wait_and_get_finished_execution()
    assert (done.status, done.output) == (S.COMPLETED, {"paid": True})


async def test_a_crashed_executors_run_is_taken_over_after_its_lease_expires(storage_on: StorageOpener) -> None:
    runs: list[int] = []
    async with storage_on() as crashed_storage, storage_on() as storage:
        survivor = DurableExecutor(storage, poll_interval=1)

        @survivor.task(id="work", timeout=600)
        async def work(ctx: TaskRunContext, input: None) -> str:
            runs.append(ctx.attempt)
            return "recovered"

        async with survivor:
            handle = await survivor.enqueue_task(work, sleep_before_run=5)
            # another process claims it for a 10 s lease, then crashes: no heartbeat, no hand-back
            (claimed,) = await crashed_storage.claim_executions("de_crashed", survivor.now() + 5, 1, 10)
            crashed_at = trio.current_time()
            done = await handle.wait_and_get_finished_execution()
    assert claimed.execution_id == handle.execution_id
    assert (done.status, done.output, runs) == (S.COMPLETED, "recovered", [0])
    assert 15 <= trio.current_time() - crashed_at < 18


async def test_heartbeats_keep_a_run_longer_than_its_lease(storage_on: StorageOpener) -> None:
    runs: list[int] = []

    async def long(ctx: TaskRunContext, input: None) -> str:
        runs.append(ctx.attempt)
        await trio.sleep(120)  # twelve lease durations
        return "done"

    async with storage_on() as worker_storage, storage_on() as watcher_storage:
        worker = DurableExecutor(worker_storage, lease_duration=10, heartbeat_interval=3)
        watcher = DurableExecutor(watcher_storage, max_concurrent_task_executions=0, poll_interval=0.5)
        for ex in (worker, watcher):
            ex.task(id="long", timeout=600)(long)
        async with worker, watcher:  # the watcher expires leases that lapse
            handle = await worker.enqueue_task("long")
            done = await finished(watcher, "long", handle.execution_id)
    assert (done.status, done.output, runs) == (S.COMPLETED, "done", [0])


@pytest.mark.parametrize("storage_on", ["sqlite"], indirect=True)
async def test_hours_of_virtual_time_take_well_under_a_second(storage_on: StorageOpener) -> None:
    real_start = time.perf_counter()
    async with storage_on() as storage:
        ex = DurableExecutor(storage, **LONG_WAITS)

        @ex.task(id="nap", timeout=4 * 3600)
        async def nap(ctx: TaskRunContext, input: None) -> str:
            await trio.sleep(3 * 3600)
            return "rested"

        async with ex:
            done = await (await ex.enqueue_task(nap)).wait_and_get_finished_execution()
    real = time.perf_counter() - real_start
    print(f"3 virtual hours on sqlite took {real:.3f} s of real time")
    assert done.output == "rested"
    assert real < 5
