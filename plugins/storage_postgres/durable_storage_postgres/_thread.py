"""The storage's connection threads: group commit on ``pool_size`` PostgreSQL connections.

The design (a queue of calls; everything pending committed in one transaction; ``Cancelled``
always meaning "nothing was applied") is the core's ``ConnectionThreads``; psycopg's async API is
asyncio-only, so its synchronous connections run there. This is what PostgreSQL adds: calls run on
a cursor; a transaction whose calls changed something others wait for ends with NOTIFY; deadlocks
and serialization failures run the transaction again; a lost connection is opened again for the
next batch; and a transaction every caller of which was cancelled (an executor shutting down
while the server waits on a lock another process holds, say) is abandoned on the server
(``cancel_safe``), so that its callers see ``Cancelled`` at once instead of waiting for the lock.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import threading
from collections.abc import Callable

import outcome
import psycopg

from durable_core.storage.connection_thread import Call, ConnectionThreads
from durable_core.storage.contract import StorageError

log = logging.getLogger("durable_storage_postgres")


class Kind(enum.Enum):
    READ = "read"
    """Reads: they take no lock, so they run beside the lane's transactions."""
    QUIET = "quiet"
    """Tells no one: reads, and writes that make nothing claimable."""
    NOTIFY = "notify"
    """On success with a non-empty result, other storage objects are told (NOTIFY) when the
    transaction commits."""
    CLAIM = "claim"
    """Claims: writes that lock only rows no one else has locked (``SKIP LOCKED``), so they never
    wait for the lane and need not take turns with it (as ``QUIET`` otherwise)."""


_TURNLESS = frozenset({Kind.READ, Kind.CLAIM})
"""Kinds that never wait for a lock the lane holds: run beside its transactions."""


def _tells(call: Call[Kind]) -> bool:
    return call.kind is Kind.NOTIFY and isinstance(call.result, outcome.Value) and bool(call.result.value)


class _Link:
    """A thread's connection (None: lost, and opening it again failed)."""

    __slots__ = ("conn",)

    def __init__(self, conn: psycopg.Connection | None):
        self.conn = conn


class Connections(ConnectionThreads[_Link, psycopg.Cursor, Kind]):
    """Runs calls ``fn(cursor, *args)`` on a thread per connection, committing pending calls
    together.

    ``connections`` are open and the threads own them from now on; ``connect`` opens another when
    one was lost (``cancel_timeout``: how long asking the server to abandon a transaction may take);
    ``errors`` turns a psycopg error into the ``StorageError`` a caller sees;
    ``channel`` is NOTIFY'd after transactions whose calls asked for it (None: never).
    """

    interruptible = True
    max_backoff = 0.05

    def __init__(self, connections: list[psycopg.Connection], *, connect: Callable[[], psycopg.Connection],
                 errors: Callable[[psycopg.Error], StorageError], channel: str | None, max_batch_size: int,
                 max_retries: int, cancel_timeout: float, name: str):
        self._connect = connect
        self._cancel_timeout = cancel_timeout
        self._errors = errors
        self._channel = channel
        self._where = name
        self.backend_pids: set[int] = {conn.info.backend_pid for conn in connections}
        """The server processes of the current connections (their NOTIFYs are our own)."""
        self.writing = threading.Lock()
        """Held by a transaction that writes, here or in the lane (``_lane``): the storage's writes
        take turns, as on one connection, so that they never deadlock each other (the server would
        take ``deadlock_timeout``, a second, to notice)."""
        self._holds = threading.local()
        super().__init__([_Link(conn) for conn in connections], name=f"postgres storage of {name}",
                         thread_name=f"durable-postgres:{name}", max_batch_size=max_batch_size,
                         max_retries=max_retries)

    # ------------------------------------------------------------------ in a thread

    def begin(self, link: _Link, calls: list[Call[Kind]]) -> psycopg.Cursor:
        holds = any(call.kind not in _TURNLESS for call in calls)
        if holds:
            self.writing.acquire()
        self._holds.value = holds
        try:
            return self._usable(link).cursor()  # psycopg begins the transaction with the first statement
        except BaseException:
            self._release()
            raise

    def run(self, cur: psycopg.Cursor, call: Call[Kind]) -> object:
        return call.fn(cur, *call.args)

    def commit(self, cur: psycopg.Cursor, calls: list[Call[Kind]]) -> None:
        if self._channel is not None and any(_tells(call) for call in calls):
            cur.execute("SELECT pg_notify(%s, '')", (self._channel,))
        try:
            cur.connection.commit()
        finally:
            self._release()
        cur.close()

    def rollback(self, cur: psycopg.Cursor) -> None:
        with contextlib.suppress(psycopg.Error):  # a lost connection: opened again for the next batch
            cur.connection.rollback()
        self._release()
        cur.close()

    def _release(self) -> None:
        if getattr(self._holds, "value", False):
            self._holds.value = False
            self.writing.release()

    def fails_transaction(self, exc: Exception) -> bool:
        """The connection, a deadlock, a serialization failure: the whole transaction."""
        return isinstance(exc, psycopg.OperationalError)

    def retryable(self, exc: Exception) -> bool:
        return isinstance(exc, (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected))

    def interrupted(self, exc: Exception) -> bool:
        return isinstance(exc, psycopg.errors.QueryCanceled)

    def error(self, exc: Exception) -> Exception:
        return self._errors(exc) if isinstance(exc, psycopg.Error) else exc

    def interrupt(self, link: _Link) -> None:
        """Ask the server to abandon the transaction running on ``link`` (its callers were cancelled)."""
        if link.conn is None:
            return
        try:
            link.conn.cancel_safe(timeout=self._cancel_timeout)
        except Exception as exc:  # the transaction then ends as it would have
            log.warning("asking %s to abandon a transaction failed: %s", self._where, exc)

    def disconnect(self, link: _Link) -> None:
        if link.conn is not None:
            link.conn.close()

    def _usable(self, link: _Link) -> psycopg.Connection:
        """``link``'s connection, opened again if it was lost."""
        conn = link.conn
        if conn is not None and not conn.broken and not conn.closed:
            return conn
        if conn is not None:
            self.backend_pids.discard(conn.info.backend_pid)
            conn.close()
            link.conn = None
        try:
            link.conn = self._connect()
        except StorageError as exc:  # a refused login stays refused: permanent; a server away: transient
            raise StorageError(f"Lost the connection to {self._where}, and reconnecting failed: {exc.message}",
                               is_retryable=exc.is_retryable) from None
        self.backend_pids.add(link.conn.info.backend_pid)
        return link.conn
