"""Deliberately broken storages: the memory storage with one classic bug each.

``test_broken_storages.py`` runs the suite against each (with pytester) and checks that it fails,
and on which checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter

import trio
from durable_storage_memory import MemoryStorage
from durable_storage_memory.storage import _State

from durable_core.status import TaskExecutionStatus as S
from durable_core.storage import transitions
from durable_core.storage import ExecutionRecord, ExecutorInfo, Lease, RunCommit, StatusChange


class DoubleClaimStorage(MemoryStorage):
    """Claims check-then-act: picks the due records, yields, then claims them whatever happened
    meanwhile. Alone it looks right; two concurrent claimers take the same execution."""

    async def claim_executions(self, executor_id: str, now: float, limit: int,
                               lease_duration: float) -> list[ExecutionRecord]:
        await trio.lowlevel.checkpoint()
        with self._lock:
            due = sorted((r for r in self._state.records.values() if transitions.is_due(r, now)),
                         key=attrgetter("ready_at"))[:max(limit, 0)]
        await trio.lowlevel.checkpoint()  # e.g. a round trip to a server: another claimer runs here
        claimed = []
        with self._lock:
            for seen in due:
                record = self._state.records[seen.execution_id]
                new = transitions.claim(record, executor_id, now, lease_duration)
                self._state._replace(record, new)
                claimed.append(new.copy())
        return claimed


class LostWriteStorage(MemoryStorage):
    """Acknowledges a completing commit but never stores its output (a column missing from an
    UPDATE)."""

    async def commit_runs(self, commits: Sequence[RunCommit], now: float) -> list[StatusChange]:
        lossy = [RunCommit(c.record.copy(output=None), c.new_executions) if c.record.status is S.COMPLETED else c
                 for c in commits]
        return await super().commit_runs(lossy, now)


class _FencelessState(_State):
    def _held(self, lease: Lease) -> ExecutionRecord | None:
        return self.records.get(lease.execution_id)  # the token is never compared


class IgnoredFencingStorage(MemoryStorage):
    """Applies a commit (or a release) whatever its fencing token: a run that lost its lease
    overwrites newer state."""

    def __init__(self) -> None:
        super().__init__()
        self._state = _FencelessState()


class _RevivingState(_State):
    def renew(self, executor: ExecutorInfo, leases: Sequence[Lease], now: float, lease_duration: float) -> list[str]:
        for lease in leases:  # by id alone: neither the token nor the end of the lease is checked
            record = self.records.get(lease.execution_id)
            if record is not None:
                self._replace(record, record.copy(lease_expires_at=now + lease_duration))
        self.executors[executor.executor_id] = executor
        return []


class RevivingHeartbeatStorage(MemoryStorage):
    """Renews leases by execution id alone: the heartbeat of a run that lost its lease revives it
    (two runs then hold one execution), and the run is never told to stop."""

    def __init__(self) -> None:
        super().__init__()
        self._state = _RevivingState()


class MissingCheckpointStorage(MemoryStorage):
    """Reads without a checkpoint: a loop of reads starves every other task and cannot be
    cancelled."""

    async def get_executions(self, execution_ids: Sequence[str]) -> list[ExecutionRecord | None]:
        with self._lock:
            return self._state.get(execution_ids)


class NonAtomicBatchStorage(MemoryStorage):
    """Inserts a batch one record at a time: a conflict half-way, or a cancellation between two
    records, leaves the first ones stored."""

    async def insert_executions(self, records: Sequence[ExecutionRecord]) -> list[ExecutionRecord]:
        stored: list[ExecutionRecord] = []
        for record in records:
            stored += await super().insert_executions([record])
        return stored


class DroppedDeferredOptionsStorage(MemoryStorage):
    """Stores no ``deferred_options`` (a backend written for storage API 2, without the column):
    an executor would run a client's enqueue with placeholder options."""

    async def insert_executions(self, records: Sequence[ExecutionRecord]) -> list[ExecutionRecord]:
        return await super().insert_executions([r.copy(deferred_options=frozenset()) for r in records])


class StickyDeferredOptionsStorage(MemoryStorage):
    """A commit never writes ``deferred_options`` (a column missing from its UPDATE): the options
    an executor filled in stay marked as deferred."""

    async def commit_runs(self, commits: Sequence[RunCommit], now: float) -> list[StatusChange]:
        with self._lock:
            stored = {c.record.execution_id: self._state.records.get(c.record.execution_id) for c in commits}
        sticky = [RunCommit(c.record.copy(deferred_options=s.deferred_options), c.new_executions)
                  if (s := stored[c.record.execution_id]) is not None else c for c in commits]
        return await super().commit_runs(sticky, now)
