"""Claim on insert: an executor with a free slot runs what it enqueues itself without claiming it
back in another storage call — never past its concurrency limit, never ahead of an execution that
waits for a slot, and handed back like any run when shutdown comes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import trio
import trio.testing

from durable_core import DurableExecutor, Task, TaskExecutionStatus
from durable_core.storage.contract import STORAGE_METHODS
from durable_storage_memory import MemoryStorage

S = TaskExecutionStatus


class CountingStorage:
    """A memory storage that counts the calls of each operation; while ``insert_gate`` is set,
    inserts wait for it (``inserting`` is set once one does)."""

    def __init__(self) -> None:
        self.inner = MemoryStorage()
        self.calls: Counter[str] = Counter()
        self.insert_gate: trio.Event | None = None
        self.inserting = trio.Event()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if name not in STORAGE_METHODS:
            return attribute

        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            if name == "insert_executions" and self.insert_gate is not None:
                self.inserting.set()
                await self.insert_gate.wait()
            return await attribute(*args, **kwargs)

        return call


def recording_task(executor: DurableExecutor, started: list[Any],
                   then: Callable[[Any], Awaitable[None]]) -> Task:
    """A task that records its input in ``started``, then awaits ``then(input)``."""

    @executor.task(id="recording", timeout=600)
    async def recording(ctx, input):
        started.append(input)
        await then(input)
        return input

    return recording


async def test_an_idle_executor_runs_what_it_enqueues_without_claiming_it_back() -> None:
    storage = CountingStorage()
    executor = DurableExecutor(storage, poll_interval=3600)

    @executor.task(id="double", timeout=10)
    async def double(ctx, input):
        return input * 2

    async with executor:
        await trio.testing.wait_all_tasks_blocked()  # the claimer found nothing: it has caught up
        claims_at_start = storage.calls["claim_executions"]
        finished = [await (await executor.enqueue_task(double, i)).wait_and_get_finished_execution()
                    for i in range(50)]
        assert storage.calls["claim_executions"] == claims_at_start
        stored = await storage.inner.get_executions([f.execution_id for f in finished])
    assert [(f.status, f.output) for f in finished] == [(S.COMPLETED, i * 2) for i in range(50)]
    assert all(r is not None and r.executor_id == executor.executor_id and r.lease_expires_at is None
               for r in stored)


async def test_claim_on_insert_keeps_to_the_concurrency_limit_and_never_overtakes() -> None:
    """With one slot taken, a new execution waits ``ready``; once the slot frees, an execution
    enqueued then must not take it ahead of the one already waiting."""
    storage = CountingStorage()
    executor = DurableExecutor(storage, max_concurrent_task_executions=1, poll_interval=3600)
    release = trio.Event()
    started: list[str] = []

    async def first_waits(input: str) -> None:
        if input == "first":
            await release.wait()

    step = recording_task(executor, started, first_waits)

    async with executor:
        await trio.testing.wait_all_tasks_blocked()
        first = await executor.enqueue_task(step, "first")
        await trio.testing.wait_all_tasks_blocked()
        waiting = await executor.enqueue_task(step, "waiting")
        assert (await waiting.get_execution()).status is S.READY
        assert executor.running_task_executions_count == 1
        release.set()
        later = await executor.enqueue_task(step, "later")  # the slot may be free: "waiting" has it
        for handle in (first, waiting, later):
            await handle.wait_and_get_finished_execution()
    assert started == ["first", "waiting", "later"]


async def test_a_run_claimed_on_an_insert_that_returns_during_shutdown_is_handed_back() -> None:
    storage = CountingStorage()
    executor = DurableExecutor(storage, poll_interval=3600, shutdown_timeout=5)
    busy = trio.Event()
    started: list[int] = []

    async def stay(input: int) -> None:
        busy.set()
        await trio.sleep(600)

    slow = recording_task(executor, started, stay)

    handles = []

    async def enqueue(input: int) -> None:
        handles.append(await executor.enqueue_task(slow, input))

    async def open_gate_later(gate: trio.Event) -> None:
        await trio.sleep(1)  # shutdown's grace period has begun
        gate.set()

    async with trio.open_nursery() as nursery:
        async with executor:
            await trio.testing.wait_all_tasks_blocked()
            await enqueue(0)
            await busy.wait()
            storage.insert_gate = trio.Event()
            nursery.start_soon(enqueue, 1)  # claimed as it is inserted: the executor has free slots
            await storage.inserting.wait()
            nursery.start_soon(open_gate_later, storage.insert_gate)
    assert started == [0, 1]  # the second ran in the grace period, as a run already going would
    records = await storage.inner.get_executions([h.execution_id for h in handles])
    assert [(r.status, r.executor_id, r.retry_attempts) for r in records] == [(S.READY, None, 0)] * 2


async def test_a_run_claimed_on_an_insert_that_returns_after_shutdown_goes_back_to_ready() -> None:
    storage = CountingStorage()
    executor = DurableExecutor(storage, poll_interval=3600, shutdown_timeout=1)

    ran: list[object] = []

    @executor.task(id="noop", timeout=60)
    async def noop(ctx, input):
        ran.append(input)

    handles = []

    async def enqueue() -> None:
        handles.append(await executor.enqueue_task(noop))

    async with trio.open_nursery() as nursery:
        async with executor:
            await trio.testing.wait_all_tasks_blocked()
            storage.insert_gate = trio.Event()
            nursery.start_soon(enqueue)
            await storage.inserting.wait()
        # the shutdown waited its grace period for the insert, then ended without it
        storage.insert_gate.set()
    assert ran == []
    (record,) = await storage.inner.get_executions([handles[0].execution_id])
    assert (record.status, record.executor_id, record.lease_expires_at) == (S.READY, None, None)


async def test_an_execution_on_a_queue_the_executor_does_not_serve_is_left_ready() -> None:
    storage = CountingStorage()
    executor = DurableExecutor(storage, poll_interval=3600)
    ran: list[str] = []

    @executor.task(id="mail", timeout=10, queue="emails")
    async def mail(ctx, input):
        ran.append(input)

    executor.serve_queues(["default"])  # as `durable worker --queue default`
    async with executor:
        await trio.testing.wait_all_tasks_blocked()
        handle = await executor.enqueue_task(mail, "hello")
        await trio.testing.wait_all_tasks_blocked()
        execution = await handle.get_execution()
    assert (execution.status, ran) == (S.READY, [])
