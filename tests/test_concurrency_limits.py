"""Concurrency limits: ``max_concurrency=N`` on a task caps its running executions across every
executor on the storage, counted by the storage in its claim; bad limits and storages that
cannot enforce them are refused."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from durable_core import DurableExecutor, TaskExecutionStatus
from durable_core.errors import DurableExecutionError
from durable_core.storage import Capabilities
from durable_storage_memory import MemoryStorage

S = TaskExecutionStatus


def define(ex: DurableExecutor, running: list[int], peak: list[int]) -> None:
    """``limited`` (max_concurrency=2) runs 10 s, counting how many run at once in ``running``."""

    async def work(ctx, input):
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        try:
            await trio.sleep(10)
        finally:
            running[0] -= 1

    ex.task(id="limited", timeout=60, max_concurrency=2, run=work)


async def test_two_executors_never_run_more_than_the_limit_and_all_complete(shared_storage):
    running, peak = [0], [0]
    first = shared_storage.executor(**{**shared_storage.LONG_WAITS, "poll_interval": 5})
    second = shared_storage.executor(**{**shared_storage.LONG_WAITS, "poll_interval": 5})
    define(first, running, peak)
    define(second, running, peak)
    async with first, second:
        handles = [await first.enqueue_task("limited", i) for i in range(10)]
        for handle in handles:
            assert (await handle.wait_and_get_finished_execution()).status is S.COMPLETED
    assert peak == [2]
    assert running == [0]


async def test_an_executor_does_not_claim_a_limited_task_on_insert():
    """Its slots are the storage's to count: the claimer claims it, from the storage."""
    storage = MemoryStorage()
    ex = DurableExecutor(storage, poll_interval=3600)
    define(ex, [0], [0])
    async with ex:
        await trio.testing.wait_all_tasks_blocked()  # the claimer caught up: claim on insert would apply
        handle = await ex.enqueue_task("limited")
        (stored,) = await storage.get_executions([handle.execution_id])
        assert stored is not None and (stored.status, stored.executor_id) == (S.READY, None)
        assert (await handle.wait_and_get_finished_execution()).status is S.COMPLETED


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True, 1_000_001, 10**30])
def test_an_invalid_max_concurrency_is_refused_naming_the_field(bad):
    ex = DurableExecutor(MemoryStorage())
    with pytest.raises(ValueError, match=r"Invalid max_concurrency for task t: an integer of at least 1"):
        ex.task(id="t", timeout=5, max_concurrency=bad, run=lambda ctx, input: None)


class UnlimitedStorage(MemoryStorage):
    """A storage that cannot enforce limits."""

    capabilities = Capabilities(routing=True)


async def test_an_executor_with_a_limited_task_refuses_a_storage_that_cannot_enforce_it():
    ex = DurableExecutor(UnlimitedStorage())
    define(ex, [0], [0])
    with pytest.raises(DurableExecutionError, match=r"Task limited has max_concurrency, which storage "
                                                    r"UnlimitedStorage cannot enforce"):
        async with ex:
            pass
    client = DurableExecutor(UnlimitedStorage(), max_concurrent_task_executions=0)  # runs nothing: fine
    define(client, [0], [0])
    async with client:
        await client.enqueue_task("limited")
