"""``ThreadedStorage``: the contract's operations, each one call of a database method on
connection threads.

Why: a backend on ``ConnectionThreads`` (the SQLite and PostgreSQL plugins) writes every operation
as a method of its database object, run in a thread; handing each operation to the threads is the
same for every such backend, so it is written here once. The backend says only which of its kinds
of call an operation runs as: one that reads, one that writes, and one whose write may make an
execution claimable (which other executors may want to hear of).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any, Generic, Protocol, TypeVar

from ..status import TaskExecutionStatus
from .connection_thread import ConnectionThreads
from .contract import STORAGE_API, Capabilities, ExecutionRecord, ExecutorInfo, Lease, RunCommit, SleepingWakeup
from .contract import ListCursor, StatusChange

K = TypeVar("K")
"""The backend's kind of call (see ``ConnectionThreads``)."""


class ThreadedDatabase(Protocol):
    """A backend's database object: one method a contract operation, run in a connection thread.

    Each takes what the backend's ``ConnectionThreads.run`` passes first (nothing, or a cursor, say:
    hence ``*args`` here), then the operation's arguments, positionally and in the contract's order.
    """

    def insert(self, *args: Any) -> list[ExecutionRecord]: ...

    def get(self, *args: Any) -> list[ExecutionRecord | None]: ...

    def get_by_sleeping_unique_id(self, *args: Any) -> list[ExecutionRecord | None]: ...

    def list_records(self, *args: Any) -> list[ExecutionRecord]: ...

    def count_by_status(self, *args: Any) -> dict[TaskExecutionStatus, int]: ...

    def claim(self, *args: Any) -> list[ExecutionRecord]: ...

    def commit_runs(self, *args: Any) -> list[StatusChange]: ...

    def release(self, *args: Any) -> list[StatusChange]: ...

    def find_revoked(self, *args: Any) -> list[str]: ...

    def renew(self, *args: Any) -> list[str]: ...

    def list_executors(self, *args: Any) -> list[ExecutorInfo]: ...

    def expire(self, *args: Any) -> list[StatusChange]: ...

    def cancel(self, *args: Any) -> list[StatusChange]: ...

    def wake(self, *args: Any) -> list[StatusChange]: ...

    def retry(self, *args: Any) -> list[StatusChange]: ...

    def delete_finished(self, *args: Any) -> int: ...


class ThreadedStorage(Generic[K]):
    """The contract's operations as calls of ``database``'s methods on ``threads``, each with the
    kind of call its subclass gives for what the operation does. ``aclose`` closes the threads; a
    subclass also sets ``capabilities`` and opens the storage."""

    storage_api = STORAGE_API
    capabilities: Capabilities
    read_kind: K
    """The kind of call of an operation that only reads."""
    write_kind: K
    """The kind of call of an operation that writes but makes nothing claimable (claiming,
    renewing, deleting)."""
    claimable_write_kind: K
    """The kind of call of an operation whose write may make an execution claimable (inserting,
    committing, handing back, expiring, cancelling, waking, retrying)."""

    def __init__(self, database: ThreadedDatabase, threads: ConnectionThreads[Any, Any, K]):
        self._db = database
        self._threads = threads

    async def insert_executions(self, records: Sequence[ExecutionRecord]) -> list[ExecutionRecord]:
        return await self._threads.call(self.claimable_write_kind, self._db.insert, records)

    async def get_executions(self, execution_ids: Sequence[str]) -> list[ExecutionRecord | None]:
        return await self._threads.call(self.read_kind, self._db.get, execution_ids)

    async def get_executions_by_sleeping_unique_id(self, unique_ids: Sequence[str]) -> list[ExecutionRecord | None]:
        return await self._threads.call(self.read_kind, self._db.get_by_sleeping_unique_id, unique_ids)

    async def list_executions(
        self,
        *,
        statuses: Sequence[TaskExecutionStatus] | None = None,
        task_id: str | None = None,
        executor_id: str | None = None,
        limit: int = 100,
        before: ListCursor | None = None,
        queue: str | None = None,
    ) -> list[ExecutionRecord]:
        return await self._threads.call(self.read_kind, self._db.list_records, statuses, task_id, executor_id,
                                        limit, before, queue)

    async def count_executions(self) -> dict[TaskExecutionStatus, int]:
        """``StatusCounts``: one grouped count over the status index."""
        return await self._threads.call(self.read_kind, self._db.count_by_status)

    async def claim_executions(
        self, executor_id: str, now: float, limit: int, lease_duration: float, *,
        task_ids: Collection[str] | None = None, queues: Collection[str] | None = None,
        limits: Mapping[str, int] | None = None, rates: Mapping[str, tuple[int, float]] | None = None,
    ) -> list[ExecutionRecord]:
        return await self._threads.call(self.write_kind, self._db.claim, executor_id, now, limit, lease_duration,
                                        task_ids, queues, limits, rates)

    async def commit_runs(self, commits: Sequence[RunCommit], now: float) -> list[StatusChange]:
        return await self._threads.call(self.claimable_write_kind, self._db.commit_runs, commits, now)

    async def release_leases(self, leases: Sequence[Lease], now: float) -> list[StatusChange]:
        return await self._threads.call(self.claimable_write_kind, self._db.release, leases, now)

    async def find_revoked_leases(self, leases: Sequence[Lease]) -> list[str]:
        return await self._threads.call(self.read_kind, self._db.find_revoked, leases)

    async def renew_leases(
        self, executor: ExecutorInfo, leases: Sequence[Lease], now: float, lease_duration: float
    ) -> list[str]:
        return await self._threads.call(self.write_kind, self._db.renew, executor, leases, now, lease_duration)

    async def list_executors(self, heartbeat_after: float) -> list[ExecutorInfo]:
        return await self._threads.call(self.read_kind, self._db.list_executors, heartbeat_after)

    async def expire_leases(self, now: float, max_lease_expirations: int, limit: int) -> list[StatusChange]:
        return await self._threads.call(self.claimable_write_kind, self._db.expire, now, max_lease_expirations,
                                        limit)

    async def cancel_executions(self, execution_ids: Sequence[str], now: float) -> list[StatusChange]:
        return await self._threads.call(self.claimable_write_kind, self._db.cancel, execution_ids, now)

    async def wake_sleeping_executions(self, wakeups: Sequence[SleepingWakeup], now: float) -> list[StatusChange]:
        return await self._threads.call(self.claimable_write_kind, self._db.wake, wakeups, now)

    async def retry_executions(self, execution_ids: Sequence[str], now: float) -> list[StatusChange]:
        return await self._threads.call(self.claimable_write_kind, self._db.retry, execution_ids, now)

    async def delete_finished_executions(self, finished_before: float, limit: int) -> int:
        return await self._threads.call(self.write_kind, self._db.delete_finished, finished_before, limit)

    async def aclose(self) -> None:
        await self._threads.close()
