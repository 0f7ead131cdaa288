"""The lane: inserts and run commits on a connection of their own, driven from trio's thread.

Why: one execution at a time, each enqueue and each commit is a transaction of its own, and the
connection threads (``_thread``) cost it more than the server does: a hop to the thread and back,
psycopg's cursor machinery (~100-200 µs of CPU per transaction), and a round trip per statement,
``pg_notify`` and commit. The lane talks to libpq directly (psycopg's ``pq`` layer, its adapters
for parameters and rows) in non-blocking pipeline mode, waiting for the socket with trio: no
thread, prepared statements, and a transaction in one round trip (every call's statements and
``pg_notify`` up to one sync: the server runs them as one implicit transaction, committed at the
sync, rolled back if one fails) where each call knows its statements up front (a ``Last``
wave: commits without children, and inserts, optimistically); else in two or more (``BEGIN`` and
every call's statements, then those depending on rows got back, then ``pg_notify`` and ``COMMIT``).
An optimistic insert is a plain ``INSERT``: if a row conflicts, the transaction fails, is rolled
back and runs again, not optimistically (idempotency twins are looked up then).

NOTIFY at most every ``NOTIFY_INTERVAL``: each costs the server a wake-up of every listening
session (~100 µs of server CPU with one), and a burst of transactions, say one per task done, is
one change to those waking on it. A transaction that tells within the interval after the last
NOTIFY leaves it owed: the next transaction after the interval sends it, or, if none comes, a
``pg_notify`` of its own once the interval has passed. Other processes learn of a change at most
``NOTIFY_INTERVAL`` later than its commit (an isolated one at once); correctness never depends on
the feed.

Group commit as in the threads: the calls of one trio tick, and those made while a transaction
is in flight, run together in the next, which waits two ticks after one ends for the calls its
results lead to (a producer's next insert, the commit of the run an insert started).
``Cancelled`` means "nothing was applied": a call is dropped if its caller is cancelled before
its transaction is sent; once sent its caller receives the result, unless every caller of the
transaction was cancelled, in which case the server is asked to abandon it (``cancel_safe``)
and, if it failed, the callers see ``Cancelled``. A call whose statements or code fail spoils the
transaction; it is rolled back and each call runs again alone, so only the culprit fails.
Deadlocks and serialization failures run the transaction again; a lost connection fails it (its
callers see a retryable error) and is opened again for the next.
"""

from __future__ import annotations

import functools
import logging
import operator
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import outcome
import psycopg
import trio
from psycopg import abc, pq
from psycopg.adapt import PyFormat, Transformer
from psycopg.errors import error_from_result

from durable_core.storage.connection_thread import CallState
from durable_core.storage.contract import StorageError
from durable_core.virtual_time import clock_held

from ._steps import Last, Row, Statement, Waves

log = logging.getLogger("durable_storage_postgres")
T = TypeVar("T")
_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%s|%%")
_MAX_PREPARED = 256
"""Prepared statements per connection at most (one per statement and parameter types); more are
sent unnamed."""
_RUN_AGAIN = (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected, psycopg.errors.QueryCanceled)
"""Errors after which a transaction runs again (``_retried``)."""
_BEGIN = Statement("BEGIN", ())
_COMMIT = Statement("COMMIT", ())
_ROLLBACK = Statement("ROLLBACK", ())
NOTIFY_INTERVAL = 0.002
"""Seconds between two NOTIFYs of the lane at least (module doc)."""


class _Call(Generic[T]):
    __slots__ = ("start", "tells", "task", "state", "result", "batch")
    result: outcome.Outcome[T]

    def __init__(self, start: Callable[[bool], Waves[T]], tells: bool, task: trio.lowlevel.Task):
        self.start = start
        self.tells = tells
        self.task = task
        self.state = CallState.PENDING
        self.batch: _Batch | None = None


class _Batch:
    """The calls of one transaction, and whether the server was asked to abandon it."""

    __slots__ = ("calls", "abandoned", "done")

    def __init__(self, calls: list[_Call[Any]]):
        self.calls = calls
        self.abandoned = False
        self.done = False


class _Spoiled(Exception):
    """A call's statements or code failed: the transaction is rolled back."""


class _Interrupted(Exception):
    """The transaction every caller of which was cancelled failed: nothing was applied."""


def _send(rows: list[list[Row]], waving: Waves[Any]) -> list[Statement]:
    return waving.send(rows)


@functools.lru_cache(maxsize=64)
def _numbered(sql: str) -> tuple[bytes, Callable[[Any], Sequence[Any]] | None]:
    """``sql`` with ``$n`` placeholders, and what gives the values of its parameters in order from
    a statement's: None if positional (``%s``), else a getter of its named parameters."""
    names: list[str] = []
    count = 0

    def number(match: re.Match[str]) -> str:
        nonlocal count
        if match.group(0) == "%%":
            return "%"
        name = match.group(1)
        if name is None:
            count += 1
            return f"${count}"
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    text = _PLACEHOLDER.sub(number, sql)
    assert not (names and count), "a statement has named or positional parameters, not both"
    if not names:
        return text.encode(), None
    getter = operator.itemgetter(*names)
    return text.encode(), (lambda params: (getter(params),)) if len(names) == 1 else getter


@functools.lru_cache(maxsize=64)
def _auto(n: int) -> tuple[PyFormat, ...]:
    return (PyFormat.AUTO,) * n


class Lane:
    """Runs calls (``Waves``) on ``conn`` from trio, committing pending calls together; see the
    module doc. ``connect`` opens another connection when it was lost; ``errors`` turns a psycopg
    error into the caller's ``StorageError``; ``channel`` is NOTIFY'd by transactions a call of
    which ``tells`` (None: never); ``own_pids`` learns the lane's server processes."""

    def __init__(self, conn: psycopg.Connection, *, connect: Callable[[], psycopg.Connection],
                 errors: Callable[[psycopg.Error], StorageError], channel: str | None, max_batch_size: int,
                 max_retries: int, cancel_timeout: float, name: str, own_pids: set[int],
                 writing: threading.Lock):
        self._connect = connect
        self._writing = writing
        self._errors = errors
        self._notify = None if channel is None else Statement("SELECT pg_notify(%s, '')", (channel,))
        self._max_batch_size = max_batch_size
        self._max_retries = max_retries
        self._cancel_timeout = cancel_timeout
        self._name = f"postgres storage of {name}"
        self._own_pids = own_pids
        self._conn: psycopg.Connection | None = None
        self._prepared: dict[tuple[bytes, tuple[int, ...]], bytes] = {}
        self._named = 0
        self._encoding = "utf-8"
        self._tx: abc.Transformer
        self._use(conn)
        self._forming: list[_Call[Any]] = []
        self._wake = trio.Event()
        self._closed = False
        self._done = trio.Event()
        self._notified = -float("inf")
        """When the last NOTIFY was sent (``trio.current_time()``)."""
        self._owed = False
        """Whether a transaction that tells committed since then without a NOTIFY."""
        trio.lowlevel.spawn_system_task(self._flusher, name=f"durable-postgres-lane:{name}")

    async def call(self, start: Callable[[bool], Waves[T]], tells: bool) -> T:
        """Run the waves ``start(optimistic)`` gives in the next transaction; a checkpoint, atomic
        also when cancelled (module doc). ``optimistic``: the waves may fail where they would need
        a wave more than planned (then ``start(False)`` runs). The transaction NOTIFYs if a call
        in it ``tells``."""
        if self._closed:
            raise StorageError(f"The {self._name} is closed", is_retryable=False)
        await trio.lowlevel.checkpoint_if_cancelled()
        call = _Call(start, tells, trio.lowlevel.current_task())
        self._forming.append(call)
        self._wake.set()

        def abort(_: object) -> trio.lowlevel.Abort:
            if call.state is CallState.PENDING:
                call.state = CallState.DROPPED
                return trio.lowlevel.Abort.SUCCEEDED
            call.state = CallState.CANCELLED
            batch = call.batch
            if batch is not None and not batch.done and not batch.abandoned and all(
                    c.state is CallState.CANCELLED for c in batch.calls):
                batch.abandoned = True
                trio.lowlevel.start_thread_soon(functools.partial(self._interrupt, self._conn), lambda _: None)
            return trio.lowlevel.Abort.FAILED

        with clock_held():
            try:
                result: T = await trio.lowlevel.wait_task_rescheduled(abort)
            except _Interrupted:
                await trio.lowlevel.checkpoint()  # raises Cancelled: this caller was cancelled
                raise StorageError(f"The {self._name} abandoned a call") from None
        return result

    async def aclose(self) -> None:
        """Run what is pending, then close the connection. Idempotent."""
        self._closed = True
        self._wake.set()
        with trio.CancelScope(shield=True):
            await self._done.wait()

    # ------------------------------------------------------------------ the flusher

    async def _flusher(self) -> None:
        try:
            while True:
                if self._owed:
                    with trio.move_on_at(self._notified + NOTIFY_INTERVAL):
                        await self._wake.wait()
                    if not self._wake.is_set():
                        await self._pay()
                        continue
                else:
                    await self._wake.wait()
                self._wake = trio.Event()
                if not self._closed:
                    await trio.lowlevel.cancel_shielded_checkpoint()  # the rest of the tick's calls join
                while self._forming:
                    calls = [call for call in self._forming[:self._max_batch_size] if call.state is CallState.PENDING]
                    del self._forming[:self._max_batch_size]
                    if calls:
                        await self._run(calls)
                    if self._forming and not self._closed:
                        # those the results woke make their next calls in the next two ticks (a
                        # producer its next insert, a run its commit): they join these, one
                        # transaction instead of two
                        for _ in range(2):
                            await trio.lowlevel.cancel_shielded_checkpoint()
                if self._closed:
                    if self._owed:
                        await self._pay()
                    return
        finally:
            if self._conn is not None:
                self._conn.close()
            self._done.set()

    async def _run(self, calls: list[_Call[Any]]) -> None:
        batch = _Batch(calls)
        for call in calls:
            call.state = CallState.TAKEN
            call.batch = batch
        if not self._writing.acquire(blocking=False):  # a connection thread writes: wait for it there
            with trio.CancelScope(shield=True), clock_held():
                await trio.to_thread.run_sync(self._writing.acquire)
        try:
            await self._run_holding(calls)
        finally:
            self._writing.release()
        batch.done = True
        if batch.abandoned and all(isinstance(call.result, outcome.Error) for call in calls):
            for call in calls:
                call.result = outcome.Error(_Interrupted())
        for call in calls:
            trio.lowlevel.reschedule(call.task, call.result)

    async def _run_holding(self, calls: list[_Call[Any]]) -> None:
        try:
            await self._retried(calls, optimistic=True)
        except _Spoiled as spoiled:
            if len(calls) == 1:
                calls[0].result = outcome.Error(self._error(spoiled.__cause__))
            else:
                for call in calls:  # again, one transaction each: only the culprit fails
                    await self._alone(call)
        except Exception as exc:
            for call in calls:
                call.result = outcome.Error(self._error(exc))

    async def _alone(self, call: _Call[Any]) -> None:
        try:
            await self._retried([call], optimistic=False)
        except _Spoiled as spoiled:
            call.result = outcome.Error(self._error(spoiled.__cause__))
        except Exception as exc:
            call.result = outcome.Error(self._error(exc))

    def _error(self, exc: BaseException | None) -> Exception:
        if isinstance(exc, psycopg.Error):
            return self._errors(exc)
        assert isinstance(exc, Exception)
        return exc

    async def _retried(self, calls: list[_Call[Any]], optimistic: bool) -> None:
        """``_transaction``, again after a deadlock, a serialization failure or a stray cancel
        (``max_retries``), or, not optimistic, after an optimistic one failed; ``_Spoiled`` if a
        call failed (not the connection or the transaction as a whole)."""
        retries = 0
        while True:
            try:
                return await self._transaction(calls, optimistic)
            except _RUN_AGAIN as exc:
                # a cancel request sent to abandon an earlier transaction may reach the server late and
                # cancel this one: unless this one was abandoned, it runs again
                batch = calls[0].batch
                abandoned = isinstance(exc, psycopg.errors.QueryCanceled) and batch is not None and batch.abandoned
                if abandoned or retries == self._max_retries:
                    raise
                retries += 1
                await trio.sleep(min(0.001 * 2**retries, 0.05))
            except psycopg.OperationalError:
                raise
            except psycopg.Error as exc:
                if not optimistic:
                    raise _Spoiled from exc
            except _Spoiled:
                if not optimistic:
                    raise
            optimistic = False

    async def _transaction(self, calls: list[_Call[Any]], optimistic: bool) -> None:
        """Run ``calls`` in one transaction: wave by wave, the first with ``BEGIN``; then NOTIFY
        and ``COMMIT`` (if every call's wave is ``Last``, in one exchange, an implicit transaction).
        Raises ``_Spoiled`` (rolled back) if a call failed, or the connection's error."""
        await self._usable()
        running = {i: call.start(optimistic) for i, call in enumerate(calls)}
        waves: dict[int, list[Statement]] = {}
        results: dict[int, Any] = {}
        tells = self._notify is not None and any(call.tells for call in calls)
        now = trio.current_time()
        notify = (tells or self._owed) and now >= self._notified + NOTIFY_INTERVAL
        notifying = [self._notify] if notify and self._notify else []
        try:
            for i, waving in running.items():
                self._step(i, waving, next, waves, results)
            if waves and all(type(wave) is Last for wave in waves.values()):
                # one exchange: the server runs it as one implicit transaction, committed at its sync
                # (rolled back if a statement fails), so it needs no BEGIN and COMMIT
                sent = [(i, len(wave)) for i, wave in waves.items()]
                rows = await self._exchange([*(s for w in waves.values() for s in w), *notifying])
                self._committed(tells, now if notify else None)
                self._last(calls, running, sent, rows, results)
                return
            first = True
            while waves:
                sent = [(i, len(wave)) for i, wave in waves.items()]
                rows = await self._exchange(([_BEGIN] if first else []) + [s for w in waves.values() for s in w])
                rows = rows[1:] if first else rows
                first = False
                waves = {}
                for i, n in sent:
                    mine, rows = rows[:n], rows[n:]
                    self._step(i, running[i], functools.partial(_send, mine), waves, results)
            if not first:  # else no call had a statement to run
                await self._exchange([*notifying, _COMMIT])
                self._committed(tells, now if notify else None)
        except BaseException:
            await self._rollback()
            raise
        for i, call in enumerate(calls):
            call.result = outcome.Value(results[i])

    def _committed(self, tells: bool, notified: float | None) -> None:
        """A transaction committed, NOTIFYing at ``notified`` (None: not), or leaving it owed if it ``tells``."""
        if notified is not None:
            self._notified = notified
            self._owed = False
        elif tells:
            self._owed = True

    async def _pay(self) -> None:
        """Send the NOTIFY owed, in a transaction of its own (module doc); if that fails, the
        others learn of the changes when they poll."""
        assert self._notify is not None
        self._committed(False, trio.current_time())
        try:
            await self._usable()
            await self._exchange([self._notify])
        except (psycopg.Error, StorageError) as exc:
            log.debug("the NOTIFY owed by %s failed: %s", self._name, exc)

    @staticmethod
    def _last(calls: list[_Call[Any]], running: dict[int, Waves[Any]], sent: list[tuple[int, int]],
              rows: list[list[Row]], results: dict[int, Any]) -> None:
        """The results of a transaction committed with its ``Last`` waves: a call failing now
        fails alone (nothing can be rolled back)."""
        for i, value in results.items():
            calls[i].result = outcome.Value(value)
        for i, n in sent:
            mine, rows = rows[:n], rows[n:]
            try:
                running[i].send(mine)
                calls[i].result = outcome.Error(RuntimeError(f"{calls[i].start} went on after a Last wave"))
            except StopIteration as done:
                calls[i].result = outcome.Value(done.value)
            except Exception as exc:
                calls[i].result = outcome.Error(exc)

    @staticmethod
    def _step(i: int, waving: Waves[Any], advance: Callable[[Waves[Any]], list[Statement]],
              waves: dict[int, list[Statement]], results: dict[int, Any]) -> None:
        try:
            waves[i] = advance(waving)
        except StopIteration as done:
            results[i] = done.value
        except Exception as exc:
            raise _Spoiled from exc

    async def _rollback(self) -> None:
        """End a failed transaction, if the connection is still there; on failure (cancelled, or
        the connection failing meanwhile) it is closed and opened again for the next."""
        conn = self._conn
        if (conn is None or conn.pgconn.status != pq.ConnStatus.OK
                or conn.pgconn.transaction_status == pq.TransactionStatus.IDLE):  # e.g. an implicit one, ended
            return
        try:
            with trio.CancelScope(shield=True):
                await self._exchange([_ROLLBACK])
        except psycopg.Error:  # then closed: opened again for the next transaction
            pass

    # ------------------------------------------------------------------ libpq

    def _use(self, conn: psycopg.Connection) -> None:
        conn.pgconn.nonblocking = 1
        conn.pgconn.enter_pipeline_mode()
        self._conn = conn
        self._prepared = {}
        self._named = 0
        self._encoding = conn.info.encoding
        self._tx = Transformer(conn)
        self._own_pids.add(conn.info.backend_pid)

    async def _usable(self) -> None:
        conn = self._conn
        if conn is not None and conn.pgconn.status == pq.ConnStatus.OK:
            return
        if conn is not None:
            self._own_pids.discard(conn.info.backend_pid)
            conn.close()
            self._conn = None
        try:
            with trio.CancelScope(shield=True), clock_held():
                opened = await trio.to_thread.run_sync(self._connect)
        except StorageError as exc:
            raise StorageError(f"Lost the connection of the {self._name}, and reconnecting failed: {exc.message}",
                               is_retryable=exc.is_retryable) from None
        self._use(opened)

    async def _exchange(self, statements: Sequence[Statement]) -> list[list[Row]]:
        """Send ``statements`` and a sync in one go; the rows of each. Raises the first
        statement's error (the server skipped the rest), ``OperationalError`` if the connection
        failed."""
        assert self._conn is not None
        pgconn = self._conn.pgconn
        tx = self._tx
        dumped = []  # everything first: a parameter that cannot be adapted sends nothing
        for sql, params, _ in statements:
            text, named = _numbered(sql)
            values = (params if named is None else named(params)) if params else ()
            if values:
                dumped.append((text, tx.dump_sequence(values, _auto(len(values))), tuple(tx.types or ()),
                               list(tx.formats or ())))
            else:
                dumped.append((text, [], (), []))
        replies: list[tuple[bytes, tuple[int, ...]] | None] = []  # per result to come: a PREPARE's key, or None
        for text, values, types, formats in dumped:
            key = (text, types)
            name = self._prepared.get(key)
            if name is None and len(self._prepared) < _MAX_PREPARED:
                self._named += 1
                name = self._prepared[key] = b"durable_%d" % self._named
                pgconn.send_prepare(name, text, param_types=types)
                replies.append(key)
            if name is None:
                pgconn.send_query_params(text, values, param_types=types, param_formats=formats)
            else:
                pgconn.send_query_prepared(name, values, param_formats=formats)
            replies.append(None)
        try:
            pgconn.pipeline_sync()
            while pgconn.flush():
                pgconn.consume_input()  # the server may wait for us to read before it reads on
                await trio.lowlevel.wait_writable(pgconn.socket)
            rows, error = await self._receive(pgconn, replies)
        except BaseException:  # results may be left unread: the connection is of no more use
            self._conn.close()
            raise
        if error is not None:
            raise error
        return rows

    async def _receive(self, pgconn: pq.abc.PGconn, replies: list[tuple[bytes, tuple[int, ...]] | None]
                       ) -> tuple[list[list[Row]], psycopg.Error | None]:
        """The rows of each statement up to the sync, and the first error."""
        tx = self._tx
        rows: list[list[Row]] = []
        error: psycopg.Error | None = None
        current: list[Row] | None = None
        replies.reverse()
        while True:
            pgconn.consume_input()
            while not pgconn.is_busy():
                result = pgconn.get_result()
                if result is None:  # the end of one command's results
                    if current is not None:
                        rows.append(current)
                        current = None
                    continue
                status = result.status
                if status == pq.ExecStatus.PIPELINE_SYNC:
                    return rows, error
                prepared = replies.pop()
                if prepared is not None:
                    if status != pq.ExecStatus.COMMAND_OK:  # failed or skipped: prepared next time
                        self._prepared.pop(prepared, None)
                    current = None
                else:
                    current = []
                    if status == pq.ExecStatus.TUPLES_OK and result.ntuples:
                        tx.set_pgresult(result)
                        current = tx.load_rows(0, result.ntuples, tuple)
                if status == pq.ExecStatus.FATAL_ERROR and error is None:
                    error = error_from_result(result, encoding=self._encoding)
            await trio.lowlevel.wait_readable(pgconn.socket)

    def _interrupt(self, conn: psycopg.Connection | None) -> None:
        """Ask the server to abandon the transaction in flight (every caller was cancelled)."""
        if conn is None:
            return
        try:
            conn.cancel_safe(timeout=self._cancel_timeout)
        except Exception as exc:  # the transaction then ends as it would have
            log.warning("asking %s to abandon a transaction failed: %s", self._name, exc)
