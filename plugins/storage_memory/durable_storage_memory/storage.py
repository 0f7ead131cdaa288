"""``MemoryStorage``: the storage contract in this process's memory.

Every operation runs synchronously under one ``threading.Lock``, so executors in several threads
(each with its own ``trio.run``) may share one storage. Indexes keep every operation independent of
the number of finished records: claims and expiry pop from heaps keyed by ``ready_at`` (one per task,
queue and priority, so a claim reads only its own, highest priority first, and never an entry that is
not due) and ``lease_expires_at``; lookups go through dicts. Records are values (never changed once
made): the storage keeps the ones it is given and hands out the ones it keeps, copying none.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from operator import attrgetter
from typing import Any, TypeVar

import trio

from durable_core.status import TaskExecutionStatus as S
from durable_core.storage import transitions
from durable_core.storage import STORAGE_API, Capabilities, DuplicateSleepingTaskUniqueIdError, claim_within_limits
from durable_core.storage import EXECUTOR_RETENTION, ExecutionRecord, ExecutorInfo, Lease, RunCommit, SleepingWakeup
from durable_core.storage import ListCursor, StatusChange, StorageError, list_key

T = TypeVar("T")


def _holds_a_slot(record: ExecutionRecord) -> bool:
    """Whether ``record`` counts against its task's ``max_concurrency``: running, with a lease."""
    return record.status is S.RUNNING and record.lease_expires_at is not None


class _Schedule:
    """Execution ids ordered by a time, earliest first (ties in the order they were scheduled).

    A heap from which replaced or removed entries are dropped lazily when they surface; it is
    rebuilt when such stale entries outnumber the live ones, so it never grows without bound.
    """

    def __init__(self, order: Iterator[int] | None = None) -> None:
        self._heap: list[tuple[float, int, str]] = []
        self._live: dict[str, tuple[float, int, str]] = {}
        self._order = itertools.count() if order is None else order
        """Ties break by this count; schedules sharing one merge into one first-in first-out order."""

    def set(self, execution_id: str, at: float | None) -> None:
        """Schedule ``execution_id`` at ``at``, or unschedule it (None)."""
        live = self._live.get(execution_id)
        if (None if live is None else live[0]) == at:
            return
        if at is None:
            del self._live[execution_id]
        else:
            entry = self._live[execution_id] = (at, next(self._order), execution_id)
            heapq.heappush(self._heap, entry)
        if len(self._heap) > 2 * len(self._live) + 64:
            self._heap = list(self._live.values())
            heapq.heapify(self._heap)

    def __bool__(self) -> bool:
        """Whether anything is scheduled."""
        return bool(self._live)

    def due(self, until: float, *, strict: bool = False) -> Iterator[str]:
        """Ids scheduled at or before ``until`` (strictly before if ``strict``), earliest first.

        The caller must unschedule each id it receives before asking for the next one.
        """
        return (entry[2] for entry in self.due_entries(until, strict=strict))

    def due_entries(self, until: float, *, strict: bool = False) -> Iterator[tuple[float, int, str]]:
        """``due``, as ``(at, order, id)`` entries: in order, for ``heapq.merge`` with other schedules."""
        while self._heap:
            at, _, execution_id = entry = self._heap[0]
            if self._live.get(execution_id) is not entry:
                heapq.heappop(self._heap)
            elif at < until or (at == until and not strict):
                yield entry
            else:
                return


def _by_priority(priority: int, schedule: _Schedule, now: float) -> Iterator[tuple[int, float, int, str]]:
    """The due entries of the schedule of one ``priority``, keyed for a merge highest priority first."""
    for at, order, execution_id in schedule.due_entries(now):
        yield -priority, at, order, execution_id


def _idempotency_key(record: ExecutionRecord) -> tuple[str, str] | None:
    return None if record.idempotency_key is None else (record.task_id, record.idempotency_key)


class _State:
    """The records, their indexes and the contract's operations on them, without locking."""

    def __init__(self) -> None:
        self.records: dict[str, ExecutionRecord] = {}
        self.children: dict[str, set[str]] = {}
        self.by_unique_id: dict[str, str] = {}
        self.by_idempotency_key: dict[tuple[str, str], str] = {}
        self.ready: dict[tuple[str, str], dict[int, _Schedule]] = {}
        """Claimable ids by ``ready_at``, one schedule per task, queue and priority: a claim reads
        only its own, and in each only the due entries."""
        self._ready_order = itertools.count()
        self.leases = _Schedule()
        self.finished_roots = _Schedule()
        self.running: Counter[str] = Counter()
        """Records of each task that run holding a lease (``max_concurrency``)."""
        self.executors: dict[str, ExecutorInfo] = {}
        self._undo: list[tuple[ExecutionRecord | None, ExecutionRecord | None]] = []

    def atomically(self, operation: Callable[..., T], *args: Any) -> T:
        """Run ``operation``; if it raises, undo every change it made, so it did nothing."""
        undo = self._undo = []
        try:
            return operation(*args)
        except BaseException:
            self._undo = []  # undoing logs into a list nobody reads
            for old, new in reversed(undo):
                self._replace(new, old)
            raise
        finally:
            self._undo = []

    # ------------------------------------------------------------------ the one way to change state

    def _replace(self, old: ExecutionRecord | None, new: ExecutionRecord | None) -> None:
        """Swap one stored record (insert when ``old`` is None, delete when ``new`` is None).

        Every change goes through here, so the indexes stay in step and every change can be undone.
        """
        record = new or old
        assert record is not None
        execution_id = record.execution_id
        if new is None:
            del self.records[execution_id]
            self._link(record, add=False)
        else:
            self.records[execution_id] = new
            if old is None:
                self._link(record, add=True)
        self._schedule_ready(record, None if new is None else new.ready_at)
        self.leases.set(execution_id, None if new is None else new.lease_expires_at)
        self.finished_roots.set(execution_id, None if new is None else transitions.finished_root_at(new))
        if old is not None and _holds_a_slot(old):
            self.running[old.task_id] -= 1
        if new is not None and _holds_a_slot(new):
            self.running[new.task_id] += 1
        self._undo.append((old, new))

    def _schedule_ready(self, record: ExecutionRecord, ready_at: float | None) -> None:
        """Schedule ``record`` at ``ready_at`` in its task, queue and priority's schedule (None:
        unschedule it); an emptied schedule goes, so that priorities used once cost claims nothing."""
        lane = record.task_id, record.queue
        levels = self.ready.get(lane)
        schedule = None if levels is None else levels.get(record.priority)
        if schedule is None and ready_at is None:
            return
        if levels is None:
            levels = self.ready[lane] = {}
        if schedule is None:
            schedule = levels[record.priority] = _Schedule(self._ready_order)
        schedule.set(record.execution_id, ready_at)
        if ready_at is None and not schedule:
            del levels[record.priority]
            if not levels:
                del self.ready[lane]

    def _link(self, record: ExecutionRecord, *, add: bool) -> None:
        """Add ``record`` to (or remove it from) the indexes of fields that never change."""
        execution_id = record.execution_id
        if record.parent is not None:
            siblings = self.children.setdefault(record.parent.execution_id, set())
            if add:
                siblings.add(execution_id)
            else:
                siblings.discard(execution_id)
                if not siblings:
                    del self.children[record.parent.execution_id]
        unique: list[tuple[dict[Any, str], object]] = [
            (self.by_unique_id, record.sleeping_unique_id),
            (self.by_idempotency_key, _idempotency_key(record)),
        ]
        for index, key in unique:
            if key is not None and add:
                index[key] = execution_id
            elif key is not None:
                del index[key]

    def _write(self, old: ExecutionRecord, new: ExecutionRecord, changes: list[StatusChange]) -> None:
        self._replace(old, new)
        changes.append(StatusChange(new.execution_id, new.task_id, old.status, new.status))

    # ------------------------------------------------------------------ reads

    def get(self, execution_ids: Sequence[str | None]) -> list[ExecutionRecord | None]:
        return [None if i is None else self.records.get(i) for i in execution_ids]

    def get_by_sleeping_unique_id(self, unique_ids: Sequence[str]) -> list[ExecutionRecord | None]:
        return self.get([self.by_unique_id.get(unique_id) for unique_id in unique_ids])

    def select(self, statuses: Sequence[S] | None, task_id: str | None, executor_id: str | None,
               limit: int, before: ListCursor | None, queue: str | None) -> list[ExecutionRecord]:
        wanted = None if statuses is None else frozenset(statuses)
        matches = (
            record
            for record in self.records.values()
            if (wanted is None or record.status in wanted) and (task_id is None or record.task_id == task_id)
            and (executor_id is None or record.executor_id == executor_id) and queue in (None, record.queue)
            and (before is None or list_key(record) < before)
        )
        return heapq.nlargest(max(limit, 0), matches, key=list_key)

    def count(self) -> dict[S, int]:
        return dict(Counter(record.status for record in self.records.values()))

    def find_revoked(self, leases: Sequence[Lease]) -> list[str]:
        return [lease.execution_id for lease in leases if self._held(lease) is None]

    def live_executors(self, heartbeat_after: float) -> list[ExecutorInfo]:
        live = (e for e in self.executors.values() if e.heartbeat_at >= heartbeat_after)
        return sorted(live, key=attrgetter("started_at", "executor_id"))

    def _held(self, lease: Lease) -> ExecutionRecord | None:
        """The stored record while ``lease`` holds, else None."""
        record = self.records.get(lease.execution_id)
        return record if transitions.lease_holds(record, lease) else None

    # ------------------------------------------------------------------ writes

    def insert(self, records: Sequence[ExecutionRecord]) -> list[ExecutionRecord]:
        return [self._twin(record) or self._add(record) for record in records]

    def claim(self, executor_id: str, now: float, limit: int, lease_duration: float,
              task_ids: Collection[str] | None, queues: Collection[str] | None,
              limits: Mapping[str, int] | None = None,
              rates: Mapping[str, tuple[int, float]] | None = None) -> list[ExecutionRecord]:
        if (limits or rates) and task_ids is not None:
            return claim_within_limits(
                lambda tasks, n: self.claim(executor_id, now, n, lease_duration, tasks, queues),
                task_ids, limit, limits or {}, self._running, rates,
                lambda task_id, period: self._started(task_id, now - period))
        if task_ids is not None and queues is not None:
            wanted = (self.ready.get(lane) for lane in itertools.product(task_ids, queues))
            lanes: Iterable[dict[int, _Schedule]] = (levels for levels in wanted if levels is not None)
        else:
            lanes = (levels for (task_id, queue), levels in self.ready.items()
                     if (task_ids is None or task_id in task_ids) and (queues is None or queue in queues))
        due = heapq.merge(*(_by_priority(priority, schedule, now) for levels in lanes
                            for priority, schedule in levels.items()))
        claimed = []
        for *_, execution_id in itertools.islice(due, max(limit, 0)):
            record = self.records[execution_id]
            new = transitions.claim(record, executor_id, now, lease_duration)
            self._replace(record, new)
            claimed.append(new)
        return claimed

    def _running(self, task_ids: list[str]) -> Counter[str]:
        """How many records of each of ``task_ids`` run, holding a lease."""
        return Counter({task_id: self.running[task_id] for task_id in task_ids})

    def _started(self, task_id: str, since: float) -> int:
        """How many records of ``task_id`` started at ``since`` or later (``rate_limit``: a pass
        over every record, made only for rate-limited tasks)."""
        return sum(1 for record in self.records.values() if record.task_id == task_id
                   and record.started_at is not None and record.started_at >= since)

    def commit(self, commits: Sequence[RunCommit], now: float) -> list[StatusChange]:
        changes: list[StatusChange] = []
        for commit in commits:
            stored = self._held(commit.record.lease)
            if stored is None:
                continue
            new = transitions.commit(commit.record, now)
            self._write(stored, new, changes)
            for record in commit.new_executions:
                if self._twin(record) is None:
                    self._add(record)
                    changes.append(StatusChange(record.execution_id, record.task_id, None, record.status))
            self._after_finish(new, now, changes)
        return changes

    def renew(self, executor: ExecutorInfo, leases: Sequence[Lease], now: float, lease_duration: float) -> list[str]:
        lost = []
        for lease in leases:
            record = self.records.get(lease.execution_id)
            if record is not None and transitions.accepts_renewal(record, lease):
                self._replace(record, transitions.renew(record, now, lease_duration))
            else:
                lost.append(lease.execution_id)
        self.executors = {i: e for i, e in self.executors.items() if e.heartbeat_at >= now - EXECUTOR_RETENTION}
        self.executors[executor.executor_id] = executor
        return lost

    def release(self, leases: Sequence[Lease], now: float) -> list[StatusChange]:
        changes: list[StatusChange] = []
        for lease in leases:
            record = self._held(lease)
            if record is not None:
                self._write(record, transitions.release(record, now), changes)
        return changes

    def expire(self, now: float, max_lease_expirations: int, limit: int) -> list[StatusChange]:
        changes: list[StatusChange] = []
        for execution_id in itertools.islice(self.leases.due(now), max(limit, 0)):
            record = self.records[execution_id]
            self._settle(record, transitions.expire(record, now, max_lease_expirations), now, changes)
        return changes

    def cancel(self, execution_ids: Sequence[str], now: float) -> list[StatusChange]:
        changes: list[StatusChange] = []
        for record in self._accepting(execution_ids, transitions.accepts_cancel):
            self._settle(record, transitions.cancel(record, now), now, changes)
        return changes

    def wake(self, wakeups: Sequence[SleepingWakeup], now: float) -> list[StatusChange]:
        changes: list[StatusChange] = []
        for wakeup in wakeups:
            record = self.records.get(wakeup.execution_id)
            if record is not None and transitions.accepts_wake(record):
                self._settle(record, transitions.wake(record, wakeup, now), now, changes)
        return changes

    def retry(self, execution_ids: Sequence[str], now: float) -> list[StatusChange]:
        changes: list[StatusChange] = []
        for record in self._accepting(execution_ids, transitions.accepts_retry):
            self._write(record, transitions.retry(record, now), changes)
        return changes

    def delete_finished(self, finished_before: float, limit: int) -> int:
        deleted = 0
        for root_id in itertools.islice(self.finished_roots.due(finished_before, strict=True), max(limit, 0)):
            for execution_id in self._subtree(root_id):
                self._replace(self.records[execution_id], None)
                deleted += 1
        return deleted

    # ------------------------------------------------------------------ building blocks

    def _twin(self, record: ExecutionRecord) -> ExecutionRecord | None:
        """The stored execution with ``record``'s task and idempotency key, if any."""
        key = _idempotency_key(record)
        twin_id = None if key is None else self.by_idempotency_key.get(key)
        return None if twin_id is None else self.records[twin_id]

    def _add(self, record: ExecutionRecord) -> ExecutionRecord:
        """Store the new ``record`` (a value: kept, not copied); its id and sleeping unique id must be free."""
        if record.sleeping_unique_id is not None and record.sleeping_unique_id in self.by_unique_id:
            raise DuplicateSleepingTaskUniqueIdError(record.sleeping_unique_id)
        if record.execution_id in self.records:
            raise StorageError(f"Task execution {record.execution_id} already exists", is_retryable=False)
        self._replace(None, record)
        return record

    def _subtree(self, execution_id: str) -> list[str]:
        """``execution_id`` and the ids of all its descendants, parents before children."""
        ids = [execution_id]
        for parent_id in ids:  # grows while it is walked
            ids.extend(self.children.get(parent_id, ()))
        return ids

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
        """Closure and cascading cancellation, if ``record`` (just written) is finished."""
        parent_id = transitions.parent_to_close(record)
        parent = None if parent_id is None else self.records.get(parent_id)
        if parent is not None:
            self._write(parent, transitions.close(parent, now), changes)
        if transitions.cancels_descendants(record):
            for execution_id in self._subtree(record.execution_id)[1:]:
                descendant = self.records[execution_id]
                if transitions.accepts_cancel(descendant):
                    self._write(descendant, transitions.cancel_by_cascade(descendant, record, now), changes)


class MemoryStorage:
    """The storage contract in memory: fast, not persistent, for one process.

    Safe for any number of executors in this process, also in several threads each running its
    own trio loop. Records handed in or out are copies, never the stored objects.
    """

    storage_api = STORAGE_API
    capabilities = Capabilities(persistent=False, multi_process=False, routing=True,
                                concurrency_limits=True, rate_limits=True)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = _State()
        self._closed = False

    async def _run(self, operation: Callable[..., T], *args: Any) -> T:
        """Checkpoint first (a cancellation then means nothing happened), then run atomically.

        Nothing awaits while the lock is held, so no other thread or task waits long for it.
        """
        await trio.lowlevel.checkpoint()
        with self._lock:
            if self._closed:
                raise StorageError("memory storage is closed", is_retryable=False)
            return self._state.atomically(operation, *args)

    async def insert_executions(self, records: Sequence[ExecutionRecord]) -> list[ExecutionRecord]:
        return await self._run(self._state.insert, records)

    async def get_executions(self, execution_ids: Sequence[str]) -> list[ExecutionRecord | None]:
        return await self._run(self._state.get, execution_ids)

    async def get_executions_by_sleeping_unique_id(self, unique_ids: Sequence[str]) -> list[ExecutionRecord | None]:
        return await self._run(self._state.get_by_sleeping_unique_id, unique_ids)

    async def list_executions(
        self,
        *,
        statuses: Sequence[S] | None = None,
        task_id: str | None = None,
        executor_id: str | None = None,
        limit: int = 100,
        before: ListCursor | None = None,
        queue: str | None = None,
    ) -> list[ExecutionRecord]:
        return await self._run(self._state.select, statuses, task_id, executor_id, limit, before, queue)

    async def count_executions(self) -> dict[S, int]:
        """``StatusCounts``: a pass over every record (the memory storage has no index)."""
        return await self._run(self._state.count)

    async def claim_executions(
        self, executor_id: str, now: float, limit: int, lease_duration: float, *,
        task_ids: Collection[str] | None = None, queues: Collection[str] | None = None,
        limits: Mapping[str, int] | None = None, rates: Mapping[str, tuple[int, float]] | None = None,
    ) -> list[ExecutionRecord]:
        return await self._run(self._state.claim, executor_id, now, limit, lease_duration, task_ids, queues,
                               limits, rates)

    async def commit_runs(self, commits: Sequence[RunCommit], now: float) -> list[StatusChange]:
        return await self._run(self._state.commit, commits, now)

    async def release_leases(self, leases: Sequence[Lease], now: float) -> list[StatusChange]:
        return await self._run(self._state.release, leases, now)

    async def find_revoked_leases(self, leases: Sequence[Lease]) -> list[str]:
        return await self._run(self._state.find_revoked, leases)

    async def renew_leases(
        self, executor: ExecutorInfo, leases: Sequence[Lease], now: float, lease_duration: float
    ) -> list[str]:
        return await self._run(self._state.renew, executor, leases, now, lease_duration)

    async def list_executors(self, heartbeat_after: float) -> list[ExecutorInfo]:
        return await self._run(self._state.live_executors, heartbeat_after)

    async def expire_leases(self, now: float, max_lease_expirations: int, limit: int) -> list[StatusChange]:
        return await self._run(self._state.expire, now, max_lease_expirations, limit)

    async def cancel_executions(self, execution_ids: Sequence[str], now: float) -> list[StatusChange]:
        return await self._run(self._state.cancel, execution_ids, now)

    async def wake_sleeping_executions(self, wakeups: Sequence[SleepingWakeup], now: float) -> list[StatusChange]:
        return await self._run(self._state.wake, wakeups, now)

    async def retry_executions(self, execution_ids: Sequence[str], now: float) -> list[StatusChange]:
        return await self._run(self._state.retry, execution_ids, now)

    async def delete_finished_executions(self, finished_before: float, limit: int) -> int:
        return await self._run(self._state.delete_finished, finished_before, limit)

    async def aclose(self) -> None:
        """Refuse further calls; closing twice is harmless."""
        await trio.lowlevel.checkpoint()
        with self._lock:
            self._closed = True
