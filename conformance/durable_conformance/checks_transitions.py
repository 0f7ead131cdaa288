"""Every writing operation checked, field by field, against the rules of the transitions.

The rules of every state transition are written once, in ``durable_core.storage.transitions``.
A backend whose operations are SQL statements writes them a second time, in SQL; these checks
keep the two in step. Each one stores a *catalogue*: records in every state the engine leaves
them in (every status, claimed or not, sleeping, parents with active and finished children,
finished trees), performs an operation on the storage and the same operation on a
``ContractModel`` loaded with the records as stored just before, and compares every field of
every record afterwards, and the status changes reported.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from durable_core.models import ExecutionRef
from durable_core.status import FINISHED_TASK_EXECUTION_STATUSES
from durable_core.status import TaskExecutionStatus as S
from durable_core.storage import EXPIRED_ERROR, ExecutionRecord, Lease
from durable_core.storage import RunCommit, SleepingWakeup, StatusChange, Storage

from .model import ContractModel, difference
from .records import BOOM, DEFERRABLE, OUTPUT, child, finish, new, retry, sleeping, spawn, summarize

NOW = 100.0
"""When the operations happen; every lease of a catalogue is due by then, and no due ``ready_at``
or lease expiry is shared by two records (so the order of a claim or an expiry is determined)."""


def _leased(execution_id: str, *, expires_at: float, now: float = 10.0, **fields: Any) -> ExecutionRecord:
    """A running record claimed by ``de_a`` at 20 (token 1), its lease due at ``expires_at``."""
    defaults: dict[str, Any] = dict(status=S.RUNNING, started_at=20.0, ready_at=None, executor_id="de_a",
                                    lease_token=1, lease_expires_at=expires_at, updated_at=20.0)
    return new(execution_id, now=now, **{**defaults, **fields})


def _waiting(execution_id: str, *, children: Sequence[str], active: int, now: float = 10.0,
             status: S = S.WAITING_FOR_CHILDREN, **fields: Any) -> ExecutionRecord:
    """A parent, claimed once and committed, waiting for ``active`` of its ``children``."""
    refs = tuple(ExecutionRef("task", c) for c in children)
    tree: dict[str, Any] = (dict(finalize=refs[0], waiting_for_finalize_started_at=25.0)
                            if status is S.WAITING_FOR_FINALIZE else
                            dict(children=refs, waiting_for_children_started_at=25.0))
    defaults: dict[str, Any] = dict(status=status, started_at=20.0, ready_at=None, executor_id="de_a",
                                    lease_token=1, active_children_count=active, run_output=OUTPUT,
                                    updated_at=25.0, **tree)
    return new(execution_id, now=now, **{**defaults, **fields})


def _finished(execution_id: str, *, status: S, finished_at: float, now: float = 10.0,
              **fields: Any) -> ExecutionRecord:
    """A record claimed once by ``de_a`` that finished in ``status`` at ``finished_at``."""
    result: dict[str, Any] = dict(output=OUTPUT) if status is S.COMPLETED else dict(error=BOOM)
    defaults: dict[str, Any] = dict(status=status, started_at=20.0, finished_at=finished_at, ready_at=None,
                                    executor_id="de_a", lease_token=1, updated_at=finished_at, **result)
    return new(execution_id, now=now, **{**defaults, **fields})


def catalogue(p: str) -> list[ExecutionRecord]:
    """Records in every state the engine leaves them in, their ids prefixed with ``p``, parents
    before their children. Each lease is due between 61 and 69, each due ``ready_at`` between 50
    and 53, every finished top-level execution finished between 19 and 35."""
    tree = _waiting(f"{p}_tree", children=[f"{p}_tree_c{i}" for i in range(4)], active=3)
    middle = child(tree, f"{p}_tree_c0", now=10.0, make=_waiting,
                   children=[f"{p}_tree_c0_g0", f"{p}_tree_c0_g1"], active=2, executor_id="de_b")
    last = _waiting(f"{p}_last", children=[f"{p}_last_c0", f"{p}_last_c1"], active=1)
    finalizing = _waiting(f"{p}_fin", children=[f"{p}_fin_f"], active=1, status=S.WAITING_FOR_FINALIZE)
    due = _waiting(f"{p}_due", children=[f"{p}_due_c0"], active=0, ready_at=53.0)
    claimed = _waiting(f"{p}_claimed", children=[f"{p}_claimed_c0", f"{p}_claimed_c1"], active=0, lease_token=2,
                       lease_expires_at=69.0, lease_expirations=2, updated_at=45.0)
    old = _finished(f"{p}_old", status=S.COMPLETED, finished_at=20.0,
                    children=(ExecutionRef("task", f"{p}_old_c0"),))
    return [
        new(f"{p}_ready", now=5.0, ready_at=50.0, start_at=50.0, deferred_options=frozenset(DEFERRABLE)),
        new(f"{p}_later", now=5.0, ready_at=150.0, start_at=150.0, deferred_options=frozenset({"timeout"})),
        new(f"{p}_retrying", now=5.0, ready_at=51.0, start_at=51.0, retry_attempts=1, error=BOOM, lease_token=1,
            started_at=20.0, updated_at=30.0),
        _leased(f"{p}_running", expires_at=61.0, deferred_options=frozenset({"retry", "timeout"})),
        _leased(f"{p}_worn", expires_at=62.0, lease_expirations=2, error=EXPIRED_ERROR, lease_token=3),
        sleeping(f"{p}_sleep", f"{p}_u0", now=10.0, lease_expires_at=63.0),
        sleeping(f"{p}_woken", f"{p}_u3", now=10.0, status=S.COMPLETED, output=OUTPUT, finished_at=19.0,
                 lease_expires_at=None),
        *(_finished(f"{p}_done_{status}", status=status, finished_at=30.0 + n)
          for n, status in enumerate(sorted(FINISHED_TASK_EXECUTION_STATUSES))),
        tree,
        middle,
        child(middle, f"{p}_tree_c0_g0", now=20.0, make=_leased, expires_at=64.0),
        child(middle, f"{p}_tree_c0_g1", now=20.0, index=1, make=sleeping, unique_id=f"{p}_u1",
              lease_expires_at=65.0),
        child(tree, f"{p}_tree_c1", now=10.0, index=1, ready_at=52.0, start_at=52.0,
              deferred_options=frozenset({"sleep_before_run"})),
        child(tree, f"{p}_tree_c2", now=10.0, index=2, make=_leased, expires_at=66.0),
        child(tree, f"{p}_tree_c3", now=10.0, index=3, make=_finished, status=S.COMPLETED, finished_at=40.0),
        last,
        child(last, f"{p}_last_c0", now=10.0, make=sleeping, unique_id=f"{p}_u2", lease_expires_at=67.0),
        child(last, f"{p}_last_c1", now=10.0, index=1, make=_finished, status=S.FAILED, finished_at=40.0),
        finalizing,
        child(finalizing, f"{p}_fin_f", now=10.0, is_finalize=True, make=_leased, expires_at=68.0),
        due,
        child(due, f"{p}_due_c0", now=10.0, make=_finished, status=S.COMPLETED, finished_at=45.0),
        claimed,
        child(claimed, f"{p}_claimed_c0", now=10.0, make=_finished, status=S.COMPLETED, finished_at=44.0),
        child(claimed, f"{p}_claimed_c1", now=40.0, index=1, ready_at=150.0, start_at=150.0),  # a late child
        old,
        child(old, f"{p}_old_c0", now=10.0, make=_finished, status=S.CANCELLED, finished_at=15.0),
    ]


async def _stored(storage: Storage, p: str) -> list[ExecutionRecord]:
    """Store the catalogue ``p``; its records as stored."""
    records = catalogue(p)
    assert await storage.insert_executions(records) == records, "insert_executions of a catalogue"
    return records


async def _everything(storage: Storage) -> dict[str, ExecutionRecord]:
    return {r.execution_id: r for r in await storage.list_executions(limit=1_000_000)}


@contextlib.asynccontextmanager
async def _compared(storage: Storage, operation: str) -> AsyncIterator[ContractModel]:
    """A model of every record as stored now, on which the body performs what it performs on
    ``storage``; afterwards every field of every record must agree."""
    model = ContractModel(list((await _everything(storage)).values()))
    yield model
    stored = await _everything(storage)
    for execution_id in sorted({*stored, *model.records}):
        want, got = model.records.get(execution_id), stored.get(execution_id)
        assert want == got, f"{operation}: {execution_id}: {difference(want, got)}"


def _same_changes(operation: str, expected: list[StatusChange], actual: list[StatusChange]) -> None:
    assert summarize(actual) == summarize(expected), (
        f"{operation} reported changes {summarize(actual)}, the rules say {summarize(expected)}")


async def _writes_follow_the_rules(storage: Storage, operation: str,
                                   on_model: Callable[[ContractModel], list[StatusChange]],
                                   on_storage: Callable[[], Awaitable[list[StatusChange]]]) -> None:
    """``on_storage`` performs ``operation`` on ``storage`` and ``on_model`` the same on a model of
    it: they must store the same records and report the same changes."""
    async with _compared(storage, operation) as model:
        expected = on_model(model)
        changes = await on_storage()
    _same_changes(operation, expected, changes)


def _outcomes(record: ExecutionRecord) -> dict[str, RunCommit]:
    """Commits the engine could send for the claimed ``record``, by name. A completion fills in
    deferred options (none left), the other outcomes keep them (the contract stores either)."""
    execution_id, index = record.execution_id, len(record.children)
    kids = [child(record, f"{execution_id}_k{i}", now=NOW, index=index + i, deferred_options=frozenset({"retry"}))
            for i in range(2)]
    outcomes = {"completed": finish(record, S.COMPLETED, NOW, timeout=12.5, deferred_options=frozenset())}
    if record.status is S.RUNNING:
        asleep = child(record, f"{execution_id}_z", now=NOW, index=index + 2, make=sleeping,
                       unique_id=f"{execution_id}_z")
        outcomes.update(failed=finish(record, S.FAILED, NOW), retried=retry(record, NOW, 5.0),
                        spawned=spawn(record, [*kids, asleep], NOW, run_output=OUTPUT))
    else:
        outcomes.update(failed=finish(record, S.FINALIZE_FAILED, NOW))
    if record.status is S.WAITING_FOR_CHILDREN:
        finalize = child(record, f"{execution_id}_f", now=NOW, is_finalize=True)
        outcomes.update(spawned=spawn(record, kids, NOW),
                        finalizing=spawn(record, [finalize], NOW, S.WAITING_FOR_FINALIZE))
    return outcomes


class TransitionChecks:
    """Every writing operation stores exactly what the rules of ``durable_core.storage.transitions``
    compute, field by field, from the records as stored before it."""

    async def test_claims_follow_the_rules(self, storage: Storage) -> None:
        await _stored(storage, "te_a")
        for now in (51.5, NOW, NOW):
            async with _compared(storage, f"claim_executions at {now}") as model:
                expected = model.claim([r.execution_id for r in model.due(now)], "de_c", now, 2.5)
                claimed = await storage.claim_executions("de_c", now, 1000, 2.5)
            assert claimed == expected, f"claim_executions at {now} returned {claimed}, the rules say {expected}"

    async def test_commits_follow_the_rules(self, storage: Storage) -> None:
        """Each outcome on a catalogue of its own, one commit per call, of every record in the
        catalogue's order (most were not claimed; an earlier commit's cascade may end a later
        lease), then the same commits again, whose leases no longer hold."""
        for outcome in ("completed", "failed", "retried", "spawned", "finalizing"):
            records = await _stored(storage, f"te_{outcome}")
            commits = [c for r in records if not r.is_sleeping and (c := _outcomes(r).get(outcome)) is not None]
            for commit in (*commits, *commits):
                await _writes_follow_the_rules(
                    storage, f"commit_runs ({outcome}) of {commit.record.execution_id}",
                    lambda model: model.commit([commit], NOW), lambda: storage.commit_runs([commit], NOW))

    async def test_releases_follow_the_rules(self, storage: Storage) -> None:
        """Every record's lease, and a stale token of each, twice over."""
        records = await _stored(storage, "te_r")
        leases = [lease for r in records for lease in (r.lease, Lease(r.execution_id, r.lease_token - 1))]
        for _ in range(2):
            async with _compared(storage, "release_leases") as model:
                assert await storage.find_revoked_leases(leases) == model.find_revoked(leases), "find_revoked_leases"
                expected = model.release(leases, NOW)
                changes = await storage.release_leases(leases, NOW)
            _same_changes("release_leases", expected, changes)

    async def test_expiry_follows_the_rules(self, storage: Storage) -> None:
        """Some leases due, then all; the allowed expirations run out for some records."""
        await _stored(storage, "te_x")
        for now in (64.5, NOW, NOW):
            await _writes_follow_the_rules(storage, f"expire_leases at {now}", lambda model: model.expire(now, 2),
                                           lambda: storage.expire_leases(now, 2, 1000))

    async def test_cancels_follow_the_rules(self, storage: Storage) -> None:
        """Each record alone, children before parents (so each in the status it was stored in),
        then a whole catalogue in one call, parents first (their cascades end what follows)."""
        alone = [r.execution_id for r in await _stored(storage, "te_c")]
        together = [r.execution_id for r in await _stored(storage, "te_d")] + ["te_unknown"]
        for ids in [*([execution_id] for execution_id in reversed(alone)), together]:
            await _writes_follow_the_rules(storage, f"cancel_executions of {ids}", lambda model: model.cancel(ids, NOW),
                                           lambda: storage.cancel_executions(ids, NOW))

    async def test_retries_follow_the_rules(self, storage: Storage) -> None:
        """A retry of every record, one per call, then of the whole catalogue again in one call:
        only errored top-level executions that are not sleeping accept one."""
        ids = [r.execution_id for r in await _stored(storage, "te_y")] + ["te_unknown"]
        for batch in [*([execution_id] for execution_id in ids), ids]:
            await _writes_follow_the_rules(storage, f"retry_executions of {batch}", lambda model: model.retry(batch, NOW),
                                           lambda: storage.retry_executions(batch, NOW))

    async def test_wakeups_follow_the_rules(self, storage: Storage) -> None:
        """A wake-up for every record, one per call: only running sleeping executions accept one."""
        records = await _stored(storage, "te_w")
        for n, execution_id in enumerate([*(r.execution_id for r in records), "te_unknown"]):
            wakeups = [SleepingWakeup(execution_id, S.COMPLETED, output=OUTPUT) if n % 2 else
                       SleepingWakeup(execution_id, S.FAILED, error=BOOM)]
            await _writes_follow_the_rules(
                storage, f"wake_sleeping_executions of {execution_id}", lambda model: model.wake(wakeups, NOW),
                lambda: storage.wake_sleeping_executions(wakeups, NOW))

    async def test_deletion_follows_the_rules(self, storage: Storage) -> None:
        """Whole trees of the top-level executions finished before the time given, nothing else."""
        await _stored(storage, "te_e")
        for before in (32.0, NOW, NOW):  # the first deletes those that finished before 32, not at 32
            operation = f"delete_finished_executions before {before}"
            async with _compared(storage, operation) as model:
                expected = model.delete_trees([r.execution_id for r in model.deletable_roots(before)])
                deleted = await storage.delete_finished_executions(before, 1000)
            assert deleted == expected, f"{operation} deleted {deleted} records, the rules say {expected}"


TRANSITION_CHECKS: tuple[type, ...] = (TransitionChecks,)
