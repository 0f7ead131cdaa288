"""``SqliteStorage``: the storage contract on one SQLite file, shared safely by many processes."""

from __future__ import annotations

import os
from pathlib import Path

from durable_core.storage.contract import Capabilities, StorageError
from durable_core.storage.opening import check_storage_options
from durable_core.storage.threaded_storage import ThreadedStorage

from ._database import Database
from ._thread import ConnectionThread, Kind
from .plugin import OPTIONS

_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")


def _create(path: Path, mode: int) -> None:
    """Create the database file, empty, with exactly ``mode`` (the umask does not apply), unless
    it exists. SQLite then creates its -wal and -shm files with the same mode."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except OSError:  # it exists (that mode stays), or SQLite will say why it cannot be created
        return
    try:
        os.fchmod(descriptor, mode)
    finally:
        os.close(descriptor)


class SqliteStorage(ThreadedStorage[Kind]):
    """Executions in one SQLite file (WAL). Open with ``await SqliteStorage.open(path)`` or
    ``open_storage("sqlite", path=...)``; use it within the trio run that opened it."""

    capabilities = Capabilities(persistent=True, multi_process=True, change_notifications=True)
    read_kind = Kind.READ
    write_kind = claimable_write_kind = Kind.WRITE

    def __init__(self, database: Database, thread: ConnectionThread):
        super().__init__(database, thread)
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
        file_mode: int = 0o600,
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
            "max_batch_size": max_batch_size, "watch_interval": watch_interval, "file_mode": file_mode,
        })
        _create(Path(path), file_mode)
        database = Database(Path(path).absolute(), synchronous=synchronous.upper(), busy_timeout=busy_timeout)
        thread = ConnectionThread(database, busy_retries=busy_retries, max_batch_size=max_batch_size,
                                  watch_interval=watch_interval)
        try:
            await thread.call(Kind.ALONE, database.open)
        except BaseException:
            await thread.close()
            raise
        return cls(database, thread)

    async def wait_for_changes(self, seen: int | None) -> int:
        return await self._thread.wait_for_changes(seen)

