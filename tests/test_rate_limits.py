"""Rate limits: ``rate_limit="N/m"`` on a task caps how many of its executions start per sliding
period across every executor on the storage, counted by the storage in its claim; bad values and
storages that cannot enforce them are refused."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from durable_core import DurableExecutor, TaskExecutionStatus
from durable_core.errors import DurableExecutionError
from durable_core.storage import Capabilities
from durable_storage_memory import MemoryStorage

S = TaskExecutionStatus


def define(ex: DurableExecutor, starts: list[float]) -> None:
    """``rated`` (rate_limit="5/m") notes when each run starts, in ``starts``."""

    async def work(ctx, input):
        starts.append(trio.current_time())
        await trio.sleep(1)

    ex.task(id="rated", timeout=60, rate_limit="5/m", run=work)


async def test_two_executors_start_at_most_the_rate_per_minute_and_all_complete(shared_storage):
    starts: list[float] = []
    first = shared_storage.executor(**{**shared_storage.LONG_WAITS, "poll_interval": 1})
    second = shared_storage.executor(**{**shared_storage.LONG_WAITS, "poll_interval": 1})
    define(first, starts)
    define(second, starts)
    async with first, second:
        begin = trio.current_time()
        handles = [await first.enqueue_task("rated", i) for i in range(12)]
        for handle in handles:
            assert (await handle.wait_and_get_finished_execution()).status is S.COMPLETED
        done = trio.current_time() - begin
    offsets = sorted(start - begin for start in starts)
    assert len(offsets) == 12
    for offset in offsets:  # no sliding minute holds more than 5 starts
        assert sum(1 for other in offsets if offset <= other < offset + 60) <= 5
    assert sum(1 for offset in offsets if offset < 60) == 5
    assert 120 <= done <= 125  # 5 at once, 5 a minute later, 2 a minute after that


async def test_an_executor_does_not_claim_a_rate_limited_task_on_insert():
    storage = MemoryStorage()
    ex = DurableExecutor(storage, poll_interval=3600)
    define(ex, [])
    async with ex:
        await trio.testing.wait_all_tasks_blocked()  # the claimer caught up: claim on insert would apply
        handle = await ex.enqueue_task("rated")
        (stored,) = await storage.get_executions([handle.execution_id])
        assert stored is not None and (stored.status, stored.executor_id) == (S.READY, None)
        assert (await handle.wait_and_get_finished_execution()).status is S.COMPLETED


@pytest.mark.parametrize("bad", ["100/x", "0/m", "abc", "-1/s", "1.5/m", "5/ m", "", 5, True, "1000001/s",
                                 "9" * 5000 + "/m"])
def test_an_invalid_rate_limit_is_refused_naming_the_field(bad):
    ex = DurableExecutor(MemoryStorage())
    with pytest.raises(ValueError, match=r"Invalid rate_limit for task t: \"N/s\", \"N/m\", \"N/h\" or \"N/d\""):
        ex.task(id="t", timeout=5, rate_limit=bad, run=lambda ctx, input: None)


@pytest.mark.parametrize(("text", "parsed"), [("1/s", (1, 1.0)), ("100/m", (100, 60.0)), ("7/h", (7, 3600.0)),
                                               ("20/d", (20, 86400.0))])
def test_a_rate_limit_is_parsed_into_a_count_and_a_period(text, parsed):
    ex = DurableExecutor(MemoryStorage())
    assert ex.task(id="t", timeout=5, rate_limit=text, run=lambda ctx, input: None).rate_limit == parsed
    assert ex.rates == {"t": parsed}


class UnratedStorage(MemoryStorage):
    """A storage that enforces concurrency limits but not rates."""

    capabilities = Capabilities(routing=True, concurrency_limits=True)


async def test_an_executor_with_a_rate_limited_task_refuses_a_storage_that_cannot_enforce_it():
    ex = DurableExecutor(UnratedStorage())
    define(ex, [])
    with pytest.raises(DurableExecutionError, match=r"Task rated has rate_limit, which storage "
                                                    r"UnratedStorage cannot enforce"):
        async with ex:
            pass
    client = DurableExecutor(UnratedStorage(), max_concurrent_task_executions=0)  # runs nothing: fine
    define(client, [])
    async with client:
        await client.enqueue_task("rated")
