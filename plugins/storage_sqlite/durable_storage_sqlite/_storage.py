"""``SqliteStorage``: the storage contract on one SQLite file, shared safely by many processes."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from durable_core.status import TaskExecutionStatus
from durable_core.storage.contract import (
    STORAGE_API,
    Capabilities,
    ExecutionRecord,
    Lease,
    RunCommit,
    SleepingWakeup,
    StatusChange,
    StorageError,
)
from durable_core.storage.opening import check_storage_options

from ._database import Database
from ._thread import ConnectionThread, Kind
from .plugin import OPTIONS

_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")


class SqliteStorage:
    """Executions in one SQLite file (WAL). Open with ``await SqliteStorage.open(path)`` or
    ``open_storage("sqlite", path=...)``; use it within the trio run that opened it."""

    storage_api = STORAGE_API
    capabilities = Capabilities(persistent=True, multi_process=True, change_notifications=True)

    def __init__(self, database: Database, thread: ConnectionThread):
        self._db = database
        self._thread = thread

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str] = "durable.db",
        *,
        synchronous: str = "NORMAL",
        busy_timeout: float = 5.0,
        busy_retries: int = 5,
        max_batch_size: int = 1000,
        watch_interval: float = 0.005,
    ) -> SqliteStorage:
        """Open (creating or migrating) the database at ``path``; see the README for the options."""
        if not isinstance(synchronous, str) or synchronous.upper() not in _SYNCHRONOUS:
            raise StorageError(
                f"Invalid sqlite storage option synchronous={synchronous!r}: expected one of "
                f"{', '.join(_SYNCHRONOUS)}",
                is_retryable=False,
            )
        check_storage_options("sqlite", OPTIONS, {
            "path": path, "busy_timeout": busy_timeout, "busy_retries": busy_retries,
            "max_batch_size": max_batch_size, "watch_interval": watch_interval,
        })
        database = Database(Path(path).absolute(), synchronous=synchronous.upper(), busy_timeout=busy_timeout)
        thread = ConnectionThread(database, busy_retries=busy_retries, max_batch_size=max_batch_size,
                                  watch_interval=watch_interval)
        try:
            await thread.call(Kind.ALONE, database.open)
        except BaseException:
            await thread.close()
            raise
        return cls(database, thread)

    async def insert_executions(self, records: Sequence[ExecutionRecord]) -> list[ExecutionRecord]:
        return await self._thread.call(Kind.WRITE, self._db.insert, records)

    async def get_executions(self, execution_ids: Sequence[str]) -> list[ExecutionRecord | None]:
        return await self._thread.call(Kind.READ, self._db.get, execution_ids)

    async def get_executions_by_sleeping_unique_id(self, unique_ids: Sequence[str]) -> list[ExecutionRecord | None]:
        return await self._thread.call(Kind.READ, self._db.get_by_sleeping_unique_id, unique_ids)

    async def list_executions(
        self,
        *,
        statuses: Sequence[TaskExecutionStatus] | None = None,
        task_id: str | None = None,
        limit: int = 100,
    ) -> list[ExecutionRecord]:
        return await self._thread.call(Kind.READ, self._db.list_records, statuses, task_id, limit)

    async def claim_executions(
        self, executor_id: str, now: float, limit: int, expire_leeway: float
    ) -> list[ExecutionRecord]:
        return await self._thread.call(Kind.WRITE, self._db.claim, executor_id, now, limit, expire_leeway)

    async def commit_runs(self, commits: Sequence[RunCommit], now: float) -> list[StatusChange]:
        return await self._thread.call(Kind.WRITE, self._db.commit_runs, commits, now)

    async def release_leases(self, leases: Sequence[Lease], now: float) -> list[StatusChange]:
        return await self._thread.call(Kind.WRITE, self._db.release, leases, now)

    async def find_revoked_leases(self, leases: Sequence[Lease]) -> list[str]:
        return await self._thread.call(Kind.READ, self._db.find_revoked, leases)

    async def expire_leases(self, now: float, max_lease_expirations: int, limit: int) -> list[StatusChange]:
        return await self._thread.call(Kind.WRITE, self._db.expire, now, max_lease_expirations, limit)

    async def cancel_executions(self, execution_ids: Sequence[str], now: float) -> list[StatusChange]:
        return await self._thread.call(Kind.WRITE, self._db.cancel, execution_ids, now)

    async def wake_sleeping_executions(self, wakeups: Sequence[SleepingWakeup], now: float) -> list[StatusChange]:
        return await self._thread.call(Kind.WRITE, self._db.wake, wakeups, now)

    async def delete_finished_executions(self, finished_before: float, limit: int) -> int:
        return await self._thread.call(Kind.WRITE, self._db.delete_finished, finished_before, limit)

    async def wait_for_changes(self, seen: int | None) -> int:
        return await self._thread.wait_for_changes(seen)

    async def aclose(self) -> None:
        await self._thread.close()
