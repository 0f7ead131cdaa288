"""``ContractModel``: the storage contract as plainly as possible, for comparison with a backend.

A dict of records (insertion-ordered) and a loop per operation, no indexes; every state
transition is computed by ``durable_core.storage.transitions``, the rules written once. The
state machine and the transition checks run the same operations on a backend and on this model
and compare what each stored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from operator import attrgetter
from typing import TypeVar

from durable_core.status import TaskExecutionStatus as S
from durable_core.storage import transitions
from durable_core.storage import DuplicateSleepingTaskUniqueIdError, ExecutionRecord, Lease
from durable_core.storage import ListCursor, RunCommit, SleepingWakeup, StatusChange, StorageError, list_key

T = TypeVar("T")


class ContractModel:
    """The storage contract over a plain dict (insertion-ordered), for comparison."""

    def __init__(self, records: Sequence[ExecutionRecord] = ()) -> None:
        self.records: dict[str, ExecutionRecord] = {r.execution_id: r.copy() for r in records}

    # -------------------------------------------------------------------------------- reads

    def get(self, execution_ids: Sequence[str]) -> list[ExecutionRecord | None]:
        return [self.records.get(i) for i in execution_ids]

    def by_unique_id(self, unique_ids: Sequence[str]) -> list[ExecutionRecord | None]:
        return [next((r for r in self.records.values() if r.sleeping_unique_id == u), None) for u in unique_ids]

    def holds(self, lease: Lease) -> bool:
        return transitions.lease_holds(self.records.get(lease.execution_id), lease)

    def due(self, now: float) -> list[ExecutionRecord]:
        """The records a claim at ``now`` may take, earliest ``ready_at`` first."""
        due = [r for r in self.records.values() if transitions.is_due(r, now)]
        return sorted(due, key=attrgetter("ready_at"))

    def leases_due(self, now: float) -> list[ExecutionRecord]:
        """The records an expiry at ``now`` ends, earliest ``lease_expires_at`` first."""
        due = [r for r in self.records.values() if transitions.lease_is_due(r, now)]
        return sorted(due, key=attrgetter("lease_expires_at"))

    def listed(self, statuses: Sequence[S] | None, task_id: str | None, executor_id: str | None = None,
               before: ListCursor | None = None) -> list[ExecutionRecord]:
        matches = [r for r in self.records.values()
                   if (statuses is None or r.status in statuses) and task_id in (None, r.task_id)
                   and executor_id in (None, r.executor_id) and (before is None or list_key(r) < before)]
        return sorted(matches, key=list_key, reverse=True)

    def children_of(self, execution_id: str) -> list[ExecutionRecord]:
        return [r for r in self.records.values() if r.parent is not None and r.parent.execution_id == execution_id]

    def subtree(self, execution_id: str) -> list[str]:
        ids = [execution_id]
        for parent_id in ids:
            ids.extend(r.execution_id for r in self.children_of(parent_id))
        return ids

    def deletable_roots(self, finished_before: float) -> list[ExecutionRecord]:
        return [r for r in self.records.values() if transitions.is_deletable_root(r, finished_before)]

    # -------------------------------------------------------------------------------- writes

    def atomically(self, operation: Callable[[], T]) -> T:
        before = dict(self.records)
        try:
            return operation()
        except BaseException:
            self.records = before
            raise

    def insert(self, records: Sequence[ExecutionRecord]) -> list[ExecutionRecord]:
        return self.atomically(lambda: [self._add(r, None) for r in records])

    def claim(self, execution_ids: Sequence[str], executor_id: str, now: float, lease_duration: float) -> list[ExecutionRecord]:
        """Claim the records with these ids (which the backend chose among ``due``)."""
        claimed = []
        for execution_id in execution_ids:
            new = transitions.claim(self.records[execution_id], executor_id, now, lease_duration)
            self.records[execution_id] = new
            claimed.append(new)
        return claimed

    def commit(self, commits: Sequence[RunCommit], now: float) -> list[StatusChange]:
        def apply() -> list[StatusChange]:
            changes: list[StatusChange] = []
            for commit in commits:
                if not self.holds(commit.record.lease):
                    continue
                stored = self.records[commit.record.execution_id]
                new = transitions.commit(commit.record, now)
                self._write(stored, new, changes)
                for record in commit.new_executions:
                    self._add(record, changes)
                self._after_finish(new, now, changes)
            return changes

        return self.atomically(apply)

    def release(self, leases: Sequence[Lease], now: float) -> list[StatusChange]:
        changes: list[StatusChange] = []
        for lease in leases:
            if self.holds(lease):
                record = self.records[lease.execution_id]
                self._write(record, transitions.release(record, now), changes)
        return changes

    def find_revoked(self, leases: Sequence[Lease]) -> list[str]:
        return [lease.execution_id for lease in leases if not self.holds(lease)]

    def renew(self, leases: Sequence[Lease], now: float, lease_duration: float) -> list[str]:
        """Renew the leases that hold (sleeping executions' deadlines aside); the others' ids."""
        lost = []
        for lease in leases:
            record = self.records.get(lease.execution_id)
            if record is not None and transitions.accepts_renewal(record, lease):
                self.records[lease.execution_id] = transitions.renew(record, now, lease_duration)
            else:
                lost.append(lease.execution_id)
        return lost

    def expire(self, now: float, max_lease_expirations: int) -> list[StatusChange]:
        """Every lease due at ``now``, earliest first (callers pass a limit above them all)."""
        changes: list[StatusChange] = []
        for execution_id in [r.execution_id for r in self.leases_due(now)]:
            record = self.records[execution_id]
            if transitions.lease_is_due(record, now):  # else ended by a cascade earlier in this call
                self._settle(record, transitions.expire(record, now, max_lease_expirations), now, changes)
        return changes

    def cancel(self, execution_ids: Sequence[str], now: float) -> list[StatusChange]:
        changes: list[StatusChange] = []
        for record in self._accepting(execution_ids, transitions.accepts_cancel):
            self._settle(record, transitions.cancel(record, now), now, changes)
        return changes

    def retry(self, execution_ids: Sequence[str], now: float) -> list[StatusChange]:
        changes: list[StatusChange] = []
        for record in self._accepting(execution_ids, transitions.accepts_retry):
            self._write(record, transitions.retry(record, now), changes)
        return changes

    def wake(self, wakeups: Sequence[SleepingWakeup], now: float) -> list[StatusChange]:
        changes: list[StatusChange] = []
        for wakeup in wakeups:
            record = self.records.get(wakeup.execution_id)
            if record is not None and transitions.accepts_wake(record):
                self._settle(record, transitions.wake(record, wakeup, now), now, changes)
        return changes

    def delete_trees(self, root_ids: Sequence[str]) -> int:
        """Delete the trees of these roots (which the backend chose among ``deletable_roots``)."""
        deleted = 0
        for root_id in root_ids:
            for execution_id in self.subtree(root_id):
                del self.records[execution_id]
                deleted += 1
        return deleted

    # -------------------------------------------------------------------------------- building blocks

    def _write(self, old: ExecutionRecord, new: ExecutionRecord, changes: list[StatusChange]) -> None:
        self.records[new.execution_id] = new
        changes.append(StatusChange(new.execution_id, new.task_id, old.status, new.status))

    def _add(self, record: ExecutionRecord, changes: list[StatusChange] | None) -> ExecutionRecord:
        """Insert ``record`` unless its idempotency key is taken; the stored record either way."""
        if record.idempotency_key is not None:
            twin = next((r for r in self.records.values()
                         if (r.task_id, r.idempotency_key) == (record.task_id, record.idempotency_key)), None)
            if twin is not None:
                return twin
        unique_id = record.sleeping_unique_id
        if unique_id is not None and any(r.sleeping_unique_id == unique_id for r in self.records.values()):
            raise DuplicateSleepingTaskUniqueIdError(unique_id)
        if record.execution_id in self.records:
            raise StorageError(f"Task execution {record.execution_id} already exists", is_retryable=False)
        self.records[record.execution_id] = record.copy()
        if changes is not None:
            changes.append(StatusChange(record.execution_id, record.task_id, None, record.status))
        return record

    def _accepting(
        self, execution_ids: Sequence[str], accepts: Callable[[ExecutionRecord], bool]
    ) -> Iterator[ExecutionRecord]:
        """The stored records of ``execution_ids`` that ``accepts``, each checked when reached
        (changing one may change whether a later one accepts)."""
        for execution_id in execution_ids:
            record = self.records.get(execution_id)
            if record is not None and accepts(record):
                yield record

    def _settle(self, record: ExecutionRecord, new: ExecutionRecord, now: float, changes: list[StatusChange]) -> None:
        """Write ``new`` over ``record``, with the closure and cascade that follow if it finished."""
        self._write(record, new, changes)
        self._after_finish(new, now, changes)

    def _after_finish(self, record: ExecutionRecord, now: float, changes: list[StatusChange]) -> None:
        parent_id = transitions.parent_to_close(record)
        parent = None if parent_id is None else self.records.get(parent_id)
        if parent is not None:
            self._write(parent, transitions.close(parent, now), changes)
        if transitions.cancels_descendants(record):
            for execution_id in self.subtree(record.execution_id)[1:]:
                descendant = self.records[execution_id]
                if transitions.accepts_cancel(descendant):
                    self._write(descendant, transitions.cancel_by_cascade(descendant, record, now), changes)


def difference(expected: ExecutionRecord | None, actual: ExecutionRecord | None) -> str:
    """Every field in which the storage's record differs from the model's, for a failure message."""
    if expected is None or actual is None:
        return f"expected {expected!r}, storage has {actual!r}"
    fields = [name for name in ExecutionRecord.__dataclass_fields__
              if getattr(expected, name) != getattr(actual, name)]
    return "; ".join(f"{name}: expected {getattr(expected, name)!r}, storage has {getattr(actual, name)!r}"
                     for name in fields)
