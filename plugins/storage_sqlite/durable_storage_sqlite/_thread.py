"""One long-lived thread owns the connection and commits whatever is pending together.

Why: a trio-to-thread hop costs several SQLite commits, so one hop per operation would be the
bottleneck. Instead trio tasks put their operations on a queue; the thread takes everything
pending, runs it in one transaction, commits once, and hands every result back to trio in one
callback. A failing operation rolls back only itself.

Cancellation: an operation whose caller is cancelled before the thread takes it is dropped and
raises ``trio.Cancelled``; once taken it is applied wholly (or not at all, if the transaction
fails) and its caller receives the result, trio delivering the cancellation at the caller's next
checkpoint. So ``Cancelled`` always means "nothing was applied", and a claim is never lost.

Change feed: once someone waits for changes, the thread reads ``PRAGMA data_version`` after each
transaction and, when idle, every ``watch_interval`` seconds. It moves only when *another*
connection committed, so the trio side learns of other processes' writes within milliseconds at
the cost of one in-memory pragma, with no thread hop unless something changed.
"""

from __future__ import annotations

import contextlib
import enum
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import outcome
import trio

from durable_core.storage.contract import StorageError

from ._database import Database, is_busy

T = TypeVar("T")


class Kind(enum.Enum):
    READ = "read"
    """Runs in a read transaction, or in the write transaction of its batch."""
    WRITE = "write"
    """Runs in a write transaction (``BEGIN IMMEDIATE``); if it fails, it rolls back only itself."""
    ALONE = "alone"
    """Runs outside any transaction: opening and closing the connection."""


class _State(enum.Enum):
    PENDING = "pending"
    TAKEN = "taken"
    DROPPED = "dropped"


class _Call:
    __slots__ = ("fn", "args", "kind", "task", "state", "result")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], kind: Kind, task: trio.lowlevel.Task):
        self.fn = fn
        self.args = args
        self.kind = kind
        self.task = task
        self.state = _State.PENDING
        self.result: outcome.Outcome[Any] | None = None


def _batches(calls: list[_Call]) -> Iterator[list[_Call]]:
    """Split taken calls, in order, into transactions; ``ALONE`` calls run by themselves."""
    batch: list[_Call] = []
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


class _Unisolated(Exception):
    """A write failed in a transaction without savepoints."""


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back already
            conn.execute("ROLLBACK")


def _reschedule(calls: list[_Call]) -> None:
    for call in calls:
        trio.lowlevel.reschedule(call.task, call.result)


class ConnectionThread:
    """Runs calls on ``database`` in a dedicated thread, committing all pending calls together."""

    def __init__(self, database: Database, *, busy_retries: int, max_batch_size: int, watch_interval: float):
        self._database = database
        self._busy_retries = busy_retries
        self._max_batch_size = max_batch_size
        self._watch_interval = watch_interval
        self._watching = False
        self._data_version: int | None = None  # in the thread: the last one read
        self._changes = 0  # in trio: how often another connection's commits were seen
        self._changed = trio.Event()
        self._queue: queue.SimpleQueue[_Call] = queue.SimpleQueue()
        self._lock = threading.Lock()  # guards _Call.state: taking versus dropping
        self._token = trio.lowlevel.current_trio_token()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name=f"durable-sqlite:{database.path}", daemon=True)
        self._thread.start()

    async def call(self, kind: Kind, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in the thread; a checkpoint, atomic also when cancelled (module doc)."""
        if self._closed:
            raise StorageError(f"The sqlite storage of {self._database.path} is closed", is_retryable=False)
        return await self._submit(kind, fn, *args)

    async def wait_for_changes(self, seen: int | None) -> int:
        """The change counter, once it differs from ``seen`` (see the module doc)."""
        if seen is None:
            if not self._watching:
                self._watching = True
                await self.call(Kind.READ, self._read_data_version)  # the baseline; wakes the thread
            return self._changes
        while self._changes == seen:
            if self._closed:
                raise StorageError(f"The sqlite storage of {self._database.path} is closed", is_retryable=False)
            await self._changed.wait()
        return self._changes

    def _note_change(self) -> None:
        self._changes += 1
        self._changed.set()
        self._changed = trio.Event()

    async def close(self) -> None:
        """Run what is queued, close the connection and end the thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        with trio.CancelScope(shield=True):
            await self._submit(Kind.ALONE, self._database.close)
        self._thread.join()
        self._changed.set()  # waiters see the storage closed

    async def _submit(self, kind: Kind, fn: Callable[..., T], *args: Any) -> T:
        await trio.lowlevel.checkpoint_if_cancelled()
        call = _Call(fn, args, kind, trio.lowlevel.current_task())
        self._queue.put(call)

        def abort(_: object) -> trio.lowlevel.Abort:
            with self._lock:
                if call.state is not _State.PENDING:
                    return trio.lowlevel.Abort.FAILED
                call.state = _State.DROPPED
            return trio.lowlevel.Abort.SUCCEEDED

        return await trio.lowlevel.wait_task_rescheduled(abort)  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ in the thread

    def _serve(self) -> None:
        while not self._database.closed:
            calls = self._take()
            for batch in _batches(calls):
                if batch[0].kind is Kind.ALONE:
                    self._run_alone(batch[0])
                else:
                    self._run_transaction(batch)
            changed = self._watching and not self._database.closed and self._data_version_moved()
            try:
                if calls:
                    self._token.run_sync_soon(_reschedule, calls)
                if changed:
                    self._token.run_sync_soon(self._note_change)
            except trio.RunFinishedError:  # the trio run ended without closing the storage
                return

    def _read_data_version(self) -> int:
        self._data_version = self._database.conn.execute("PRAGMA data_version").fetchone()[0]
        return self._data_version

    def _data_version_moved(self) -> bool:
        before = self._data_version
        try:
            return self._read_data_version() != before
        except sqlite3.Error:  # e.g. busy: look again next time
            return False

    def _take(self) -> list[_Call]:
        """Block for the next call (while watching, at most ``watch_interval``), then take
        every call pending (up to the batch size)."""
        try:
            calls = [self._queue.get(timeout=self._watch_interval if self._watching else None)]
        except queue.Empty:
            return []
        while len(calls) < self._max_batch_size:
            try:
                calls.append(self._queue.get_nowait())
            except queue.Empty:
                break
        with self._lock:
            taken = [call for call in calls if call.state is _State.PENDING]
            for call in taken:
                call.state = _State.TAKEN
        return taken

    def _run_alone(self, call: _Call) -> None:
        try:
            call.result = outcome.Value(self._busy_retried(call.fn, *call.args))
        except Exception as exc:
            call.result = self._failure(exc)

    def _run_transaction(self, calls: list[_Call]) -> None:
        try:
            self._busy_retried(self._transaction, calls)
        except sqlite3.Error as exc:
            for call in calls:
                call.result = self._failure(exc)

    def _failure(self, exc: Exception) -> outcome.Error:
        """What the caller receives: SQLite errors become a ``StorageError`` naming the file."""
        return outcome.Error(self._database.error(exc) if isinstance(exc, sqlite3.Error) else exc)

    def _busy_retried(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)``, run again while the database is busy, at most ``busy_retries`` times.

        SQLite waits up to ``busy_timeout`` for a lock, but in some cases (changing the journal
        mode, avoiding a deadlock) it reports busy at once.
        """
        retries = 0
        while True:
            try:
                return fn(*args)
            except sqlite3.Error as exc:
                if not is_busy(exc) or retries == self._busy_retries:
                    raise
                retries += 1
                time.sleep(min(0.001 * 2**retries, 0.1))

    def _transaction(self, calls: list[_Call]) -> None:
        """Run ``calls`` in one transaction.

        Writes run without savepoints, which cost a tenth of the throughput. If one fails, the
        transaction is rolled back and run again with a savepoint around each write, so that the
        failing write rolls back only itself.
        """
        conn = self._database.conn
        begin = "BEGIN IMMEDIATE" if any(call.kind is Kind.WRITE for call in calls) else "BEGIN"
        isolated = False
        while True:
            try:
                conn.execute(begin)
                for call in calls:
                    self._apply(conn, call, isolated)
                conn.execute("COMMIT")
                return
            except _Unisolated:
                _rollback(conn)
                isolated = True
            except BaseException:
                _rollback(conn)
                raise

    def _apply(self, conn: sqlite3.Connection, call: _Call, isolated: bool) -> None:
        """Run one call. A failing write rolls back to its savepoint if ``isolated``, else raises
        ``_Unisolated``. Busy errors propagate: the whole transaction is retried."""
        savepoint = isolated and call.kind is Kind.WRITE
        if savepoint:
            conn.execute("SAVEPOINT call")
        try:
            call.result = outcome.Value(call.fn(*call.args))
        except Exception as exc:
            if isinstance(exc, sqlite3.Error) and is_busy(exc):
                raise
            if call.kind is Kind.WRITE and not isolated:
                raise _Unisolated from exc
            if savepoint:
                conn.execute("ROLLBACK TO call")
            call.result = self._failure(exc)
        if savepoint:
            conn.execute("RELEASE call")
