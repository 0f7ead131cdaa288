"""``DictStore``: the storage contract on a dict, one awaited call per record.

It stands for a backend whose every read or write is a call to a server: each helper below awaits
(``_io``) before touching the dict. Written on ``SingleOperationStorage`` (single-record
operations; the batch ones are derived) and opened inside ``LockedStorage``, which runs one
operation at a time, shielded once it started: so every operation is atomic, also when the caller
is cancelled, with no transaction support in the "server".
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Collection, Mapping, Sequence
from operator import attrgetter
from pathlib import Path

import trio

from durable_core.status import TaskExecutionStatus as S
from durable_core.storage import EXECUTOR_RETENTION, Capabilities, ExecutionRecord, ExecutorInfo, Lease
from durable_core.storage import ListCursor, LockedStorage, RunCommit, list_key
from durable_core.storage import SingleOperationStorage, SleepingWakeup, StatusChange, Storage, transitions

class DictStore(SingleOperationStorage):
    """Records in a dict; with ``path``, saved to a snapshot file on close and loaded on open."""

    def __init__(self, path: str | os.PathLike[str] | None = None):
        self.path = None if path is None else Path(path)
        self.capabilities = Capabilities(persistent=self.path is not None, routing=True)
        self._records: dict[str, ExecutionRecord] = {}
        self._executors: dict[str, ExecutorInfo] = {}
        if self.path is not None and self.path.exists():
            self._records = pickle.loads(self.path.read_bytes())

    # ------------------------------------------------------------------ the "server"

    async def _io(self) -> None:
        await trio.lowlevel.checkpoint()  # where a real backend awaits its server

    async def _load(self, execution_id: str) -> ExecutionRecord | None:
        await self._io()
        record = self._records.get(execution_id)
        return None if record is None else record.copy()

    async def _scan(self) -> list[ExecutionRecord]:
        await self._io()
        return [record.copy() for record in self._records.values()]

    async def _store(self, record: ExecutionRecord) -> None:
        await self._io()
        self._records[record.execution_id] = record.copy()

    async def _write(self, old: ExecutionRecord, new: ExecutionRecord) -> StatusChange:
        await self._store(new)
        return StatusChange(new.execution_id, new.task_id, old.status, new.status)

    # ------------------------------------------------------------------ single-record operations

    async def get_execution(self, execution_id: str) -> ExecutionRecord | None:
        return await self._load(execution_id)

    async def get_execution_by_sleeping_unique_id(self, unique_id: str) -> ExecutionRecord | None:
        return next((r for r in await self._scan() if r.sleeping_unique_id == unique_id), None)

    async def get_execution_by_idempotency_key(self, task_id: str, idempotency_key: str) -> ExecutionRecord | None:
        return next((r for r in await self._scan() if (r.task_id, r.idempotency_key) == (task_id, idempotency_key)),
                    None)

    async def insert_execution(self, record: ExecutionRecord) -> None:
        await self._store(record)

    async def commit_run(self, commit: RunCommit, now: float) -> list[StatusChange]:
        stored = await self._load(commit.record.execution_id)
        if stored is None or not transitions.lease_holds(stored, commit.record.lease):
            return []
        new = transitions.commit(commit.record, now)
        changes = [await self._write(stored, new)]
        for record in commit.new_executions:
            key = record.idempotency_key
            if key is not None and await self.get_execution_by_idempotency_key(record.task_id, key) is not None:
                continue
            await self._store(record)
            changes.append(StatusChange(record.execution_id, record.task_id, None, record.status))
        return changes + await self._after_finish(new, now)

    async def commit_runs(self, commits: Sequence[RunCommit], now: float) -> list[StatusChange]:
        """Each commit in turn, checked just before it is applied; a conflict undoes the call.

        ``SingleOperationStorage.commit_runs`` checks every commit's inserts before applying any,
        so a commit whose lease an earlier commit of the same call ends would still be checked,
        and could make the call refuse what the contract accepts (the conformance suite's state
        machine finds this). A dict can simply be restored.
        """
        before = dict(self._records)
        try:
            changes: list[StatusChange] = []
            for commit in commits:
                if not await self.is_lease_revoked(commit.record.lease):
                    await self._check_insertable(commit.new_executions)
                changes += await self.commit_run(commit, now)
            return changes
        except BaseException:
            self._records = before
            raise

    async def release_lease(self, lease: Lease, now: float) -> list[StatusChange]:
        stored = await self._load(lease.execution_id)
        if stored is None or not transitions.lease_holds(stored, lease):
            return []
        return [await self._write(stored, transitions.release(stored, now))]

    async def is_lease_revoked(self, lease: Lease) -> bool:
        return not transitions.lease_holds(await self._load(lease.execution_id), lease)

    async def cancel_execution(self, execution_id: str, now: float) -> list[StatusChange]:
        stored = await self._load(execution_id)
        if stored is None or not transitions.accepts_cancel(stored):
            return []
        return await self._settle(stored, transitions.cancel(stored, now), now)

    async def retry_execution(self, execution_id: str, now: float) -> list[StatusChange]:
        stored = await self._load(execution_id)
        if stored is None or not transitions.accepts_retry(stored):
            return []
        return [await self._write(stored, transitions.retry(stored, now))]

    async def wake_sleeping_execution(self, wakeup: SleepingWakeup, now: float) -> list[StatusChange]:
        stored = await self._load(wakeup.execution_id)
        if stored is None or not transitions.accepts_wake(stored):
            return []
        return await self._settle(stored, transitions.wake(stored, wakeup, now), now)

    # ------------------------------------------------------------------ operations that choose records

    async def list_executions(self, *, statuses: Sequence[S] | None = None, task_id: str | None = None,
                              executor_id: str | None = None, limit: int = 100,
                              before: ListCursor | None = None, queue: str | None = None) -> list[ExecutionRecord]:
        matches = [r for r in await self._scan()
                   if (statuses is None or r.status in statuses) and task_id in (None, r.task_id)
                   and queue in (None, r.queue)
                   and executor_id in (None, r.executor_id) and (before is None or list_key(r) < before)]
        return sorted(matches, key=list_key, reverse=True)[:max(limit, 0)]

    async def claim_executions(self, executor_id: str, now: float, limit: int, lease_duration: float, *,
                               task_ids: Collection[str] | None = None,
                               queues: Collection[str] | None = None,
                               limits: Mapping[str, int] | None = None,
                               rates: Mapping[str, tuple[int, float]] | None = None) -> list[ExecutionRecord]:
        """``limits`` and ``rates`` never come: this backend lacks ``Capabilities.concurrency_limits``
        and ``rate_limits``."""
        due = sorted((r for r in await self._scan() if transitions.is_due(r, now)
                      and (task_ids is None or r.task_id in task_ids) and (queues is None or r.queue in queues)),
                     key=lambda r: (-r.priority, r.ready_at))[:max(limit, 0)]
        claimed = []
        for record in due:
            new = transitions.claim(record, executor_id, now, lease_duration)
            await self._store(new)
            claimed.append(new)
        return claimed

    async def renew_leases(self, executor: ExecutorInfo, leases: Sequence[Lease], now: float,
                           lease_duration: float) -> list[str]:
        lost = []
        for lease in leases:
            stored = await self._load(lease.execution_id)
            if transitions.accepts_renewal(stored, lease):
                assert stored is not None
                await self._store(transitions.renew(stored, now, lease_duration))
            else:
                lost.append(lease.execution_id)
        await self._io()
        self._executors = {i: e for i, e in self._executors.items() if e.heartbeat_at >= now - EXECUTOR_RETENTION}
        self._executors[executor.executor_id] = executor
        return lost

    async def list_executors(self, heartbeat_after: float) -> list[ExecutorInfo]:
        await self._io()
        live = (e for e in self._executors.values() if e.heartbeat_at >= heartbeat_after)
        return sorted(live, key=attrgetter("started_at", "executor_id"))

    async def expire_leases(self, now: float, max_lease_expirations: int, limit: int) -> list[StatusChange]:
        due = sorted((r for r in await self._scan() if transitions.lease_is_due(r, now)),
                     key=attrgetter("lease_expires_at"))
        changes: list[StatusChange] = []
        ended = 0
        for candidate in due:
            record = await self._load(candidate.execution_id)
            if ended == limit:
                break
            if record is None or not transitions.lease_is_due(record, now):
                continue  # ended by a cascade earlier in this call
            ended += 1
            changes += await self._settle(record, transitions.expire(record, now, max_lease_expirations), now)
        return changes

    async def delete_finished_executions(self, finished_before: float, limit: int) -> int:
        records = await self._scan()
        roots = sorted((r for r in records if transitions.is_deletable_root(r, finished_before)),
                       key=attrgetter("finished_at"))[:max(limit, 0)]
        deleted = 0
        for root in roots:
            for execution_id in await self._subtree(root.execution_id):
                await self._io()
                del self._records[execution_id]
                deleted += 1
        return deleted

    async def aclose(self) -> None:
        await self._io()
        if self.path is not None:
            partial = self.path.with_suffix(".partial")
            partial.write_bytes(pickle.dumps(self._records))
            os.replace(partial, self.path)

    # ------------------------------------------------------------------ closure and cascade

    async def _subtree(self, execution_id: str) -> list[str]:
        records = await self._scan()
        ids = [execution_id]
        for parent_id in ids:
            ids += [r.execution_id for r in records if r.parent is not None and r.parent.execution_id == parent_id]
        return ids

    async def _settle(self, record: ExecutionRecord, new: ExecutionRecord, now: float) -> list[StatusChange]:
        """Write ``new`` over ``record``, with the closure and cascade that follow if it finished."""
        return [await self._write(record, new), *await self._after_finish(new, now)]

    async def _after_finish(self, record: ExecutionRecord, now: float) -> list[StatusChange]:
        """A finished record moves its parent along, and cancels its descendants unless completed."""
        changes = []
        parent_id = transitions.parent_to_close(record)
        parent = None if parent_id is None else await self._load(parent_id)
        if parent is not None:
            changes.append(await self._write(parent, transitions.close(parent, now)))
        if transitions.cancels_descendants(record):
            for execution_id in (await self._subtree(record.execution_id))[1:]:
                descendant = await self._load(execution_id)
                if descendant is not None and transitions.accepts_cancel(descendant):
                    cancelled = transitions.cancel_by_cascade(descendant, record, now)
                    changes.append(await self._write(descendant, cancelled))
        return changes


def open_dictstore(path: str | os.PathLike[str] | None = None) -> Storage:
    """The ``dictstore`` storage: ``DictStore`` made atomic by ``LockedStorage``."""
    return LockedStorage(DictStore(path))
