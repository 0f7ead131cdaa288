"""Storage faults in virtual time: a transient fault is retried with capped backoff and logged once
per episode, outcomes are recorded once the storage is back (while their lease holds), and a
permanent fault stops the executor after handing back what it can. The real faults (PostgreSQL
stopped, SQLite locked or full or deleted) are in ``tests/test_real_storage_faults.py``.

Memory only: the faults are injected by a wrapper around a memory storage that fails the calls
chosen, at the virtual time chosen, which a real storage cannot be made to do on cue."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import pytest
import trio
import trio.testing

from durable_core import DurableExecutor, TaskExecutionStatus
from durable_core.retrying import FIRST_DELAY, MAX_DELAY, backoff
from durable_core.storage import StorageError
from durable_core.storage.contract import STORAGE_METHODS
from durable_storage_memory import MemoryStorage

S = TaskExecutionStatus
OUTAGE = StorageError("the database went away")


class FaultyStorage:
    """A memory storage whose operations fail with ``fault`` while it is set (all of them, or
    those in ``failing``); ``calls`` keeps the trio time of every call that failed."""

    def __init__(self) -> None:
        self.inner = MemoryStorage()
        self.fault: StorageError | None = None
        self.failing: frozenset[str] | None = None
        self.failed: dict[str, list[float]] = {}

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if name not in STORAGE_METHODS:
            return attribute

        async def call(*args: Any, **kwargs: Any) -> Any:
            await trio.lowlevel.checkpoint()
            if self.fault is not None and (self.failing is None or name in self.failing):
                self.failed.setdefault(name, []).append(trio.current_time())
                raise self.fault
            return await attribute(*args, **kwargs)

        return call


def storage_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "durable.executor" and r.levelno >= logging.WARNING]


def test_backoff_doubles_up_to_its_cap_with_jitter() -> None:
    for attempt in range(40):
        ceiling = min(FIRST_DELAY * 2**attempt, MAX_DELAY)
        delays = [backoff(attempt) for _ in range(50)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert len(set(delays)) > 1


async def test_an_outage_is_ridden_out_and_every_outcome_recorded(caplog: pytest.LogCaptureFixture) -> None:
    storage = FaultyStorage()
    # leases outlast the outage: an outcome is retried while its lease holds (heartbeats fail too)
    executor = DurableExecutor(storage, poll_interval=0.5, lease_duration=60)
    runs: Counter[int] = Counter()

    @executor.task(id="work", timeout=60)
    async def work(ctx, input):
        runs[input] += 1
        await trio.sleep(1 + input % 3)
        return input * 2

    async with executor:
        handles = [await executor.enqueue_task(work, i) for i in range(20)]
        await trio.testing.wait_all_tasks_blocked()  # the memory storage answers at once: all run now
        assert executor.running_task_executions_count == 20
        storage.fault = OUTAGE  # the bodies go on; their commits fail and are retried
        await trio.sleep(30)
        assert executor.running_task_executions_count == 20  # done, each waiting to record its outcome
        storage.fault = None
        finished = [await handle.wait_and_get_finished_execution() for handle in handles]

    assert [(f.status, f.output) for f in finished] == [(S.COMPLETED, i * 2) for i in range(20)]
    assert runs == {i: 1 for i in range(20)}  # nothing ran twice
    assert storage.failed["commit_runs"] and storage.failed["claim_executions"]
    lines = storage_lines(caplog)
    assert len(lines) == 2, lines
    assert lines[0].startswith("storage unavailable: retrying in ")
    assert lines[0].endswith(" failed: the database went away")
    assert lines[1].startswith("storage back after ")


async def test_an_idle_worker_retries_claims_with_capped_backoff(caplog: pytest.LogCaptureFixture) -> None:
    storage = FaultyStorage()
    storage.fault = OUTAGE
    storage.failing = frozenset({"claim_executions"})
    executor = DurableExecutor(storage, poll_interval=0.5)
    async with executor:
        await trio.sleep(120)
        storage.fault = None
        await trio.sleep(MAX_DELAY)
    times = storage.failed["claim_executions"]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert gaps[0] <= FIRST_DELAY and max(gaps) <= MAX_DELAY
    assert all(gap >= MAX_DELAY / 2 for gap in gaps[10:])  # the cap reached: no hammering
    assert len(times) < 60
    lines = storage_lines(caplog)
    assert len(lines) == 2 and lines[0].endswith("; claiming executions failed: the database went away")
    assert lines[1].startswith("storage back after 12")


async def test_an_outcome_is_given_up_when_its_lease_ends_and_the_execution_runs_again(
        caplog: pytest.LogCaptureFixture) -> None:
    storage = FaultyStorage()
    executor = DurableExecutor(storage, poll_interval=0.5, lease_duration=3, heartbeat_interval=1)
    runs: list[int] = []

    @executor.task(id="work", timeout=2)
    async def work(ctx, input):
        runs.append(ctx.attempt)
        await trio.sleep(1)
        return "done"

    async with executor:
        handle = await executor.enqueue_task(work)
        await trio.testing.wait_all_tasks_blocked()
        assert executor.running_task_executions_count == 1
        storage.fault = OUTAGE
        storage.failing = frozenset({"commit_runs", "claim_executions", "renew_leases"})
        await trio.sleep(10)  # past the lease (3 s, not renewed): the outcome is given up
        assert executor.running_task_executions_count == 0
        storage.fault = None
        finished = await handle.wait_and_get_finished_execution()

    assert finished.status is S.COMPLETED and len(runs) == 2
    assert any("could not be recorded before its lease ended" in line for line in storage_lines(caplog))


async def test_a_permanent_fault_stops_the_executor_and_hands_back_the_runs() -> None:
    storage = FaultyStorage()
    executor = DurableExecutor(storage, poll_interval=0.5)
    gone = StorageError("the schema is newer than this durable", is_retryable=False)

    @executor.task(id="slow", timeout=600)
    async def slow(ctx, input):
        await trio.sleep(600)

    with pytest.RaisesGroup(pytest.RaisesExc(StorageError, match="the schema is newer"), flatten_subgroups=True):
        async with executor:
            handle = await executor.enqueue_task(slow)
            await trio.testing.wait_all_tasks_blocked()
            assert executor.running_task_executions_count == 1
            storage.fault = gone
            storage.failing = frozenset({"expire_leases"})  # maintenance notices it
            await trio.sleep_forever()  # the executor ends this
    (record,) = await storage.inner.get_executions([handle.execution_id])
    assert record is not None and record.status is S.READY  # handed back, not left running


async def test_a_hand_back_that_fails_at_shutdown_is_retried_while_the_lease_holds() -> None:
    storage = FaultyStorage()
    executor = DurableExecutor(storage, poll_interval=0.5, shutdown_timeout=5)

    @executor.task(id="slow", timeout=600)
    async def slow(ctx, input):
        await trio.sleep(600)

    async def storage_back_soon() -> None:
        await trio.sleep(5 + 1)  # the grace period, then the first hand-back attempts fail
        storage.fault = None

    async with trio.open_nursery() as nursery:
        async with executor:
            handle = await executor.enqueue_task(slow)
            await trio.testing.wait_all_tasks_blocked()
            assert executor.running_task_executions_count == 1
            storage.fault = OUTAGE
            storage.failing = frozenset({"release_leases"})
            nursery.start_soon(storage_back_soon)
    assert storage.failed["release_leases"]
    (record,) = await storage.inner.get_executions([handle.execution_id])
    assert record is not None and record.status is S.READY  # handed back once the storage returned


async def test_the_storage_is_said_back_even_if_the_last_retrying_call_is_cancelled(
        caplog: pytest.LogCaptureFixture) -> None:
    storage = FaultyStorage()
    storage.failing = frozenset({"commit_runs", "claim_executions"})
    executor = DurableExecutor(storage, poll_interval=0.5, lease_duration=60)
    started = trio.Event()

    @executor.task(id="work", timeout=60)
    async def work(ctx, input):
        started.set()
        await trio.sleep(1)
        return "ok"

    async with executor:
        handle = await executor.enqueue_task(work)
        await started.wait()
        storage.fault = OUTAGE  # the commit and the claim loop retry, each on its own backoff
        await trio.sleep(30)
        storage.fault = None
        done = await handle.wait_and_get_finished_execution()
        # leaving now cancels the claim loop, maybe in its backoff sleep: the last call retrying
    assert done.status is S.COMPLETED
    lines = storage_lines(caplog)
    assert len(lines) == 2 and lines[1].startswith("storage back after "), lines
