"""Batched ``commit_runs`` whose commits touch each other's records: pipelined, they must give
what committing them one by one gives (the in-memory storage is the reference)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from durable_conformance.records import INPUT, child, claim, finish, new, spawn, summarize
from durable_core import open_storage
from durable_core.models import ExecutionRef
from durable_core.status import TaskExecutionStatus as S
from durable_core.storage.contract import ExecutionRecord, RunCommit, Storage

Batch = Callable[[dict[str, ExecutionRecord]], Sequence[RunCommit]]


def _tree() -> list[ExecutionRecord]:
    """``te_p`` running with children ``te_a``, ``te_b`` (``te_a`` has a child ``te_a1``), and
    top-level ``te_x``, ``te_y``: every one claimable at 1.0."""
    p = new("te_p", now=1.0, active_children_count=2,
            children=(ExecutionRef("task", "te_a"), ExecutionRef("task", "te_b")))
    a = child(p, "te_a", now=1.0, active_children_count=1, children=(ExecutionRef("task", "te_a1"),))
    return [p, a, child(p, "te_b", now=1.0, index=1), child(a, "te_a1", now=1.0),
            new("te_x", now=1.0), new("te_y", now=1.0)]


async def _run(storage: Storage, batch: Batch) -> tuple[dict, list[ExecutionRecord | None]]:
    records = _tree()
    await storage.insert_executions(records)
    claimed = {r.execution_id: r for r in await claim(storage, 1.0, limit=100)}
    changes = await storage.commit_runs(batch(claimed), 2.0)
    ids = [r.execution_id for r in records] + ["te_n1", "te_n2"]
    return summarize(changes), await storage.get_executions(ids)


async def _agree(postgres, batch: Batch) -> None:
    async with open_storage("memory") as memory:
        reference = await _run(memory, batch)
    async with postgres() as storage:
        assert await _run(storage, batch) == reference


def _stale(record: ExecutionRecord) -> ExecutionRecord:
    return record.copy(lease_token=record.lease_token - 1)


async def test_held_and_lost_leases_in_one_batch(postgres):
    await _agree(postgres, lambda c: [
        finish(c["te_x"], S.COMPLETED, 2.0),
        RunCommit(_stale(finish(c["te_y"], S.COMPLETED, 2.0).record)),
        finish(c["te_b"], S.COMPLETED, 2.0),
        RunCommit(_stale(finish(c["te_a1"], S.FAILED, 2.0).record)),
    ])


async def test_a_childs_closure_before_its_parents_commit_in_one_batch(postgres):
    """``te_b`` closes ``te_p``, then ``te_p``'s commit writes its own count, then ``te_a`` closes it."""
    await _agree(postgres, lambda c: [
        finish(c["te_b"], S.COMPLETED, 2.0),
        RunCommit(c["te_p"].copy(status=S.WAITING_FOR_CHILDREN, waiting_for_children_started_at=2.0)),
        finish(c["te_a"], S.COMPLETED, 2.0),
    ])


async def test_a_cascade_fences_out_a_later_commit_of_a_descendant(postgres):
    await _agree(postgres, lambda c: [
        finish(c["te_p"], S.FAILED, 2.0),
        finish(c["te_a1"], S.COMPLETED, 2.0),
        finish(c["te_b"], S.COMPLETED, 2.0),
    ])


async def test_a_descendant_committed_before_its_ancestors_cascade(postgres):
    await _agree(postgres, lambda c: [
        finish(c["te_a1"], S.COMPLETED, 2.0),
        finish(c["te_a"], S.CANCELLED, 2.0),
        finish(c["te_p"], S.FAILED, 2.0),
    ])


async def test_commits_that_insert_keep_their_place_in_the_batch(postgres):
    """``te_x`` spawns between commits that close and cascade; ``te_y`` spawns with a lost lease."""
    def batch(c: dict[str, ExecutionRecord]) -> list[RunCommit]:
        x, y = c["te_x"], c["te_y"]
        return [
            finish(c["te_b"], S.COMPLETED, 2.0),
            spawn(x, [child(x, "te_n1", now=2.0, input=INPUT)], 2.0),
            RunCommit(_stale(spawn(y, [child(y, "te_n2", now=2.0)], 2.0).record),
                      (child(y, "te_n2", now=2.0),)),
            finish(c["te_p"], S.FAILED, 2.0),
            finish(c["te_a1"], S.COMPLETED, 2.0),
        ]

    await _agree(postgres, batch)
