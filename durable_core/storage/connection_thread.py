"""Connection threads: each owns one database connection and commits whatever is pending together.

Why: a blocking driver must run outside trio, and a trio-to-thread hop (~100 µs) costs more than a
SQLite commit or a simple statement on a nearby server, so one hop per storage call would be the
bottleneck. Instead trio tasks put their calls on a queue; a connection thread takes everything
pending, runs it in one transaction, commits once and hands every result back to trio in one
callback. A failing call rolls back only itself: the transaction runs without savepoints, which
are costly, and if a call fails, again with a savepoint around each call that can spoil it. With
several connections, one thread each serves the same queue.

Cancellation: a call whose caller is cancelled before a thread takes it is dropped and raises
``trio.Cancelled``; once taken it is applied wholly (or not at all, if its transaction fails) and
its caller receives the result, trio delivering the cancellation at the caller's next checkpoint.
So ``Cancelled`` always means "nothing was applied", and a claim is never lost. A backend that can
interrupt a transaction (``interruptible``) keeps that promise one step further: if *every*
caller of a transaction in flight is cancelled (an executor shutting down while the database waits
on a lock another process holds, say), the transaction is interrupted; if it then failed, nothing
was applied and the callers see ``Cancelled`` at once instead of waiting.

Inline: a backend whose transactions take microseconds and rarely wait (an embedded database)
may set ``inline``. Then the calls of one trio tick are not handed to a thread: a flusher task
runs them together, in one transaction, on the trio thread itself — when the connection is free
and the transaction can begin without waiting (``begin_nowait``); otherwise they go to the thread
as above. Group commit stays, and the two thread hops (more than the transaction costs) go.

Virtual time: a call in flight holds an autojumping ``trio.testing.MockClock`` still
(``durable_core.virtual_time``), so a test in virtual time never sees a storage call outlast its
timeouts and leases; on the real clock this costs nothing.

A backend subclasses ``ConnectionThreads`` and says how to run a transaction on its driver: the
hooks below (``begin``, ``commit``, ``rollback`` and ``disconnect`` at least). The SQLite and
PostgreSQL plugins are two examples.
"""

from __future__ import annotations

import enum
import functools
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import ClassVar, Generic, Protocol, TypeVar, cast

import outcome
import trio

from ..virtual_time import clock_held, current_clock_hold
from .contract import StorageError


class Executes(Protocol):
    """What calls run on inside a transaction (a connection or a cursor): savepoints are SQL."""

    def execute(self, statement: str, /) -> object: ...


C = TypeVar("C")
"""What a thread owns: its connection, or an object holding it."""
H = TypeVar("H", bound=Executes)
"""What calls run on inside a transaction."""
K = TypeVar("K")
"""What the backend knows of a call besides its function: read or write, whether to notify, ..."""
T = TypeVar("T")


class CallState(enum.Enum):
    PENDING = "pending"
    """Queued: its caller may still drop it."""
    TAKEN = "taken"
    """A thread runs it: its caller receives the result."""
    DROPPED = "dropped"
    """Its caller was cancelled before a thread took it: it never runs."""
    CANCELLED = "cancelled"
    """Taken, then its caller was cancelled (the result is still delivered)."""


class Call(Generic[K]):
    """One call of ``fn(*args)`` (or however the backend's ``run`` calls it), from a trio task."""

    __slots__ = ("fn", "args", "kind", "task", "state", "result", "flight")
    result: outcome.Outcome[object]
    """Set by the thread that took it, before it hands the call back."""

    def __init__(self, fn: Callable[..., object], args: tuple[object, ...], kind: K, task: trio.lowlevel.Task):
        self.fn = fn
        self.args = args
        self.kind = kind
        self.task = task
        self.state = CallState.PENDING
        self.flight: _Flight[K] | None = None  # set when taken, if the backend is interruptible


class _Flight(Generic[K]):
    """Calls a thread took together, and whether it was asked to interrupt them. ``lock`` keeps
    that request from reaching the connection once they are done."""

    __slots__ = ("calls", "conn", "lock", "done", "abandoned")

    def __init__(self, calls: list[Call[K]]):
        self.calls = calls
        self.conn: object = None  # the thread's, once running
        self.lock = threading.Lock()
        self.done = False
        self.abandoned = False


class _Unisolated(Exception):
    """A call failed in a transaction without savepoints."""


class _WouldWait(Exception):
    """An inline transaction would have waited for a lock: its calls go to the thread."""


class _Interrupted(Exception):
    """The transaction of a flight every caller of which was cancelled failed: nothing applied."""


def _reschedule(calls: list[Call[K]]) -> None:
    for call in calls:
        trio.lowlevel.reschedule(call.task, call.result)


def _fail(calls: list[Call[K]], error: Exception) -> None:
    for call in calls:
        call.result = outcome.Error(error)


class ConnectionThreads(ABC, Generic[C, H, K]):
    """Runs calls on one dedicated thread per connection, committing all pending calls together.

    The threads own ``connections`` from now on and serve calls until ``close``. ``name`` says
    what the calls run on, for messages ("sqlite storage of /data/durable.db"); ``max_retries``:
    how often a transaction failing with a ``retryable`` error runs again.
    """

    interruptible: ClassVar[bool] = False
    """Whether ``interrupt`` can abandon a transaction every caller of which was cancelled."""
    inline: ClassVar[bool] = False
    """Whether calls may run on the trio thread when the connection is free (module doc)."""
    inline_round_interval: ClassVar[float] = 0.001
    """Seconds between two ``after_round`` calls after inline rounds at least: one per round
    would cost a tenth of a small transaction, and what it watches needs no more."""
    max_backoff: ClassVar[float] = 0.1
    """Seconds between two runs of a retried transaction, at most (doubling from 2 ms)."""

    def __init__(self, connections: Sequence[C], *, name: str, thread_name: str, max_batch_size: int,
                 max_retries: int):
        self.name = name
        self._max_batch_size = max_batch_size
        self._max_retries = max_retries
        self.idle_timeout: float | None = None
        """While not None, ``after_round`` runs at least this often (seconds): a thread that waited
        that long for calls calls it, unless a round ran meanwhile or trio uses the connection."""
        self._last_round = 0.0  # time.monotonic() of the last round that called after_round
        self.trio_token = trio.lowlevel.current_trio_token()
        self._clock_hold = current_clock_hold()  # a call in flight is no idleness (``virtual_time``)
        self._queue: queue.SimpleQueue[Call[K] | None] = queue.SimpleQueue()  # None: a thread stops
        self._lock = threading.Lock()  # guards Call.state: taking versus dropping
        self._closed = False
        self._using = threading.Lock()  # held while a connection is used: by its thread, or inline
        self._forming: list[Call[K]] = []  # inline: the calls of this tick, for the flusher
        self._flush = trio.Event()
        if self.inline:
            assert len(connections) == 1, "inline calls share the one connection with its thread"
            self._inline_conn = connections[0]
            trio.lowlevel.spawn_system_task(self._flusher, name=f"{thread_name}:inline")
        self._threads = [
            threading.Thread(target=self._serve, args=(conn,), name=f"{thread_name}:{i}", daemon=True)
            for i, conn in enumerate(connections)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def closed(self) -> bool:
        return self._closed

    def closed_error(self) -> StorageError:
        return StorageError(f"The {self.name} is closed", is_retryable=False)

    async def call(self, kind: K, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn`` with ``args`` in a thread; a checkpoint, atomic also when cancelled (module doc)."""
        if self._closed:
            raise self.closed_error()
        await trio.lowlevel.checkpoint_if_cancelled()
        call = Call(fn, args, kind, trio.lowlevel.current_task())
        hold = self._clock_hold
        if hold is not None:
            hold.acquire()
        if self.inline and self.inline_allowed(call):
            self._forming.append(call)
            self._flush.set()
        else:
            self._queue.put(call)

        def abort(_: object) -> trio.lowlevel.Abort:
            with self._lock:
                if call.state is CallState.PENDING:
                    call.state = CallState.DROPPED
                    return trio.lowlevel.Abort.SUCCEEDED
                call.state = CallState.CANCELLED
            if call.flight is not None:
                self._abandon_if_all_cancelled(call.flight)
            return trio.lowlevel.Abort.FAILED

        try:
            result: T = await trio.lowlevel.wait_task_rescheduled(abort)
        except _Interrupted:
            await trio.lowlevel.checkpoint()  # raises Cancelled: this caller was cancelled
            raise StorageError(f"The {self.name} abandoned a call") from None
        finally:
            if hold is not None:
                hold.release()
        return result

    async def close(self) -> None:
        """Run what is queued, then close every connection and end the threads. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._flush.set()  # the flusher hands what is forming to the thread, and ends
        for _ in self._threads:
            self._queue.put(None)
        with trio.CancelScope(shield=True), clock_held():
            for thread in self._threads:
                await trio.to_thread.run_sync(thread.join)

    def _abandon_if_all_cancelled(self, flight: _Flight[K]) -> None:
        if flight.abandoned or not all(call.state is CallState.CANCELLED for call in flight.calls):
            return
        flight.abandoned = True
        trio.lowlevel.start_thread_soon(functools.partial(self._interrupt, flight), lambda _: None)

    async def _flusher(self) -> None:
        """Inline: once per tick in which calls were made, run them (module doc)."""
        while True:
            await self._flush.wait()
            self._flush = trio.Event()
            if not self._closed:
                await trio.lowlevel.cancel_shielded_checkpoint()  # the rest of the tick's calls join
            calls = [call for call in self._forming if call.state is CallState.PENDING]
            self._forming = []
            if calls and (self._closed or not self._run_inline(calls)):
                for call in calls:
                    self._queue.put(call)
            if self._closed:
                return

    def _run_inline(self, calls: list[Call[K]]) -> bool:
        """Run ``calls`` in one transaction on this thread, if the connection is free and the
        transaction need not wait; False if they must go to the thread instead."""
        if not self._queue.empty() or not self._using.acquire(blocking=False):
            return False  # the thread has calls before these, or is running some
        try:
            for call in calls:
                call.state = CallState.TAKEN
            try:
                self._transaction(self._inline_conn, calls, self.begin_nowait)
            except Exception as exc:
                if isinstance(exc, _WouldWait) or self.retryable(exc):  # rolled back: the thread waits
                    for call in calls:
                        call.state = CallState.PENDING
                    return False
                _fail(calls, self.error(exc))
            if time.monotonic() - self._last_round >= self.inline_round_interval:
                self._look(self._inline_conn)
        finally:
            self._using.release()
        _reschedule(calls)
        return True

    def inline_allowed(self, call: Call[K]) -> bool:
        """Whether ``call`` may run inline (``inline`` backends only)."""
        return True

    def begin_nowait(self, conn: C, calls: list[Call[K]]) -> H:
        """``begin``, on the trio thread: raise ``WouldWait`` (``would_wait()``) instead of waiting
        for a lock (``inline`` backends only)."""
        raise NotImplementedError

    @staticmethod
    def would_wait() -> Exception:
        """What ``begin_nowait`` raises when the transaction would have to wait."""
        return _WouldWait()

    # ------------------------------------------------------------------ hooks, called in a thread

    @abstractmethod
    def begin(self, conn: C, calls: list[Call[K]]) -> H:
        """Begin a transaction on ``conn`` for ``calls``; what they run on."""

    @abstractmethod
    def commit(self, handle: H, calls: list[Call[K]]) -> None:
        """Commit the transaction ``calls`` ran in."""

    @abstractmethod
    def rollback(self, handle: H) -> None:
        """Roll back the transaction, if the database did not already; never raises."""

    @abstractmethod
    def disconnect(self, conn: C) -> None:
        """Close ``conn``: its thread ends."""

    def run(self, handle: H, call: Call[K]) -> object:
        """Run ``call`` in a transaction on ``handle``."""
        return call.fn(*call.args)

    def spoils_transaction(self, call: Call[K]) -> bool:
        """Whether ``call``, failing, may leave changes or spoil the transaction: then it needs a
        savepoint to fail alone."""
        return True

    def fails_transaction(self, exc: Exception) -> bool:
        """Whether ``exc`` fails the whole transaction (lost connection, lock) rather than its call."""
        return False

    def retryable(self, exc: Exception) -> bool:
        """Whether a transaction that failed with ``exc`` should run again (``max_retries``)."""
        return False

    def error(self, exc: Exception) -> Exception:
        """The error a caller receives for ``exc`` (the driver's errors become ``StorageError``)."""
        return exc

    def interrupt(self, conn: C) -> None:
        """Ask the database to abandon the transaction running on ``conn`` (it fails); called from
        a thread of its own, only if ``interruptible``."""
        raise NotImplementedError

    def interrupted(self, exc: Exception) -> bool:
        """Whether ``exc`` is what ``interrupt`` makes a transaction fail with. A request to
        interrupt may reach the database after the transaction it was for has ended and fail the
        next one instead (PostgreSQL's cancel requests can): one not abandoned runs again."""
        return False

    def after_round(self, conn: C) -> None:
        """Called after each batch a thread ran (before its results are handed back), after
        inline batches at most every ``inline_round_interval``, and after ``idle_timeout`` without
        rounds: room for a backend's own watching (``trio_token`` reaches trio)."""

    def run_taken(self, conn: C, calls: list[Call[K]]) -> None:
        """Run the calls a thread took together: by default, in one transaction."""
        self.run_transaction(conn, calls)

    # ------------------------------------------------------------------ in a thread

    def run_transaction(self, conn: C, calls: list[Call[K]]) -> None:
        """Run ``calls`` in one transaction, ``retried``; if it fails, every call fails. Failed by
        an interruption (``interrupted``) that was not its own, it runs again too."""
        flight = calls[0].flight if calls else None
        try:
            self.retried(self._transaction, conn, calls, stray_interruption=lambda exc: self.interrupted(exc) and not (
                flight is not None and flight.abandoned))
        except Exception as exc:
            _fail(calls, self.error(exc))

    def retried(self, fn: Callable[..., T], *args: object,
                stray_interruption: Callable[[Exception], bool] | None = None) -> T:
        """``fn(*args)``, run again while it fails with a ``retryable`` error (or one
        ``stray_interruption`` says is), at most ``max_retries`` times."""
        retries = 0
        while True:
            try:
                return fn(*args)
            except Exception as exc:
                again = self.retryable(exc) or (stray_interruption is not None and stray_interruption(exc))
                if not again or retries == self._max_retries:
                    raise
                retries += 1
                time.sleep(min(0.001 * 2**retries, self.max_backoff))

    def _serve(self, conn: C) -> None:
        """Serve calls until told to stop (or the trio run ended), then close ``conn``."""
        try:
            while True:
                calls, stop = self._take()
                if calls:
                    with self._using:
                        if self.interruptible:
                            self._run_in_flight(conn, calls)
                        else:
                            self.run_taken(conn, calls)
                        self._look(conn)  # before the results: trio then runs without waiting for us
                    self.trio_token.run_sync_soon(_reschedule, calls)
                elif not stop:
                    self._idle_round(conn)
                if stop:
                    return
        except trio.RunFinishedError:  # the trio run ended without closing
            return
        finally:
            self.disconnect(conn)

    def _idle_round(self, conn: C) -> None:
        """``after_round`` after ``idle_timeout`` without calls, unless a round (inline, say) ran
        within it or trio is using the connection: waiting for that lock, this thread would hold
        it while it waits for the GIL, and trio's next calls would have to come here."""
        if time.monotonic() - self._last_round < (self.idle_timeout or 0.0):
            return
        if not self._using.acquire(blocking=False):
            self._last_round = time.monotonic()  # trio's round looks when it ends: wait an interval, not spin
            return
        try:
            self._look(conn)
        finally:
            self._using.release()

    def _look(self, conn: C) -> None:
        """``after_round``, noting when (the next idle look is due ``idle_timeout`` later)."""
        self.after_round(conn)
        self._last_round = time.monotonic()

    def _take(self) -> tuple[list[Call[K]], bool]:
        """Block for the next call (at most until ``idle_timeout`` after the last round), then take
        every call pending (up to the batch size); whether the thread is to stop after them."""
        timeout = self.idle_timeout
        if timeout is not None:  # wake when the next look is due, not a whole interval after this one
            timeout = max(self._last_round + timeout - time.monotonic(), 0.0001)
        try:
            items = [self._queue.get(timeout=timeout)]
        except queue.Empty:
            return [], False
        while len(items) < self._max_batch_size and items[-1] is not None:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        stop = items[-1] is None
        with self._lock:
            calls = [item for item in items if item is not None and item.state is CallState.PENDING]
            for call in calls:
                call.state = CallState.TAKEN
            if self.interruptible:
                flight = _Flight(calls)
                for call in calls:
                    call.flight = flight
        return calls, stop

    def _run_in_flight(self, conn: C, calls: list[Call[K]]) -> None:
        """``run_taken``, interrupted if every caller is cancelled meanwhile (module doc)."""
        flight = calls[0].flight
        assert flight is not None
        with flight.lock:
            flight.conn = conn
        self.run_taken(conn, calls)
        with flight.lock:
            flight.done = True
        if flight.abandoned and all(isinstance(call.result, outcome.Error) for call in calls):
            _fail(calls, _Interrupted())  # it failed (as asked): nothing was applied

    def _interrupt(self, flight: _Flight[K]) -> None:
        with flight.lock:
            if not flight.done and flight.conn is not None:
                self.interrupt(cast(C, flight.conn))

    def _transaction(self, conn: C, calls: list[Call[K]], begin: Callable[[C, list[Call[K]]], H] | None = None
                     ) -> None:
        """Run ``calls`` in one transaction (begun by ``begin``, by default ``self.begin``): without
        savepoints and, if a call that spoils the transaction fails, again with a savepoint around
        each such call."""
        isolated = False
        while True:
            handle = (begin or self.begin)(conn, calls)
            try:
                for call in calls:
                    self._apply(handle, call, isolated)
                self.commit(handle, calls)
                return
            except _Unisolated:
                self.rollback(handle)
                isolated = True
            except BaseException:
                self.rollback(handle)
                raise

    def _apply(self, handle: H, call: Call[K], isolated: bool) -> None:
        """Run one call. If it fails: ``fails_transaction`` errors propagate; a call that spoils
        the transaction raises ``_Unisolated``, or, ``isolated``, rolls back to its savepoint."""
        if isolated and self.spoils_transaction(call):
            handle.execute("SAVEPOINT call")
            try:
                call.result = outcome.Value(self.run(handle, call))
            except Exception as exc:
                if self.fails_transaction(exc):
                    raise
                handle.execute("ROLLBACK TO SAVEPOINT call")
                call.result = outcome.Error(self.error(exc))
            handle.execute("RELEASE SAVEPOINT call")
            return
        try:
            call.result = outcome.Value(self.run(handle, call))
        except Exception as exc:
            if self.fails_transaction(exc):
                raise
            if self.spoils_transaction(call):
                raise _Unisolated from exc
            call.result = outcome.Error(self.error(exc))
