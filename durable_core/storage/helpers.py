"""Helpers for backend authors: atomicity by serialization, and batch operations from single ones.

A backend with native transactions (SQLite, PostgreSQL) or one synchronous critical section (the
memory storage) needs neither. A simple backend whose operations await several times, say a
key-value store with one awaited call per record, writes single-record operations on
``SingleOperationStorage`` and wraps the result in ``LockedStorage``::

    storage = LockedStorage(MyStorage())

SQL backends share ``encode_names``/``decode_names``: a set of names in one text column.
"""

from __future__ import annotations

import functools
import json
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Collection, Coroutine, Mapping, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

import trio

from ..status import TaskExecutionStatus
from .contract import STORAGE_API, Capabilities, ChangeNotifications, DuplicateSleepingTaskUniqueIdError
from .contract import ExecutionRecord, ExecutorInfo, Lease, RunCommit, SleepingWakeup, StatusChange, Storage
from .contract import ListCursor, StorageError

P = ParamSpec("P")
T = TypeVar("T")


def claim_within_limits(
    claim: Callable[[Collection[str], int], list[T]], task_ids: Collection[str], limit: int,
    limits: Mapping[str, int], running: Callable[[list[str]], Mapping[str, int]],
    rates: Mapping[str, tuple[int, float]] | None = None, started: Callable[[str, float], int] | None = None,
) -> list[T]:
    """A claim of up to ``limit`` records of ``task_ids`` that respects ``limits`` (see
    ``Storage.claim_executions``), for a backend that calls it inside the claim's atomic step.

    ``running(tasks)`` counts the running records of the limited ``tasks`` (sorted: a backend
    that locks per task locks in that order); ``claim(tasks, n)`` claims up to ``n`` due records
    of ``tasks`` as the backend does without limits. A task at its limit is left out; one with
    room for fewer than ``limit`` is claimed on its own, up to its room, first (so its priority
    against other tasks is approximate only while it is near its limit); the others together.

    With ``rates``, ``running`` is called for the rate-limited tasks too (under its locks) and
    ``started(task, period)`` counts the task's records started in the last ``period`` seconds."""
    rates = rates or {}
    limited = sorted(task_id for task_id in task_ids if task_id in limits or task_id in rates)
    counts = running(limited) if limited else {}
    room = {task_id: limits[task_id] - counts.get(task_id, 0) if task_id in limits else limit for task_id in limited}
    for task_id in limited:
        if task_id in rates and started is not None:
            count, period = rates[task_id]
            room[task_id] = min(room[task_id], count - started(task_id, period))
    claimed: list[T] = []
    for task_id in limited:
        if 0 < room[task_id] < limit and len(claimed) < limit:
            claimed += claim([task_id], min(room[task_id], limit - len(claimed)))
    free = [task_id for task_id in task_ids if room.get(task_id, limit) >= limit]
    if free and len(claimed) < limit:
        claimed += claim(free, limit - len(claimed))
    return claimed


def encode_names(names: frozenset[str]) -> str | None:
    """A set of names (``ExecutionRecord.deferred_options``) as one text column of a SQL backend:
    sorted and joined by commas, None (NULL) when empty."""
    return ",".join(sorted(names)) if names else None


def encode_context(context: Mapping[str, str] | None) -> str | None:
    """``ExecutionRecord.context`` as one text column of a SQL backend: a JSON object, keys
    sorted, None (NULL) when there is none."""
    return json.dumps(dict(sorted(context.items())), separators=(",", ":")) if context else None


def decode_context(text: str | None) -> dict[str, str] | None:
    """The mapping ``encode_context`` wrote."""
    if not text:
        return None
    context: dict[str, str] = json.loads(text)
    return context


@functools.lru_cache(maxsize=64)
def decode_names(text: str | None) -> frozenset[str]:
    """The set of names ``encode_names`` wrote (few distinct values: cached)."""
    return frozenset(text.split(",")) if text else frozenset()


def _serialized(
    operation: Callable[Concatenate[Storage, P], Awaitable[T]],
) -> Callable[Concatenate[LockedStorage, P], Coroutine[Any, Any, T]]:
    """``operation`` of the wrapped storage, under the lock and shielded once it holds it."""
    name = operation.__name__

    async def serialized(self: LockedStorage, /, *args: P.args, **kwargs: P.kwargs) -> T:
        wrapped: Callable[P, Awaitable[T]] = getattr(self.storage, name)
        async with self._lock:
            with trio.CancelScope(shield=True):
                result = await wrapped(*args, **kwargs)
        return result

    functools.update_wrapper(serialized, operation)
    serialized.__qualname__ = f"LockedStorage.{name}"
    return serialized


class LockedStorage(Storage):
    """Makes ``storage`` atomic by running one of its operations at a time.

    For storages whose operations await several times within one trio loop: every contract
    method runs under one ``trio.Lock`` and, once it holds the lock, shielded from cancellation.
    So calls never interleave, each is a checkpoint, and a cancelled call either did nothing
    (cancelled while waiting for the lock) or everything. A ``trio.Lock`` belongs to one trio
    loop: share a ``LockedStorage`` between executors of that loop only.
    """

    def __init__(self, storage: Storage):
        self.storage = storage
        self.storage_api = storage.storage_api
        self.capabilities = storage.capabilities
        self._lock = trio.Lock()

    async def wait_for_changes(self, seen: int | None) -> int:
        """The wrapped storage's change feed, as it is (a long wait, never held or locked)."""
        assert isinstance(self.storage, ChangeNotifications), "the executor waits only on a storage with a change feed"
        return await self.storage.wait_for_changes(seen)

    async def aclose(self) -> None:
        """Close the wrapped storage once the operation in progress, if any, has finished."""
        async with self._lock:
            await self.storage.aclose()

    insert_executions = _serialized(Storage.insert_executions)
    get_executions = _serialized(Storage.get_executions)
    get_executions_by_sleeping_unique_id = _serialized(Storage.get_executions_by_sleeping_unique_id)
    list_executions = _serialized(Storage.list_executions)
    claim_executions = _serialized(Storage.claim_executions)
    commit_runs = _serialized(Storage.commit_runs)
    release_leases = _serialized(Storage.release_leases)
    find_revoked_leases = _serialized(Storage.find_revoked_leases)
    renew_leases = _serialized(Storage.renew_leases)
    list_executors = _serialized(Storage.list_executors)
    expire_leases = _serialized(Storage.expire_leases)
    cancel_executions = _serialized(Storage.cancel_executions)
    wake_sleeping_executions = _serialized(Storage.wake_sleeping_executions)
    retry_executions = _serialized(Storage.retry_executions)
    delete_finished_executions = _serialized(Storage.delete_finished_executions)


class SingleOperationStorage(Storage, ABC):
    """Derives the contract's batch operations from single-record ones, which a backend writes.

    Each batch operation loops over the singles, so it is atomic only if nothing runs in between
    and cancellation cannot cut it short: wrap the backend in ``LockedStorage``. Inserting
    operations check every record first, so that a conflict stops the batch before anything is
    written. Claiming, expiry, listing and deletion choose their records by a query only the
    backend can run efficiently, and heartbeats keep a registry of executors besides the records;
    they stay abstract.
    """

    storage_api = STORAGE_API
    capabilities = Capabilities()

    # ------------------------------------------------------------------ what a backend writes

    @abstractmethod
    async def get_execution(self, execution_id: str) -> ExecutionRecord | None: ...

    @abstractmethod
    async def get_execution_by_sleeping_unique_id(self, unique_id: str) -> ExecutionRecord | None: ...

    @abstractmethod
    async def get_execution_by_idempotency_key(self, task_id: str, idempotency_key: str) -> ExecutionRecord | None: ...

    @abstractmethod
    async def insert_execution(self, record: ExecutionRecord) -> None:
        """Store the new ``record``; its id, sleeping unique id and idempotency key are known free."""

    @abstractmethod
    async def commit_run(self, commit: RunCommit, now: float) -> list[StatusChange]:
        """``commit_runs`` for one commit; the ids and sleeping unique ids of its ``new_executions``
        are known to be free."""

    @abstractmethod
    async def release_lease(self, lease: Lease, now: float) -> list[StatusChange]: ...

    @abstractmethod
    async def is_lease_revoked(self, lease: Lease) -> bool: ...

    @abstractmethod
    async def cancel_execution(self, execution_id: str, now: float) -> list[StatusChange]: ...

    @abstractmethod
    async def wake_sleeping_execution(self, wakeup: SleepingWakeup, now: float) -> list[StatusChange]: ...

    @abstractmethod
    async def retry_execution(self, execution_id: str, now: float) -> list[StatusChange]: ...

    @abstractmethod
    async def list_executions(
        self,
        *,
        statuses: Sequence[TaskExecutionStatus] | None = None,
        task_id: str | None = None,
        executor_id: str | None = None,
        limit: int = 100,
        before: ListCursor | None = None,
        queue: str | None = None,
    ) -> list[ExecutionRecord]: ...

    @abstractmethod
    async def claim_executions(
        self, executor_id: str, now: float, limit: int, lease_duration: float, *,
        task_ids: Collection[str] | None = None, queues: Collection[str] | None = None,
        limits: Mapping[str, int] | None = None, rates: Mapping[str, tuple[int, float]] | None = None,
    ) -> list[ExecutionRecord]: ...

    @abstractmethod
    async def renew_leases(
        self, executor: ExecutorInfo, leases: Sequence[Lease], now: float, lease_duration: float
    ) -> list[str]: ...

    @abstractmethod
    async def list_executors(self, heartbeat_after: float) -> list[ExecutorInfo]: ...

    @abstractmethod
    async def expire_leases(self, now: float, max_lease_expirations: int, limit: int) -> list[StatusChange]: ...

    @abstractmethod
    async def delete_finished_executions(self, finished_before: float, limit: int) -> int: ...

    @abstractmethod
    async def aclose(self) -> None: ...

    # ------------------------------------------------------------------ derived

    async def insert_executions(self, records: Sequence[ExecutionRecord]) -> list[ExecutionRecord]:
        stored: list[ExecutionRecord] = []
        fresh: list[ExecutionRecord] = []
        by_key: dict[tuple[str, str], ExecutionRecord] = {}
        for record in records:
            key = None if record.idempotency_key is None else (record.task_id, record.idempotency_key)
            twin = None if key is None else by_key.get(key) or await self.get_execution_by_idempotency_key(*key)
            if twin is None:
                fresh.append(record)
            if key is not None:
                by_key[key] = twin or record
            stored.append(twin or record)
        await self._check_insertable(fresh)
        for record in fresh:
            await self.insert_execution(record)
        return [record.copy() for record in stored]

    async def get_executions(self, execution_ids: Sequence[str]) -> list[ExecutionRecord | None]:
        return [await self.get_execution(execution_id) for execution_id in execution_ids]

    async def get_executions_by_sleeping_unique_id(self, unique_ids: Sequence[str]) -> list[ExecutionRecord | None]:
        return [await self.get_execution_by_sleeping_unique_id(unique_id) for unique_id in unique_ids]

    async def commit_runs(self, commits: Sequence[RunCommit], now: float) -> list[StatusChange]:
        """Checks what the commits whose lease holds now would insert, before applying any."""
        holding = [commit for commit in commits if not await self.is_lease_revoked(commit.record.lease)]
        await self._check_insertable([record for commit in holding for record in commit.new_executions])
        return [change for commit in commits for change in await self.commit_run(commit, now)]

    async def release_leases(self, leases: Sequence[Lease], now: float) -> list[StatusChange]:
        return [change for lease in leases for change in await self.release_lease(lease, now)]

    async def find_revoked_leases(self, leases: Sequence[Lease]) -> list[str]:
        return [lease.execution_id for lease in leases if await self.is_lease_revoked(lease)]

    async def cancel_executions(self, execution_ids: Sequence[str], now: float) -> list[StatusChange]:
        return [change for execution_id in execution_ids for change in await self.cancel_execution(execution_id, now)]

    async def wake_sleeping_executions(self, wakeups: Sequence[SleepingWakeup], now: float) -> list[StatusChange]:
        return [change for wakeup in wakeups for change in await self.wake_sleeping_execution(wakeup, now)]

    async def retry_executions(self, execution_ids: Sequence[str], now: float) -> list[StatusChange]:
        return [change for execution_id in execution_ids for change in await self.retry_execution(execution_id, now)]

    async def _check_insertable(self, records: Sequence[ExecutionRecord]) -> None:
        """Raise as the contract says if a record could not be inserted after those before it."""
        execution_ids: set[str] = set()
        unique_ids: set[str] = set()
        for record in records:
            unique_id = record.sleeping_unique_id
            if unique_id is not None:
                if unique_id in unique_ids or await self.get_execution_by_sleeping_unique_id(unique_id) is not None:
                    raise DuplicateSleepingTaskUniqueIdError(unique_id)
                unique_ids.add(unique_id)
            if record.execution_id in execution_ids or await self.get_execution(record.execution_id) is not None:
                raise StorageError(f"Task execution {record.execution_id} already exists", is_retryable=False)
            execution_ids.add(record.execution_id)
