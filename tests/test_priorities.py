"""Priorities: of the due executions a worker claims, the higher priorities first, first-in
first-out within one; set per task and per enqueue, on every storage, in virtual time."""

from __future__ import annotations

import pytest
import trio

from durable_core import DurableExecutor, ParentTaskResult, TaskExecutionStatus, child_task
from durable_core.client import Client
from durable_core.client.operations import ClientOperations, EnqueueOptions
from durable_storage_memory import MemoryStorage

S = TaskExecutionStatus


def define(ex: DurableExecutor, ran: list[str]) -> None:
    async def note(ctx, input):
        ran.append(input)
        await trio.sleep(1)

    ex.task(id="plain", timeout=5, run=note)
    ex.task(id="urgent", timeout=5, priority=3, run=note)


async def test_a_worker_runs_higher_priorities_first_and_each_priority_in_order(shared_storage):
    ran: list[str] = []
    client = shared_storage.executor(max_concurrent_task_executions=0)
    worker = shared_storage.executor(max_concurrent_task_executions=1, max_task_executions_per_batch=2)
    define(client, ran)
    define(worker, ran)
    enqueues = [("plain", "low 1", None), ("plain", "low 2", None), ("urgent", "task 3", None),  # the task's
                ("plain", "enqueue 5", 5),  # the enqueue's priority
                ("urgent", "enqueue 0", 0),  # lower than its task's
                ("plain", "low 3", 0), ("plain", "enqueue 5 again", 5)]
    async with worker, client:
        await worker.enqueue_task("plain", "first", sleep_before_run=0)  # runs first, while the rest is enqueued
        for task_id, input, priority in enqueues:
            await client.enqueue_task(task_id, input, priority=priority)
            await trio.sleep(0.1)  # one after another (PostgreSQL orders equal times as it finds them)
        with trio.fail_after(60):
            while len(ran) <= len(enqueues):
                await trio.sleep(1)
    assert ran.pop(0) == "first"
    assert ran == ["enqueue 5", "enqueue 5 again", "task 3", "low 1", "low 2", "enqueue 0", "low 3"]
    async with shared_storage.open() as storage:
        listed = await storage.list_executions(task_id="urgent")
    assert sorted(r.priority for r in listed) == [0, 3]


async def test_an_executor_enqueuing_while_busy_never_overtakes_a_higher_priority_it_knows_of(shared_storage):
    """Claim on insert: with its one slot taken, the worker's own low-priority enqueue is stored
    ready, and the higher one another process enqueued runs first when the slot frees."""
    ran: list[str] = []
    worker = shared_storage.executor(max_concurrent_task_executions=1)
    define(worker, ran)
    async with worker:
        await worker.enqueue_task("plain", "first")
        await trio.sleep(0.5)
        await worker.enqueue_task("urgent", "urgent")
        await worker.enqueue_task("plain", "low")
        with trio.fail_after(60):
            while len(ran) < 3:
                await trio.sleep(1)
    assert ran == ["first", "urgent", "low"]


async def test_children_run_at_their_task_s_priority_or_their_parent_s_if_higher():
    storage = MemoryStorage()
    ex = DurableExecutor(storage)

    @ex.task(id="step", timeout=5)
    async def step(ctx, input):
        return input

    @ex.task(id="important_step", timeout=5, priority=50)
    async def important_step(ctx, input):
        return input

    @ex.parent_task(id="flow", timeout=5)
    async def flow(ctx, input):
        return ParentTaskResult(children=[child_task(step), child_task(important_step)])

    async with ex:
        urgent = await (await ex.enqueue_task(flow, priority=9)).wait_and_get_finished_execution()
        plain = await (await ex.enqueue_task(flow)).wait_and_get_finished_execution()
    children = await storage.get_executions([c.execution_id for c in (*urgent.children, *plain.children)])
    assert [r and r.priority for r in children] == [9, 50, 0, 50]


@pytest.mark.parametrize("priority", [-1, 1_000_001, 1.5, True, "9"])
async def test_a_bad_priority_is_refused_naming_the_field(priority):
    ex = DurableExecutor(MemoryStorage())
    with pytest.raises(ValueError, match=rf"Invalid priority for task t: an integer from 0 to 1,000,000 .* got {priority!r}"):
        ex.task(id="t", timeout=1, priority=priority, run=lambda ctx, input: None)
    with pytest.raises(ValueError, match=r"Invalid priority for task looping_task"):
        ex.looping_task("looping_task", ex.task(id="u", timeout=1, run=lambda ctx, input: None), 3, priority=priority)
    async with ex:
        with pytest.raises(ValueError, match=rf"Invalid priority for task u: .* got {priority!r}"):
            await ex.enqueue_task("u", priority=priority)
    with pytest.raises(ValueError, match=rf"Invalid priority for an enqueue: .* got {priority!r}"):
        EnqueueOptions(priority=priority)


async def test_a_client_enqueues_with_a_priority_and_a_queue_without_the_definition():
    storage = MemoryStorage()
    client = DurableExecutor(storage, max_concurrent_task_executions=0)
    async with client:
        (execution_id,) = await ClientOperations(client, on_caller_thread=False).enqueue(
            "elsewhere", [None], EnqueueOptions(priority=7, queue="bulk"))
        (default,) = await ClientOperations(client, on_caller_thread=False).enqueue("elsewhere", [None], EnqueueOptions())
    stored = await storage.get_executions([execution_id, default])
    assert [(r.priority, r.queue) for r in stored if r] == [(7, "bulk"), (0, "default")]


def test_the_sync_client_refuses_a_bad_priority_before_anything_is_sent():
    with Client(storage=MemoryStorage()) as client:
        with pytest.raises(ValueError, match="Invalid priority for an enqueue: .* got -1"):
            client.enqueue("t", priority=-1)
        execution_id = client.enqueue_many("t", [1], priority=2, queue="q")[0]
        assert client.get(execution_id).status is S.READY
