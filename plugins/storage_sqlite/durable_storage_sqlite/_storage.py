"""``SqliteStorage``: the storage contract on one SQLite file, shared safely by many processes."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from durable_core.storage.contract import Capabilities, ExecutionRecord, StorageError
from durable_core.storage.opening import check_storage_options
from durable_core.storage.threaded_storage import ThreadedStorage

from ._database import StorageConnection, Database
from ._thread import ConnectionThread, Kind
from .plugin import OPTIONS

_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")


@contextlib.contextmanager
def _plain_rows(conn: sqlite3.Connection) -> Iterator[None]:
    """Rows as tuples and text as ``str`` on a caller's ``conn`` while we use it, whatever it set."""
    factories = conn.row_factory, conn.text_factory
    conn.row_factory, conn.text_factory = None, str
    try:
        yield
    finally:
        conn.row_factory, conn.text_factory = factories


def _same_file(file: str, path: Path) -> bool:
    try:
        return os.path.samefile(file, path)
    except OSError:
        return False


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

    capabilities = Capabilities(persistent=True, multi_process=True, change_notifications=True, routing=True,
                                concurrency_limits=True, rate_limits=True)
    read_kind = Kind.READ
    write_kind = claimable_write_kind = Kind.WRITE

    def __init__(self, database: Database, thread: ConnectionThread):
        super().__init__(database, thread)
        self._thread = thread
        self._database = database  # only its immutable settings, from a caller's thread
        self._path = database.path

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

    def insert_executions_on(self, connection: Any, records: Sequence[ExecutionRecord]) -> list[ExecutionRecord]:
        """``insert_executions`` in the transaction of a caller's ``sqlite3.Connection`` to this
        storage's file (``TransactionalInserts``; the README says how each transaction mode is
        handled). Safe from any thread: it uses only ``connection`` and the storage's path."""
        return self._insert_on(connection, records, "insert_executions_on")

    def connect(self) -> sqlite3.Connection:
        """A new connection to this storage's file with its settings (``TransactionalInserts``)."""
        return self._database.connect_for_caller()

    def try_insert_executions_on(self, connection: Any, records: Sequence[ExecutionRecord]
                                 ) -> list[ExecutionRecord] | None:
        """``NonBlockingInserts``: insert and commit on a connection from ``connect()``, unless that
        would wait (another process holds the write lock; ``synchronous`` FULL or EXTRA)."""
        if not isinstance(connection, StorageConnection) or connection.storage_path != self._path:
            raise StorageError(f"SqliteStorage.try_insert_executions_on takes a connection from this "
                               f"storage's connect() (to {self._path})", is_retryable=False)
        database = self._database.on(connection)
        try:
            with _plain_rows(connection):
                return database.insert_now(records)
        except sqlite3.Error as exc:
            raise database.error(exc) from exc

    async def insert_executions_on_async(self, connection: Any, records: Sequence[ExecutionRecord]
                                         ) -> list[ExecutionRecord]:
        """The same from an asyncio event loop. There is no asyncio sqlite3: this takes the same
        ``sqlite3.Connection`` and works on the loop's thread (a connection belongs to the thread
        that opened it), blocking the loop for the insert, or while another process holds the
        write lock, up to the connection's ``timeout``."""
        return self._insert_on(connection, records, "insert_executions_on_async")

    def _insert_on(self, connection: Any, records: Sequence[ExecutionRecord], method: str) -> list[ExecutionRecord]:
        if not isinstance(connection, sqlite3.Connection):
            kind = type(connection)
            raise StorageError(
                f"SqliteStorage.{method} takes a sqlite3.Connection (the standard library's) to {self._path}, "
                f"in the caller's transaction; got {kind.__module__}.{kind.__qualname__}",
                is_retryable=False,
            )
        database = self._database.on(connection)
        try:
            with _plain_rows(connection):
                ours = isinstance(connection, StorageConnection) and connection.storage_path == self._path
                file = "" if ours else database.main_file()
                if not ours and (not file or not _same_file(file, self._path)):
                    raise StorageError(
                        f"SqliteStorage.{method}: the connection is on {file or 'an in-memory database'}, this "
                        f"storage on {self._path}; pass a connection to the storage's file: "
                        f"sqlite3.connect({str(self._path)!r})",
                        is_retryable=False,
                    )
                return database.insert_joining(records)
        except sqlite3.ProgrammingError as exc:  # closed, or opened in another thread
            raise StorageError(f"SqliteStorage.{method} cannot use this connection: {exc}",
                               is_retryable=False) from exc
        except sqlite3.Error as exc:
            raise database.error(exc) from exc
