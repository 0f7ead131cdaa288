"""Retention (``[retention] finished_after``): workers delete old finished trees by themselves,
one at a time, in virtual time; active trees and recent ones stay."""

from __future__ import annotations

import pytest
import trio

from durable_core import ChildTask, DurableExecutor, ParentTaskResult, TaskExecutionStatus
from durable_core.plugins.manager import PluginRegistry
from durable_core.retention import BATCH, TURN
from durable_storage_memory import MemoryStorage

S = TaskExecutionStatus
DAY = 86400.0


def define_tree(ex: DurableExecutor) -> None:
    """``tree``: a parent waiting for two sleeping children, ``gate-<input>-0`` and ``-1``."""
    gate = ex.sleeping_task(id="gate", timeout=30 * DAY)

    @ex.parent_task(id="tree", timeout=60)
    async def tree(ctx, input):
        return ParentTaskResult(None, [ChildTask(gate, f"gate-{input}-{i}") for i in range(2)])


async def waiting_tree(ex: DurableExecutor, name: str) -> list[str]:
    """A tree waiting for its children: the ids of the parent and its two children."""
    handle = await ex.enqueue_task("tree", name)
    while (execution := await handle.get_execution()).status is not S.WAITING_FOR_CHILDREN:
        await trio.sleep(1)
    return [execution.execution_id, *(child.execution_id for child in execution.children or ())]


async def test_a_worker_deletes_trees_finished_longer_ago_than_finished_after(shared_storage):
    ex = shared_storage.executor(retention_finished_after="7d", **shared_storage.LONG_WAITS)
    define_tree(ex)
    async with ex, shared_storage.open() as storage:
        old, active, recent = [await waiting_tree(ex, name) for name in ("old", "active", "recent")]
        now = ex.now()
        # finished by the storage at the engine's time 8 days ago (the whole tree, by cascade), and 1 day ago
        await storage.cancel_executions([old[0]], now - 8 * DAY)
        await storage.cancel_executions([active[1]], now - 8 * DAY)  # a child: its tree is still active
        await storage.cancel_executions([recent[0]], now - 1 * DAY)
        await trio.sleep(TURN)
        assert await storage.get_executions(old) == [None, None, None]
        kept = await storage.get_executions(active + recent)
        assert None not in kept
        assert [r.status for r in kept] == [S.WAITING_FOR_CHILDREN, S.CANCELLED, S.RUNNING] + [S.CANCELLED] * 3
        assert ex.get_storage_metrics()["delete_finished_executions"].count >= 1


async def test_executions_run_eight_days_ago_are_deleted_in_virtual_time(monkeypatch):
    monkeypatch.setenv("DURABLE_DISABLE_PLUGINS", "prometheus")  # its storage polls would make 8 days last 10 s
    storage = MemoryStorage()
    ex = DurableExecutor(storage, retention_finished_after="7d", poll_interval=300, lease_duration=600,
                         heartbeat_interval=200, plugins=PluginRegistry.load())
    define_tree(ex)

    @ex.task(id="hello", timeout=5)
    async def hello(ctx, input):
        return f"hello {input}"

    async with ex:
        first = await (await ex.enqueue_task(hello, "old")).wait_and_get_finished_execution()
        active = await waiting_tree(ex, "active")
        await trio.sleep(2 * DAY)
        second = await (await ex.enqueue_task(hello, "recent")).wait_and_get_finished_execution()
        await trio.sleep(6 * DAY)  # `old` finished 8 days ago, `recent` 6
        ids = [first.execution_id, second.execution_id, *active]
        assert [r and r.status for r in await storage.get_executions(ids)] == [
            None, S.COMPLETED, S.WAITING_FOR_CHILDREN, S.RUNNING, S.RUNNING]


async def test_two_workers_on_one_sqlite_file_take_turns_never_both_at_once(tmp_path, wall_phase):
    options = dict(storage_options={"path": str(tmp_path / "durable.db")}, retention_finished_after="7d",
                   poll_interval=300, lease_duration=600, heartbeat_interval=200)
    workers = DurableExecutor("sqlite", **options), DurableExecutor("sqlite", **options)
    for worker in workers:
        define_tree(worker)

    async def old_trees(count: int) -> None:
        """``count`` trees whose parent was cancelled (the whole tree, by cascade) 8 days ago."""
        ids = [h.execution_id for h in await workers[0].enqueue_tasks("tree", [str(i) for i in range(count)])]
        while any(r.status is not S.WAITING_FOR_CHILDREN for r in await workers[0].storage.get_executions(ids)):
            await trio.sleep(1)
        await workers[0].storage.cancel_executions(ids, workers[0].now() - 8 * DAY)

    def deletions() -> list[int]:
        return [getattr(w.get_storage_metrics().get("delete_finished_executions"), "count", 0) for w in workers]

    await wall_phase(TURN, 1)  # the workers start, and make the trees, within a turn; they delete in the next
    async with workers[0], workers[1]:
        await old_trees(BATCH + 20)  # more than a batch: several calls in one turn
        await trio.sleep(TURN)
        first_turn = deletions()
        assert sorted(first_turn) == [0, 3]  # one worker deleted, in 2 batches and a call that found none
        assert await workers[0].storage.list_executions() == []
        await old_trees(10)
        await trio.sleep(TURN)
        second_turn = [now - then for now, then in zip(deletions(), first_turn)]
        assert second_turn[first_turn.index(0)] == 2 and second_turn[first_turn.index(3)] == 0  # the other's turn
        assert await workers[0].storage.list_executions() == []


@pytest.mark.parametrize("value", ["7x", "-7d", "30s", "40000d", -1, True, float("nan")])
def test_an_invalid_finished_after_is_refused_naming_it(value):
    with pytest.raises(ValueError, match="retention option finished_after: expected a duration from 1m"):
        DurableExecutor(MemoryStorage(), retention_finished_after=value)


def test_finished_after_takes_a_duration_or_seconds():
    assert DurableExecutor(MemoryStorage(), retention_finished_after="2w").retention_finished_after == 14 * DAY
    assert DurableExecutor(MemoryStorage(), retention_finished_after=3600).retention_finished_after == 3600.0
    assert DurableExecutor(MemoryStorage()).retention_finished_after is None
