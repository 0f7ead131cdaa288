"""Coalesced storage calls: many waiting handles and finishing runs share batch calls, and a
cancelled caller never costs the others their answer.

The batch counts are checked on memory only: there a storage call returns at once, the hardest
case for batching (on SQLite, where calls take real time, the same 1,000 waits share 2 reads and
10 commits; this test allows under 200 and 100). The ``Coalescer`` tests need no storage."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from durable_core import DurableExecutor, ParentTaskResult, RetryOptions, child_task
from durable_core.batching import Coalescer
from durable_core.storage.contract import StorageError


def _executor() -> DurableExecutor:
    executor = DurableExecutor("memory", poll_interval=3600)

    @executor.task(id="noop", timeout=10)
    async def noop(ctx, input):
        return input * 2

    return executor


async def test_many_waiting_handles_share_a_few_reads_and_commits() -> None:
    executor = _executor()
    async with executor:
        handles = await executor.enqueue_tasks("noop", range(1000))
        outputs = {}

        async def wait(handle, i):
            outputs[i] = (await handle.wait_and_get_finished_execution()).output

        async with trio.open_nursery() as nursery:
            for i, handle in enumerate(handles):
                nursery.start_soon(wait, handle, i)
        metrics = executor.get_storage_metrics()
    assert outputs == {i: i * 2 for i in range(1000)}
    assert metrics["get_executions"].count < 200  # 2,000 reads, batched
    assert metrics["commit_runs"].count < 100  # 1,000 commits, batched


async def test_a_cancelled_caller_leaves_the_others_their_answer() -> None:
    calls = []
    scopes = {}

    async def double(items):
        calls.append(list(items))
        if len(calls) == 1:  # cancel the leader (whichever task trio ran first) mid-call
            scopes[trio.lowlevel.current_task()].cancel()
        await trio.sleep(1)
        return [item * 2 for item in items]

    coalescer = Coalescer(double)
    results = {}

    async def submit(item):
        with trio.CancelScope() as scopes[trio.lowlevel.current_task()]:
            results[item] = await coalescer.submit(item)

    async with trio.open_nursery() as nursery:
        for item in (1, 2, 3):
            nursery.start_soon(submit, item)
    first, second = calls
    assert sorted(first) == [1, 2, 3]
    (cancelled,) = set(first) - set(second)  # the followers made a call of their own
    assert results == {item: item * 2 for item in second}
    assert cancelled not in results


async def test_a_failed_call_fails_every_caller_of_the_batch() -> None:
    async def broken(items):
        await trio.lowlevel.checkpoint()
        raise StorageError("database is gone")

    coalescer = Coalescer(broken)
    failures = []

    async def submit(item):
        with pytest.raises(StorageError, match="database is gone"):
            await coalescer.submit(item)
        failures.append(item)

    async with trio.open_nursery() as nursery:
        for item in range(3):
            nursery.start_soon(submit, item)
    assert sorted(failures) == [0, 1, 2]


async def test_batches_are_capped() -> None:
    sizes = []

    async def echo(items):
        sizes.append(len(items))
        await trio.lowlevel.checkpoint()
        return list(items)

    coalescer = Coalescer(echo, max_batch=10)
    async with trio.open_nursery() as nursery:
        for item in range(25):
            nursery.start_soon(coalescer.submit, item)
    assert sum(sizes) == 25 and max(sizes) <= 10


@pytest.mark.real_clock
@pytest.mark.parametrize("storage", ["memory", "sqlite"])
async def test_a_waited_execution_is_returned_exactly_as_stored(storage, tmp_path) -> None:
    """Handles woken by a local commit get the record the contract says was stored, unread:
    it must be the very record a read returns."""
    options = {"path": tmp_path / "durable.db"} if storage == "sqlite" else None
    executor = DurableExecutor(storage, storage_options=options)

    @executor.task(id="child", timeout=10)
    async def child(ctx, input):
        if input == "bad":
            raise ValueError("bad input")
        return {"got": input}

    @executor.parent_task(id="parent", timeout=10)
    async def parent(ctx, input):
        return ParentTaskResult(output=[1.5, "x"], children=[child_task(child, "ok"), child_task(child, "bad")])

    async with executor:
        handles = [await executor.enqueue_task(parent, {"n": 1}), await executor.enqueue_task(child, "ok"),
                   await executor.enqueue_task(child, "bad", retry=RetryOptions(max_attempts=1))]
        for handle in handles:
            finished = await handle.wait_and_get_finished_execution()
            assert finished == await handle.get_execution()
            assert finished.status.is_finished and finished.updated_at >= finished.started_at
