"""The engine in virtual time (``MockClock(autojump_threshold=0)``) on every storage: retries with
backoff, timeouts, sleeping tasks and leases behave on SQLite and PostgreSQL exactly as in memory,
because a storage call in flight holds the clock still (heartbeats: ``tests/test_heartbeat.py``,
also on every storage)."""

from __future__ import annotations

import time

import pytest
import trio

from durable_core import RetryOptions, TaskExecutionStatus, TaskRunContext

S = TaskExecutionStatus


async def test_retries_wait_their_backoff_in_virtual_time(shared_storage) -> None:
    attempts: list[float] = []
    ex = shared_storage.executor(**shared_storage.LONG_WAITS)

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


async def test_a_run_past_its_timeout_times_out_at_its_deadline(shared_storage) -> None:
    ex = shared_storage.executor()

    @ex.task(id="slow", timeout=30)
    async def slow(ctx: TaskRunContext, input: None) -> None:
        await trio.sleep(3600)

    async with ex:
        started = trio.current_time()
        done = await (await ex.enqueue_task(slow)).wait_and_get_finished_execution()
    assert done.status is S.TIMED_OUT
    assert 30 <= trio.current_time() - started < 31


async def test_a_sleeping_task_is_woken_after_hours(shared_storage) -> None:
    ex = shared_storage.executor(**shared_storage.LONG_WAITS)
    webhook = ex.sleeping_task(id="webhook", timeout=24 * 3600)
    async with ex:
        handle = await ex.enqueue_task(webhook, "payment-1")
        await trio.sleep(5 * 3600)
        assert (await handle.get_execution()).status is S.RUNNING
        await ex.wakeup_sleeping_task_execution(webhook, "payment-1", output={"paid": True})
        done = await handle.wait_and_get_finished_execution()
    assert (done.status, done.output) == (S.COMPLETED, {"paid": True})


async def test_a_crashed_executors_run_is_taken_over_after_its_lease_expires(shared_storage) -> None:
    runs: list[int] = []
    survivor = shared_storage.executor(poll_interval=1)

    @survivor.task(id="work", timeout=600)
    async def work(ctx: TaskRunContext, input: None) -> str:
        runs.append(ctx.attempt)
        return "recovered"

    async with survivor, shared_storage.open() as crashed_storage:
        handle = await survivor.enqueue_task(work, sleep_before_run=5)
        # another process claims it for a 10 s lease, then crashes: no heartbeat, no hand-back
        (claimed,) = await crashed_storage.claim_executions("de_crashed", survivor.now() + 5, 1, 10)
        crashed_at = trio.current_time()
        done = await handle.wait_and_get_finished_execution()
    assert claimed.execution_id == handle.execution_id
    assert (done.status, done.output, runs) == (S.COMPLETED, "recovered", [0])
    assert 15 <= trio.current_time() - crashed_at < 18


@pytest.mark.parametrize("shared_storage", ["sqlite"], indirect=True)
async def test_hours_of_virtual_time_take_well_under_a_second(shared_storage) -> None:
    real_start = time.perf_counter()
    ex = shared_storage.executor(**shared_storage.LONG_WAITS)

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
