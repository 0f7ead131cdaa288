"""The storage's connection thread: group commit on one SQLite connection.

The design (a queue of calls; everything pending committed in one transaction; ``Cancelled``
always meaning "nothing was applied") is the core's ``ConnectionThreads``; this is what SQLite
adds: read and write transactions (``BEGIN IMMEDIATE`` if any call writes), calls run outside any
transaction (opening), transactions retried while another connection holds the lock, and the
change feed.

Change feed: once someone waits for changes, the thread reads ``PRAGMA data_version`` after each
transaction and, when idle, every ``watch_interval`` seconds. It moves only when *another*
connection committed, so the trio side learns of other processes' writes within milliseconds at
the cost of one in-memory pragma, with no thread hop unless something changed.
"""

from __future__ import annotations

import contextlib
import enum
import sqlite3
from collections.abc import Iterator

import outcome
import trio

from durable_core.storage.connection_thread import Call, ConnectionThreads

from ._database import Database, begin_immediate, ends_transaction, is_busy


class Kind(enum.Enum):
    READ = "read"
    """Runs in a read transaction, or in the write transaction of its batch."""
    WRITE = "write"
    """Runs in a write transaction (``BEGIN IMMEDIATE``); if it fails, it rolls back only itself."""
    ALONE = "alone"
    """Runs outside any transaction: opening the connection, for one."""


def _batches(calls: list[Call[Kind]]) -> Iterator[list[Call[Kind]]]:
    """Split taken calls, in order, into transactions; ``ALONE`` calls run by themselves."""
    batch: list[Call[Kind]] = []
    for call in calls:
        if call.kind is Kind.ALONE:
            if batch:
                yield batch
                batch = []
            yield [call]
        else:
            batch.append(call)
    if batch:
        yield batch


class ConnectionThread(ConnectionThreads[Database, sqlite3.Connection, Kind]):
    """Runs calls on ``database`` in a dedicated thread, committing all pending calls together.

    ``busy_retries``: how often a transaction that found the database locked runs again. SQLite
    waits up to ``busy_timeout`` for a lock, but in some cases (changing the journal mode,
    avoiding a deadlock) it reports busy at once.
    """

    def __init__(self, database: Database, *, busy_retries: int, max_batch_size: int, watch_interval: float):
        self._database = database
        self._watch_interval = watch_interval
        self._watching = False
        self._data_version: int | None = None  # in the thread: the last one read
        self._changes = 0  # in trio: how often another connection's commits were seen
        self._changed = trio.Event()
        super().__init__([database], name=f"sqlite storage of {database.path}",
                         thread_name=f"durable-sqlite:{database.path}", max_batch_size=max_batch_size,
                         max_retries=busy_retries)

    async def wait_for_changes(self, seen: int | None) -> int:
        """The change counter, once it differs from ``seen`` (see the module doc)."""
        if seen is None:
            if not self._watching:
                self._watching = True
                self.idle_timeout = self._watch_interval
                # the baseline, in the thread: that wakes it, to watch from now on
                await self.call(Kind.ALONE, self._read_data_version)
            return self._changes
        while self._changes == seen:
            if self.closed:
                raise self.closed_error()
            await self._changed.wait()
        return self._changes

    def _note_change(self) -> None:
        self._changes += 1
        self._changed.set()
        self._changed = trio.Event()

    async def close(self) -> None:
        """Run what is queued, close the connection and end the thread. Idempotent."""
        await super().close()
        self._changed.set()  # waiters see the storage closed

    # ------------------------------------------------------------------ in the thread

    def run_taken(self, database: Database, calls: list[Call[Kind]]) -> None:
        for batch in _batches(calls):
            if batch[0].kind is Kind.ALONE:
                self._run_alone(batch[0])
            else:
                self.run_transaction(database, batch)

    def _run_alone(self, call: Call[Kind]) -> None:
        try:
            call.result = outcome.Value(self.retried(call.fn, *call.args))
        except Exception as exc:
            call.result = outcome.Error(self.error(exc))

    inline = True  # a transaction takes tens of microseconds, a hop to the thread and back more

    def inline_allowed(self, call: Call[Kind]) -> bool:
        return call.kind is not Kind.ALONE

    def begin(self, database: Database, calls: list[Call[Kind]]) -> sqlite3.Connection:
        database.check_file()
        conn = database.conn
        if any(call.kind is Kind.WRITE for call in calls):
            begin_immediate(conn, database.busy_timeout)
        else:
            conn.execute("BEGIN")
        return conn

    def begin_nowait(self, database: Database, calls: list[Call[Kind]]) -> sqlite3.Connection:
        """``begin`` on trio's thread: if another process holds the write lock, the thread waits."""
        database.check_file()
        conn = database.conn
        try:
            conn.execute("BEGIN IMMEDIATE" if any(call.kind is Kind.WRITE for call in calls) else "BEGIN")
        except sqlite3.OperationalError as exc:
            if is_busy(exc):
                raise self.would_wait() from exc
            raise
        return conn

    def commit(self, conn: sqlite3.Connection, calls: list[Call[Kind]]) -> None:
        conn.execute("COMMIT")

    def rollback(self, conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back already
                conn.execute("ROLLBACK")

    def spoils_transaction(self, call: Call[Kind]) -> bool:
        return call.kind is Kind.WRITE

    def fails_transaction(self, exc: Exception) -> bool:
        """Busy (the whole transaction runs again: ``retryable``), disk full, an I/O error."""
        return isinstance(exc, sqlite3.Error) and ends_transaction(exc)

    def retryable(self, exc: Exception) -> bool:
        return isinstance(exc, sqlite3.Error) and is_busy(exc)

    def error(self, exc: Exception) -> Exception:
        """SQLite errors become a ``StorageError`` naming the file and saying what to do."""
        return self._database.error(exc) if isinstance(exc, sqlite3.Error) else exc

    def disconnect(self, database: Database) -> None:
        database.close()

    def after_round(self, database: Database) -> None:
        if self._watching and self._data_version_moved():
            self.trio_token.run_sync_soon(self._note_change)

    def _read_data_version(self) -> int:
        self._data_version = self._database.conn.execute("PRAGMA data_version").fetchone()[0]
        return self._data_version

    def _data_version_moved(self) -> bool:
        before = self._data_version
        try:
            return self._read_data_version() != before
        except sqlite3.Error:  # e.g. busy: look again next time
            return False
