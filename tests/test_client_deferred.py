"""Enqueues by a client without the task's definition, in virtual time: the options it did not
give are the task's own, applied by the executor that defines the task when it claims them."""

from __future__ import annotations

import trio

from durable_core import DurableExecutor, RetryOptions, TaskExecutionStatus
from durable_core.client.operations import ClientOperations, EnqueueOptions
from durable_storage_memory import MemoryStorage

S = TaskExecutionStatus


def client_and_worker(storage: MemoryStorage) -> tuple[DurableExecutor, DurableExecutor, list[float]]:
    """A client executor that defines nothing, a worker that defines the tasks below, and the
    times the worker started ``flaky``."""
    client = DurableExecutor(storage, max_concurrent_task_executions=0)
    worker = DurableExecutor(storage)
    attempts: list[float] = []

    @worker.task(id="flaky", timeout=30, retry=RetryOptions(max_attempts=2, base_delay=60))
    async def flaky(ctx, input):
        attempts.append(worker.now())
        await trio.sleep(10)  # longer than the client's placeholder timeout: the task's 30 s apply
        if ctx.attempt < 2:
            raise RuntimeError("not yet")
        return ctx.attempt

    @worker.task(id="later", timeout=5, sleep_before_run=600)
    async def later(ctx, input):
        return worker.now()

    worker.sleeping_task(id="webhook", timeout=60)
    return client, worker, attempts


async def enqueue(client: DurableExecutor, task_id: str, input=None, **options) -> str:
    (execution_id,) = await ClientOperations(client, on_caller_thread=False).enqueue(task_id, [input], EnqueueOptions(**options))
    return execution_id


async def test_options_not_given_are_the_tasks_defaults():
    storage = MemoryStorage()
    client, worker, attempts = client_and_worker(storage)
    async with client, worker:
        stored = await enqueue(client, "flaky")
        assert (await storage.get_executions([stored]))[0].deferred_options == {
            "retry", "timeout", "sleep_before_run"}
        finished = await client.engine.wait_until_finished(stored)
        record = (await storage.get_executions([stored]))[0]

    assert finished.status is S.COMPLETED and finished.output == 2  # two retries: the task's retry options
    assert attempts[1] - attempts[0] >= 60  # the task's backoff
    assert record.deferred_options == frozenset() and record.timeout == 30


async def test_options_given_by_the_client_win():
    storage = MemoryStorage()
    client, worker, attempts = client_and_worker(storage)
    async with client, worker:
        stored = await enqueue(client, "flaky", timeout=5, retry=RetryOptions(max_attempts=0))
        finished = await client.engine.wait_until_finished(stored)
    assert finished.status is S.TIMED_OUT
    assert len(attempts) == 1


async def test_the_tasks_sleep_before_run_delays_a_client_enqueue():
    storage = MemoryStorage()
    client, worker, attempts = client_and_worker(storage)
    async with client, worker:
        enqueued_at = client.now()
        stored = await enqueue(client, "later")
        finished = await client.engine.wait_until_finished(stored)
    assert finished.status is S.COMPLETED
    assert finished.output >= enqueued_at + 600
    assert finished.retry_attempts == 0  # handed back until then, not counted as an attempt


async def test_a_given_sleep_before_run_is_not_deferred():
    storage = MemoryStorage()
    client, worker, attempts = client_and_worker(storage)
    async with client, worker:
        enqueued_at = client.now()
        finished = await client.engine.wait_until_finished(await enqueue(client, "later", sleep_before_run=1))
    assert enqueued_at + 1 <= finished.output < enqueued_at + 60


async def test_a_sleeping_task_cannot_be_enqueued_without_its_definition():
    storage = MemoryStorage()
    client, worker, attempts = client_and_worker(storage)
    async with client, worker:
        finished = await client.engine.wait_until_finished(await enqueue(client, "webhook", "order-1"))
    assert finished.status is S.FAILED
    assert "Sleeping task webhook cannot be enqueued by a client" in finished.error.message
    assert finished.error.is_retryable is False


async def test_an_attached_executor_enqueues_its_own_tasks_with_their_definitions():
    storage = MemoryStorage()
    _, worker, _ = client_and_worker(storage)
    async with worker:
        stored = await enqueue(worker, "later")
        record = (await storage.get_executions([stored]))[0]
    assert record.deferred_options == frozenset()
    assert record.start_at == record.created_at + 600
