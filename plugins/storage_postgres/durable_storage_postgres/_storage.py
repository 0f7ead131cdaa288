"""``PostgresStorage``: the storage contract on one PostgreSQL schema, shared by any number of
executors on any number of machines."""

from __future__ import annotations

import functools
import re
import weakref
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, TypeVar

import psycopg
import trio
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus
from psycopg.rows import tuple_row

from durable_core.storage.contract import Capabilities, ExecutionRecord, RunCommit, StatusChange, StorageError
from durable_core.storage.opening import check_storage_options
from durable_core.storage.threaded_storage import ThreadedStorage
from durable_core.virtual_time import clock_held

from ._database import IDENTITY, Database, describe_identity
from ._lane import Lane
from ._listener import Listener
from ._schema import open_schema
from ._steps import Statement, Steps, run_steps, run_steps_async
from ._thread import Connections, Kind
from .plugin import OPTIONS

C = TypeVar("C", psycopg.Connection[Any], psycopg.AsyncConnection[Any])
_SCHEMA = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_TRANSIENT_CLASSES = ("08", "40", "53", "57")
"""SQLSTATE classes worth retrying: connection, rollback, resources, operator intervention."""
_REFUSED = ("authentication failed", "no pg_hba.conf entry", "does not exist", "password")
"""What the server says when it refuses a login for good (libpq gives no SQLSTATE for it): a
wrong password, role or database. Anything else (refused, unreachable, starting up, shutting
down, too many clients) may pass."""


def _invalid(name: str, value: object, expected: str) -> StorageError:
    return StorageError(f"Invalid postgres storage option {name}={value!r}: expected {expected}", is_retryable=False)


def describe(dsn: str) -> str:
    """Where ``dsn`` points, for messages: never the password. Raises on a malformed DSN."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise StorageError(
            f"Invalid postgres storage option dsn: {str(exc).strip()}; expected a libpq connection string "
            "('host=db.example dbname=app user=durable') or URI ('postgresql://durable@db.example/app')",
            is_retryable=False,
        ) from exc
    host = params.get("host") or params.get("hostaddr") or "localhost"
    port = f":{params['port']}" if params.get("port") else ""
    return f"PostgreSQL at {host}{port}/{params.get('dbname') or params.get('user') or '(default database)'}"


class PostgresStorage(ThreadedStorage[Kind]):
    """Executions in one schema of a PostgreSQL database. Open with ``await
    PostgresStorage.open(dsn)`` or ``open_storage("postgres", dsn=...)``; use it within the trio
    run that opened it."""

    read_kind = Kind.READ
    write_kind = Kind.QUIET
    claimable_write_kind = Kind.NOTIFY

    def __init__(self, database: Database, connections: Connections, lane: Lane, listener: Listener | None,
                 channel: str | None, connect: Callable[[], psycopg.Connection]):
        super().__init__(database, connections)
        self._lane = lane
        self._connect = connect
        self._own: weakref.WeakSet[psycopg.Connection] = weakref.WeakSet()
        """The connections ``connect`` made."""
        self.capabilities = Capabilities(persistent=True, multi_process=True,
                                         change_notifications=listener is not None, routing=True,
                                         concurrency_limits=True, rate_limits=True)
        self._listener = listener
        self._database = database  # only its immutable parts, from a caller's thread or event loop
        self._channel = channel  # NOTIFY'd by inserts in a caller's transaction (None: notify=False)

    @classmethod
    async def open(
        cls,
        dsn: str | None = None,
        *,
        schema: str = "durable",
        pool_size: int = 1,
        max_batch_size: int = 1000,
        connect_timeout: float = 10.0,
        notify: bool = True,
        max_retries: int = 5,
        application_name: str = "durable",
    ) -> PostgresStorage:
        """Connect, create or migrate ``schema``, and start the connection threads (and the
        listener); see the README for the options."""
        if not isinstance(dsn, str):
            raise StorageError(
                "The postgres storage needs the option dsn: a libpq connection string or URI, e.g. "
                "dsn='postgresql://durable@db.example/app'" + ("" if dsn is None else f" (got {dsn!r})"),
                is_retryable=False,
            )
        if not isinstance(schema, str) or not _SCHEMA.fullmatch(schema):
            raise _invalid("schema", schema, "a lowercase identifier: letters, digits and _, at most 63")
        check_storage_options("postgres", OPTIONS, {
            "pool_size": pool_size, "max_batch_size": max_batch_size, "connect_timeout": connect_timeout,
            "notify": notify, "max_retries": max_retries, "application_name": application_name,
        })
        where = describe(dsn)
        errors = functools.partial(_storage_error, where)
        connect = functools.partial(_connect, dsn, where, int(connect_timeout), application_name)
        channel = f"durable:{schema}"

        identity: list[tuple[Any, ...]] = []

        def first() -> psycopg.Connection:
            conn = connect()
            try:
                open_schema(conn, schema, where)
                with conn.transaction():
                    identity.extend(conn.execute(IDENTITY).fetchall())
            except BaseException:
                conn.close()
                raise
            return conn

        opened: list[psycopg.Connection] = []
        try:
            opened.append(await _in_thread(first, errors))
            for _ in range(pool_size):  # the last is the lane's
                opened.append(await _in_thread(connect, errors))
        except BaseException:
            for conn in opened:
                conn.close()
            raise
        connections = Connections(opened[:-1], connect=connect, errors=errors, channel=channel if notify else None,
                                  max_batch_size=max_batch_size, max_retries=max_retries,
                                  cancel_timeout=connect_timeout, name=where)
        lane = Lane(opened[-1], connect=connect, errors=errors, channel=channel if notify else None,
                    max_batch_size=max_batch_size, max_retries=max_retries, cancel_timeout=connect_timeout,
                    name=where, own_pids=connections.backend_pids, writing=connections.writing)
        listener = None
        if notify:
            listener = Listener(_autocommit(connect), channel, connections.backend_pids)
            try:
                await _in_thread_async(listener.start, errors)
            except BaseException:
                await lane.aclose()
                await connections.close()
                raise
        return cls(Database(schema, where, identity[0]), connections, lane, listener, channel if notify else None,
                   connect)

    async def insert_executions(self, records: Sequence[ExecutionRecord]) -> list[ExecutionRecord]:
        """On the lane (``_lane``); tells the other storage objects only of what may be claimed (a
        record claimed on insert is not)."""
        return await self._lane.call(functools.partial(self._database.insert_waves, records), _claimable(records))

    async def claim_executions(
        self, executor_id: str, now: float, limit: int, lease_duration: float, *,
        task_ids: Collection[str] | None = None, queues: Collection[str] | None = None,
        limits: Mapping[str, int] | None = None, rates: Mapping[str, tuple[int, float]] | None = None,
    ) -> list[ExecutionRecord]:
        """On a connection thread, beside the lane's transactions (``Kind.CLAIM``): a claim
        (``FOR UPDATE SKIP LOCKED``) never waits for a row the lane locked, so the two cannot
        deadlock, and a long claim does not hold up commits."""
        return await self._threads.call(Kind.CLAIM, self._database.claim, executor_id, now, limit, lease_duration,
                                        task_ids, queues, limits, rates)

    async def commit_runs(self, commits: Sequence[RunCommit], now: float) -> list[StatusChange]:
        """On the lane (``_lane``); tells the other storage objects (a commit whose lease was lost
        changes nothing: a NOTIFY too many)."""
        return await self._lane.call(lambda _: self._database.commit_waves(commits, now), bool(commits))

    async def wait_for_changes(self, seen: int | None) -> int:
        """The change feed (LISTEN/NOTIFY); only with the option ``notify`` (the default)."""
        if self._listener is None:
            raise StorageError("This postgres storage was opened with notify=False: it has no change feed",
                               is_retryable=False)
        return await self._listener.wait_for_changes(seen)

    def insert_executions_on(self, connection: Any, records: Sequence[ExecutionRecord]) -> list[ExecutionRecord]:
        """``insert_executions`` in the transaction of a caller's sync ``psycopg.Connection`` to this
        storage's database (``TransactionalInserts``; the README says how each transaction state
        is handled). Safe from any thread: it uses only ``connection`` and immutable settings."""
        conn = self._caller(connection, psycopg.Connection, "insert_executions_on")
        try:
            with conn.cursor(row_factory=tuple_row) as cur:
                if conn not in self._own:
                    self._check_identity(run_steps(cur, _identity()), "insert_executions_on")
                with conn.transaction():  # a savepoint in the caller's transaction
                    return run_steps(cur, self._database.caller_insert_steps(records, self._channel))
        except psycopg.Error as exc:
            raise _storage_error(self._database.where, exc) from exc

    def connect(self) -> psycopg.Connection:
        """A new connection to this storage's database with its settings (``TransactionalInserts``):
        known to be on it, so that inserting on it needs no check of which database it is on."""
        conn = self._connect()
        self._own.add(conn)
        return conn

    async def insert_executions_on_async(self, connection: Any, records: Sequence[ExecutionRecord]
                                         ) -> list[ExecutionRecord]:
        """The same on a caller's ``psycopg.AsyncConnection``, in its asyncio event loop."""
        conn = self._caller(connection, psycopg.AsyncConnection, "insert_executions_on_async")
        try:
            async with conn.cursor(row_factory=tuple_row) as cur:
                self._check_identity(await run_steps_async(cur, _identity()), "insert_executions_on_async")
                async with conn.transaction():
                    return await run_steps_async(cur, self._database.caller_insert_steps(records, self._channel))
        except psycopg.Error as exc:
            raise _storage_error(self._database.where, exc) from exc

    def _caller(self, connection: Any, kind: type[C], method: str) -> C:
        """``connection`` if it is of ``kind``, open, and its transaction usable."""
        if not isinstance(connection, kind):
            raise StorageError(_wrong_kind(connection, method), is_retryable=False)
        if connection.closed:
            raise StorageError(f"PostgresStorage.{method}: the connection is closed; pass an open one",
                               is_retryable=False)
        if connection.info.transaction_status is TransactionStatus.INERROR:
            raise StorageError(
                f"PostgresStorage.{method}: the caller's transaction is aborted (a statement in it failed); "
                "roll it back, then call again",
                is_retryable=False,
            )
        return connection

    def _check_identity(self, identity: tuple[Any, ...], method: str) -> None:
        if identity != self._database.identity:
            raise StorageError(
                f"PostgresStorage.{method}: the connection is on {describe_identity(identity)}, this storage "
                f"on {describe_identity(self._database.identity)} ({self._database.where}); pass a connection "
                "to the storage's database",
                is_retryable=False,
            )

    async def aclose(self) -> None:
        if self._listener is not None:
            await self._listener.aclose()
        await self._lane.aclose()
        await super().aclose()

    async def destroy(self) -> None:
        """Close the storage (if it is open) and drop its schema, with every table and row in it:
        for throwaway schemas, such as those the conformance suite's by-name route makes
        (``durable_conformance.Destroyable``). Works on a closed storage, from any trio run."""
        await self.aclose()

        def drop() -> None:
            with self._connect() as conn:  # committed when the block ends
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self._database.schema)))

        await _in_thread(drop, functools.partial(_storage_error, self._database.where))


_KINDS = {"insert_executions_on": ("a sync psycopg.Connection", psycopg.Connection, "the Client"),
          "insert_executions_on_async": ("a psycopg.AsyncConnection", psycopg.AsyncConnection, "the AsyncClient")}
"""What each method takes, and who calls it."""


def _wrong_kind(connection: object, method: str) -> str:
    kind = type(connection)
    message = (f"PostgresStorage.{method} takes {_KINDS[method][0]} (psycopg 3) to the storage's database, in "
               f"the caller's transaction; got {kind.__module__}.{kind.__qualname__}")
    other = next((name for name, (_, cls, _) in _KINDS.items() if isinstance(connection, cls)), None)
    if other is not None:
        message += f": for that, call {other} ({_KINDS[other][2]})"
    return message


def _claimable(records: Sequence[ExecutionRecord]) -> bool:
    """Whether inserting ``records`` may make work claimable (an idempotency twin found instead
    of one is a NOTIFY too many)."""
    return any(record.ready_at is not None for record in records)


def _identity() -> Steps[tuple[Any, ...]]:
    rows = yield Statement(IDENTITY, ())
    return tuple(rows[0])


def _connect(dsn: str, where: str, connect_timeout: int, application_name: str) -> psycopg.Connection:
    try:
        return psycopg.connect(dsn, connect_timeout=connect_timeout, application_name=application_name)
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise StorageError(
            f"Cannot connect to {where}: {reason}. Check the storage option dsn and that the server "
            "is running and reachable.",
            is_retryable=not any(refusal in reason for refusal in _REFUSED),
        ) from exc


def _autocommit(connect: Callable[[], psycopg.Connection]) -> Callable[[], psycopg.Connection]:
    def connected() -> psycopg.Connection:
        conn = connect()
        conn.autocommit = True
        return conn

    return connected


def _storage_error(where: str, exc: psycopg.Error) -> StorageError:
    """The error a caller sees for ``exc``: it names the server and says whether to retry."""
    state = exc.sqlstate or ""
    transient = isinstance(exc, psycopg.OperationalError) or state[:2] in _TRANSIENT_CLASSES
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return StorageError(f"{where}: {message}" + (f" (SQLSTATE {state})" if state else ""),
                        is_retryable=transient)


async def _in_thread(fn: Callable[[], Any], errors: Callable[[psycopg.Error], StorageError]) -> Any:
    """``fn()`` in a thread, waited for also if cancelled (so no connection is leaked)."""
    with trio.CancelScope(shield=True), clock_held():
        try:
            return await trio.to_thread.run_sync(fn)
        except psycopg.Error as exc:
            raise errors(exc) from exc


async def _in_thread_async(fn: Callable[[], Any], errors: Callable[[psycopg.Error], StorageError]) -> None:
    try:
        await fn()
    except psycopg.Error as exc:
        raise errors(exc) from exc
