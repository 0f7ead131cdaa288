"""Connection threads: each owns one connection and commits whatever is pending together.

Why: psycopg's async API is asyncio-only, and a trio-to-thread hop costs ~100 µs, more than a
simple statement on a nearby server. So trio tasks put their calls on one queue; a connection
thread takes everything pending, runs it in one transaction, commits once and hands every result
back to trio in one callback. ``pool_size`` threads serve the queue side by side.

Cancellation: a call whose caller is cancelled before a thread takes it is dropped and raises
``trio.Cancelled``; once taken it is applied wholly (or not at all, if its transaction fails) and
its caller receives the result, trio delivering the cancellation at the caller's next checkpoint.
So ``Cancelled`` always means "nothing was applied", and a claim is never lost. One exception
keeps that promise: if *every* caller of a transaction in flight is cancelled (an executor
shutting down while the server waits on a lock another process holds, say), the server is asked
to abandon it (``cancel_safe``); if it does, nothing was applied and the callers see
``Cancelled`` at once instead of waiting for the lock.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import outcome
import psycopg
import trio

from durable_core.storage.contract import StorageError

T = TypeVar("T")
log = logging.getLogger("durable_storage_postgres")

class _Call:
    """One storage call: ``fn(cursor, *args)``; ``notify``: on success with a non-empty result,
    other storage objects are told (NOTIFY) when the transaction commits."""

    __slots__ = ("fn", "args", "notify", "task", "taken", "dropped", "cancelled", "flight", "result")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], notify: bool, task: trio.lowlevel.Task):
        self.fn = fn
        self.args = args
        self.notify = notify
        self.task = task
        self.taken = False
        self.dropped = False
        self.cancelled = False  # its caller was cancelled after a thread took it
        self.flight: _Flight | None = None
        self.result: outcome.Outcome[Any] | None = None


class _Flight:
    """The calls a thread runs in one transaction, and whether the server was asked to abandon
    it. ``lock`` keeps that request from reaching the connection once the transaction is done."""

    __slots__ = ("calls", "conn", "lock", "done", "abandoned")

    def __init__(self, calls: list[_Call]):
        self.calls = calls
        self.conn: psycopg.Connection | None = None
        self.lock = threading.Lock()
        self.done = False
        self.abandoned = False


class _Abandoned(Exception):
    """The server abandoned a transaction every caller of which was cancelled: nothing applied."""


_STOP = object()
"""Put on the queue once per thread to end it after the calls before it."""


class _Unisolated(Exception):
    """A call failed in a transaction without savepoints."""


class Connections:
    """Runs calls on ``pool_size`` dedicated connection threads, committing pending calls together.

    ``connections`` are open and the threads own them from now on; ``connect`` opens another when
    one was lost (``cancel_timeout``: how long asking the server to abandon a transaction may take);
    ``errors`` turns a psycopg error into the ``StorageError`` a caller sees;
    ``channel`` is NOTIFY'd after transactions whose calls asked for it (None: never).
    """

    def __init__(self, connections: list[psycopg.Connection], *, connect: Callable[[], psycopg.Connection],
                 errors: Callable[[psycopg.Error], StorageError], channel: str | None, max_batch_size: int,
                 max_retries: int, cancel_timeout: float, name: str):
        self._connect = connect
        self._cancel_timeout = cancel_timeout
        self._errors = errors
        self._channel = channel
        self._max_batch_size = max_batch_size
        self._max_retries = max_retries
        self._name = name
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()  # guards _Call.taken / dropped / cancelled, _Flight.abandoned
        self._token = trio.lowlevel.current_trio_token()
        self._closed = False
        self.backend_pids: set[int] = {conn.info.backend_pid for conn in connections}
        """The server processes of the current connections (their NOTIFYs are our own)."""
        self._threads = [
            threading.Thread(target=self._serve, args=(conn,), name=f"durable-postgres:{name}:{i}", daemon=True)
            for i, conn in enumerate(connections)
        ]
        for thread in self._threads:
            thread.start()

    async def call(self, fn: Callable[..., T], *args: Any, notify: bool = False) -> T:
        """Run ``fn(cursor, *args)`` in a transaction; a checkpoint, atomic also when cancelled."""
        if self._closed:
            raise StorageError(f"The postgres storage of {self._name} is closed", is_retryable=False)
        await trio.lowlevel.checkpoint_if_cancelled()
        call = _Call(fn, args, notify, trio.lowlevel.current_task())
        self._queue.put(call)

        def abort(_: object) -> trio.lowlevel.Abort:
            with self._lock:
                if not call.taken:
                    call.dropped = True
                    return trio.lowlevel.Abort.SUCCEEDED
                call.cancelled = True
                flight = call.flight
                if flight is None or flight.abandoned or not all(c.cancelled for c in flight.calls):
                    return trio.lowlevel.Abort.FAILED
                flight.abandoned = True
            trio.lowlevel.start_thread_soon(functools.partial(self._abandon, flight), lambda _: None)
            return trio.lowlevel.Abort.FAILED

        try:
            return await trio.lowlevel.wait_task_rescheduled(abort)  # type: ignore[no-any-return]
        except _Abandoned:
            await trio.lowlevel.checkpoint()  # raises Cancelled: this caller was cancelled
            raise StorageError(f"The postgres storage of {self._name} abandoned a call") from None

    async def close(self) -> None:
        """Run what is queued, then close every connection and end the threads. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for _ in self._threads:
            self._queue.put(_STOP)
        with trio.CancelScope(shield=True):
            for thread in self._threads:
                await trio.to_thread.run_sync(thread.join)

    # ------------------------------------------------------------------ in a thread

    def _abandon(self, flight: _Flight) -> None:
        """Ask the server to abandon ``flight``'s transaction, if it is still running."""
        with flight.lock:
            if flight.done or flight.conn is None:
                return
            try:
                flight.conn.cancel_safe(timeout=self._cancel_timeout)
            except Exception as exc:  # the transaction then ends as it would have
                log.warning("asking %s to abandon a transaction failed: %s", self._name, exc)

    def _serve(self, conn: psycopg.Connection | None) -> None:
        """Serve calls until told to stop; a lost connection is opened again for the next batch."""
        try:
            while True:
                calls, stop = self._take()
                if calls:
                    conn = self._usable(conn)
                    if conn is None:
                        self._fail(calls, StorageError(f"Lost the connection to {self._name}, and reconnecting "
                                                       "failed; the server may be down or restarting"))
                    else:
                        self._run_in_flight(conn, calls)
                    try:
                        self._token.run_sync_soon(_reschedule, calls)
                    except trio.RunFinishedError:  # the trio run ended without closing the storage
                        return
                if stop:
                    return
        finally:
            if conn is not None:
                conn.close()

    def _usable(self, conn: psycopg.Connection | None) -> psycopg.Connection | None:
        if conn is not None and not conn.broken and not conn.closed:
            return conn
        if conn is not None:
            self.backend_pids.discard(conn.info.backend_pid)
            conn.close()
        try:
            conn = self._connect()
            self.backend_pids.add(conn.info.backend_pid)
            return conn
        except Exception as exc:
            log.warning("reconnecting to %s failed: %s", self._name, exc)
            return None

    def _take(self) -> tuple[list[_Call], bool]:
        """Block for the next call, then take every call pending (up to the batch size)."""
        items = [self._queue.get()]
        while len(items) < self._max_batch_size and items[-1] is not _STOP:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        stop = items[-1] is _STOP
        with self._lock:
            calls = [item for item in items if item is not _STOP and not item.dropped]
            flight = _Flight(calls)
            for call in calls:
                call.taken = True
                call.flight = flight
        return calls, stop

    def _run_in_flight(self, conn: psycopg.Connection, calls: list[_Call]) -> None:
        """``_run``, abandoned by the server if every caller is cancelled meanwhile (module doc)."""
        flight = calls[0].flight
        assert flight is not None
        with flight.lock:
            flight.conn = conn
        self._run(conn, calls)
        with flight.lock:
            flight.done = True
        if flight.abandoned and all(isinstance(call.result, outcome.Error) for call in calls):
            self._fail(calls, _Abandoned())  # it failed (as asked): nothing was applied

    def _run(self, conn: psycopg.Connection, calls: list[_Call]) -> None:
        """Run ``calls`` in one transaction: without savepoints, which cost a round trip each, and if
        a call fails, again with a savepoint around each call so that it fails alone. A deadlock or
        serialization failure runs the transaction again, at most ``max_retries`` times."""
        isolated = False
        retries = 0
        while True:
            try:
                with conn.transaction(), conn.cursor() as cur:
                    changed = [self._apply(conn, cur, call, isolated) for call in calls]
                    if self._channel is not None and any(changed):
                        cur.execute("SELECT pg_notify(%s, '')", (self._channel,))
                return
            except _Unisolated:
                isolated = True
            except (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected) as exc:
                if retries == self._max_retries:
                    self._fail(calls, self._errors(exc))
                    return
                retries += 1
                time.sleep(min(0.001 * 2**retries, 0.05))
            except Exception as exc:
                self._fail(calls, self._errors(exc) if isinstance(exc, psycopg.Error) else exc)
                return

    def _apply(self, conn: psycopg.Connection, cur: psycopg.Cursor, call: _Call, isolated: bool) -> bool:
        """Run one call; whether it changed something others should hear of."""
        if not isolated:
            try:
                result = call.fn(cur, *call.args)
            except psycopg.OperationalError:  # the connection, or a deadlock: the whole transaction
                raise
            except Exception as exc:
                raise _Unisolated from exc
            call.result = outcome.Value(result)
            return call.notify and bool(result)
        try:
            with conn.transaction():  # a savepoint
                result = call.fn(cur, *call.args)
        except psycopg.OperationalError:
            raise
        except psycopg.Error as exc:
            call.result = outcome.Error(self._errors(exc))
        except Exception as exc:
            call.result = outcome.Error(exc)
        else:
            call.result = outcome.Value(result)
            return call.notify and bool(result)
        return False

    @staticmethod
    def _fail(calls: list[_Call], error: Exception) -> None:
        for call in calls:
            call.result = outcome.Error(error)


def _reschedule(calls: list[_Call]) -> None:
    for call in calls:
        trio.lowlevel.reschedule(call.task, call.result)
