"""The contract's domain operations on one SQLite connection.

Used only by the storage's connection thread, which runs every operation inside a transaction
(see ``_thread``); the operations themselves never begin or commit.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import itertools
import json
import os
import sqlite3
import time
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from durable_core.status import ACTIVE_TASK_EXECUTION_STATUSES, FINISHED_TASK_EXECUTION_STATUSES
from durable_core.status import TaskExecutionStatus as S
from durable_core.storage import CANCELLED_ERROR, EXPIRED_ERROR, EXPIRED_TOO_OFTEN_ERROR, SLEEPING_TIMED_OUT_ERROR
from durable_core.storage import EXECUTOR_RETENTION, DuplicateSleepingTaskUniqueIdError, ExecutionRecord
from durable_core.storage import MAX_PRIORITY, ExecutorInfo, Lease, ListCursor, claim_within_limits
from durable_core.storage import RunCommit, SleepingWakeup, StatusChange, StorageError, cascade_error, transitions

from ._rows import COLUMNS, SELECT_COLUMNS, STATUSES, from_row, to_row
from ._schema import MIGRATIONS, check_header, migrate, schema_version


class StorageConnection(sqlite3.Connection):
    """A connection ``connect_for_caller`` made: known to be on the storage's file, so that
    inserting on it needs no check of which file it is on."""

    storage_path: Path | None = None


def _sql_list(statuses: frozenset[S]) -> str:
    return ", ".join(f"'{s}'" for s in sorted(statuses))


_ACTIVE = _sql_list(ACTIVE_TASK_EXECUTION_STATUSES)
_FINISHED = _sql_list(FINISHED_TASK_EXECUTION_STATUSES)

_SELECT = f"SELECT {SELECT_COLUMNS} FROM executions WHERE execution_id = ?"
_INSERT = f"INSERT INTO executions ({SELECT_COLUMNS}) VALUES ({', '.join('?' * len(COLUMNS))})"
_BY_SLEEPING_UNIQUE_ID = f"SELECT {SELECT_COLUMNS} FROM executions WHERE sleeping_unique_id = ?"
_BY_IDEMPOTENCY_KEY = f"SELECT {SELECT_COLUMNS} FROM executions WHERE task_id = ? AND idempotency_key = ?"
_SLEEPING_UNIQUE_ID_TAKEN = "SELECT 1 FROM executions WHERE sleeping_unique_id = ?"
_HOLDING = (
    "SELECT 1 FROM executions "
    "WHERE execution_id = ? AND lease_token = ? AND lease_expires_at IS NOT NULL"
)
_RENEW = (
    "UPDATE executions SET lease_expires_at = ? "
    "WHERE execution_id = ? AND lease_token = ? AND lease_expires_at IS NOT NULL AND NOT is_sleeping"
)
_EXECUTOR_COLUMNS = "executor_id, host, pid, started_at, heartbeat_at, running"
_STORE_EXECUTOR = f"INSERT OR REPLACE INTO executors ({_EXECUTOR_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
_FORGET_EXECUTORS = "DELETE FROM executors WHERE heartbeat_at < ?"
_LIVE_EXECUTORS = (
    f"SELECT {_EXECUTOR_COLUMNS} FROM executors WHERE heartbeat_at >= ? ORDER BY started_at, executor_id"
)
_TOP_PRIORITY = """
SELECT priority FROM executions WHERE task_id = ? AND queue = ? AND ready_at IS NOT NULL AND priority < ?
ORDER BY priority DESC LIMIT 1"""
"""One (task, queue)'s highest priority level below a bound with executions to claim, due or not: one
seek in the claim index (task_id, queue, priority, ready_at)."""
_CLAIMABLE = """
SELECT ready_at, rowid FROM executions WHERE task_id = ? AND queue = ? AND priority = ? AND ready_at <= ?
ORDER BY ready_at LIMIT ?"""
"""One (task, queue, priority)'s due executions, read in the order of the claim index."""
_CLAIMABLE_ANY = """
SELECT -priority, ready_at, rowid FROM executions
WHERE ready_at <= ? AND (? IS NULL OR task_id IN (SELECT value FROM json_each(?)))
    AND (? IS NULL OR queue IN (SELECT value FROM json_each(?)))
ORDER BY priority DESC, ready_at, rowid LIMIT ?"""
"""A claim that names no queues, or no tasks: not the engine's (it reads every due entry and sorts)."""
_ABOVE_ALL = MAX_PRIORITY + 1
_RUNNING = """
SELECT count(*) FROM executions
WHERE task_id = ? AND is_limited = 1 AND status = 'running' AND lease_expires_at IS NOT NULL"""
"""A task's running executions, from the partial index ``executions_running`` (``max_concurrency``):
the claims of limited tasks set ``is_limited``, so that no other execution enters that index."""
_STARTED = "SELECT count(*) FROM execution_starts WHERE task_id = ? AND started_at >= ?"
"""A task's starts since a time (``rate_limit``), each recorded by the claim that made it."""
_FORGET_STARTS = "DELETE FROM execution_starts WHERE task_id = ? AND started_at < ?"
_STARTS_KEPT = 86400.0
"""Seconds a start is kept at least: the longest period of a ``rate_limit`` ("N/d")."""
_RECORD_STARTS = """
INSERT INTO execution_starts (task_id, started_at, execution_id, lease_token)
SELECT task_id, :now, execution_id, lease_token + 1 FROM executions
WHERE rowid IN (SELECT value FROM json_each(:rowids)) AND +status = 'ready'
    AND +task_id IN (SELECT value FROM json_each(:rated))"""
"""The starts a claim is about to make (of ``ready`` records) of the rate-limited tasks (unary +:
look up the claimed rows, not the indexes on status or task)."""
_CLAIM_SETTING = """
UPDATE executions SET
    status = CASE status WHEN 'ready' THEN 'running' ELSE status END,
    started_at = CASE status WHEN 'ready' THEN :now ELSE started_at END,
    ready_at = NULL,
    executor_id = :executor_id,
    lease_token = lease_token + 1,
    lease_expires_at = :now + :lease_duration,
    updated_at = :now{}
WHERE rowid IN (SELECT value FROM json_each(:rowids))"""
_CLAIM = _CLAIM_SETTING.format("")
_CLAIM_LIMITED = _CLAIM_SETTING.format(
    ",\n    is_limited = is_limited OR task_id IN (SELECT value FROM json_each(:limited))")
"""A claim that flags the records of the tasks it limits: those the count of running ones reads."""
# not RETURNING: it hands back integral REAL values as ints
_CLAIMED = f"SELECT rowid, {SELECT_COLUMNS} FROM executions WHERE rowid IN (SELECT value FROM json_each(?))"
_EXPIRED = (
    "SELECT execution_id FROM executions WHERE lease_expires_at <= ? ORDER BY lease_expires_at LIMIT ?"
)
_CLOSE = """
UPDATE executions SET
    ready_at = CASE WHEN active_children_count = 1
        AND status IN ('waiting_for_children', 'waiting_for_finalize') THEN :now ELSE ready_at END,
    active_children_count = max(active_children_count - 1, 0),
    updated_at = :now
WHERE execution_id = :execution_id
RETURNING task_id, status"""
_SUBTREE = """
WITH RECURSIVE subtree (execution_id) AS (
    VALUES (?)
    UNION ALL
    SELECT e.execution_id FROM executions AS e JOIN subtree AS s ON e.parent_execution_id = s.execution_id
)"""
_ACTIVE_DESCENDANTS = f"""{_SUBTREE}
SELECT e.execution_id, e.task_id, e.status FROM subtree JOIN executions AS e USING (execution_id)
WHERE e.status IN ({_ACTIVE})"""
_CANCEL_DESCENDANT = """
UPDATE executions SET status = 'cancelled', error_type = :error_type, error_message = :message,
    error_is_retryable = :is_retryable, error_is_internal = :is_internal, error_type_name = NULL,
    error_traceback = NULL, finished_at = :now,
    ready_at = NULL, lease_expires_at = NULL, updated_at = :now
WHERE execution_id = :execution_id"""
_FINISHED_ROOTS = f"""
SELECT execution_id FROM executions
WHERE parent_execution_id IS NULL AND finished_at < ? AND +status IN ({_FINISHED})
ORDER BY finished_at LIMIT ?"""  # unary +: filter by status, but walk the retention index
_DELETE_TREE = f"DELETE FROM executions WHERE execution_id IN ({_SUBTREE} SELECT execution_id FROM subtree)"


@functools.lru_cache(maxsize=256)
def _write_query(columns: tuple[str, ...]) -> str:
    """Write ``columns`` and the time, and end the lease (a few distinct sets occur in practice)."""
    sets = "".join(f"{column} = ?, " for column in columns)
    return f"UPDATE executions SET {sets}updated_at = ?, lease_expires_at = NULL WHERE execution_id = ?"


def list_query(status_count: int | None, by_task: bool, by_executor: bool = False, after: bool = False,
               by_queue: bool = False) -> str:
    """``list_executions``: ``status_count`` statuses (None: any), then the task id, then the
    executor id, then the queue, then the cursor's created_at and execution id (``after`` a page),
    then the limit.
    Indexes on (filter, created_at, execution_id) serve each shape in order, without sorting."""
    conditions = [] if status_count is None else [f"status IN ({', '.join('?' * status_count)})"]
    conditions += ["task_id = ?"] if by_task else []
    conditions += ["executor_id = ?"] if by_executor else []
    conditions += ["queue = ?"] if by_queue else []
    conditions += ["(created_at, execution_id) < (?, ?)"] if after else []
    where = f"WHERE {' AND '.join(conditions)} " if conditions else ""
    return f"SELECT {SELECT_COLUMNS} FROM executions {where}ORDER BY created_at DESC, execution_id DESC LIMIT ?"


@functools.lru_cache(maxsize=64)
def _status_range(status: S, by_executor: bool, after: bool) -> str:
    """``list_query`` for one status, named in the text: each status's query is a statement of
    its own in the connection's cache, so that a listing's open cursors need no new statement."""
    return list_query(1, False, by_executor, after).replace("status IN (?)", f"status = '{status}'", 1)


_CREATED_AT = COLUMNS.index("created_at")


def _list_key(row: tuple[Any, ...]) -> tuple[float, str]:
    """The order of a listing (newest first when reversed): created_at, then the execution id."""
    return row[_CREATED_AT], row[0]


_COUNT_BY_STATUS = "SELECT status, count(*) FROM executions GROUP BY status"


_BUSY_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
_ROLLED_BACK_CODES = (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_NOMEM)
"""Errors after which SQLite may have rolled the whole transaction back by itself."""
_DAMAGED_CODES = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


_STATUS = COLUMNS.index("status")
_WRITTEN_END = COLUMNS.index("updated_at")
"""Columns before it are written from the record (the id aside); updated_at and the lease follow."""


def _holds(row: tuple[Any, ...], token: int) -> bool:
    """Whether the lease with ``token`` holds on the stored ``row`` (its last two columns)."""
    return row[-2] == token and row[-1] is not None


def _code(exc: sqlite3.Error) -> int | None:
    """The primary SQLite result code (None for errors of the sqlite3 module itself)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def _autocommit(conn: sqlite3.Connection) -> bool:
    """Whether ``conn`` commits each statement by itself: ``isolation_level=None`` in the legacy
    transaction control, or Python 3.12's ``autocommit=True``."""
    mode = getattr(conn, "autocommit", None)  # Python 3.12+: True, False or LEGACY_TRANSACTION_CONTROL
    return mode is True or (mode is not False and conn.isolation_level is None)


def is_busy(exc: sqlite3.Error) -> bool:
    return _code(exc) in _BUSY_CODES


_LOCK_WAITS = (0.00002, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002)
"""Seconds between tries for the write lock, the last repeated until the busy timeout."""


def begin_immediate(conn: sqlite3.Connection, busy_timeout: float) -> None:
    """``BEGIN IMMEDIATE`` on ``conn`` (whose own busy timeout is 0), waiting up to
    ``busy_timeout`` seconds for another connection's write lock, in steps of microseconds at
    first. Why not SQLite's own wait: it sleeps a whole millisecond at its first try, while the
    lock is usually held for less (another process's group commit, a client's enqueue); two
    processes writing at once would lose a millisecond each time they meet."""
    deadline = time.monotonic() + busy_timeout
    for attempt in itertools.count():
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if not is_busy(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(_LOCK_WAITS[min(attempt, len(_LOCK_WAITS) - 1)])


def ends_transaction(exc: sqlite3.Error) -> bool:
    """Whether the whole transaction failed: busy, or disk full or an I/O error (SQLite may have
    rolled it back, savepoints and all)."""
    return _code(exc) in _BUSY_CODES + _ROLLED_BACK_CODES


class Database:
    """One connection to ``path`` and the domain operations on it: the storage's own (``open``), or
    ``conn``, a caller's connection lent for one call (see ``insert_joining``)."""

    def __init__(self, path: Path, *, synchronous: str, busy_timeout: float, conn: sqlite3.Connection | None = None):
        self.path = path
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout
        self._conn = conn
        self._file: tuple[int, int] | None = None  # (device, inode) of the file opened

    def on(self, conn: sqlite3.Connection) -> Database:
        """The operations on ``conn``, a caller's connection to the same file (never closed here)."""
        return Database(self.path, synchronous=self.synchronous, busy_timeout=self.busy_timeout, conn=conn)

    @property
    def conn(self) -> sqlite3.Connection:
        assert self._conn is not None, "database is not open"
        return self._conn

    # ------------------------------------------------------------------ opening and errors

    def open(self) -> None:
        """Connect, refuse files that are not ours (touching nothing), then tune and migrate."""
        check_header(self.path)
        # used by its thread and, inline, by trio's (ConnectionThreads: never both at once)
        conn = self._conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None,
                                            check_same_thread=False)
        try:
            conn.execute("BEGIN")  # one snapshot: another process may be creating the schema
            version = schema_version(conn, self.path, MIGRATIONS)  # before anything is written
            conn.execute("COMMIT")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            conn.execute("PRAGMA secure_delete = OFF")
            if version < len(MIGRATIONS):
                conn.execute("BEGIN IMMEDIATE")  # again: another process may have migrated meanwhile
                migrate(conn, schema_version(conn, self.path, MIGRATIONS))
                conn.execute("COMMIT")
            conn.execute("PRAGMA busy_timeout = 0")  # writers wait in begin_immediate, readers never do
            self._file = self._identity()
        except BaseException:
            conn.close()
            self._conn = None
            raise

    def connect_for_caller(self) -> sqlite3.Connection:
        """A connection with this database's settings for a caller's thread (not shared with the
        storage's); not bound to the thread that made it, as the caller closes it from another."""
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, check_same_thread=False,
                               factory=StorageConnection)
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        conn.execute("PRAGMA busy_timeout = 0")  # its writes wait in begin_immediate
        conn.storage_path = self.path
        return conn

    def _identity(self) -> tuple[int, int] | None:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return None
        return stat.st_dev, stat.st_ino

    def check_file(self) -> None:
        """Raise a permanent ``StorageError`` if the file was deleted or replaced since it was
        opened: SQLite would go on writing to the old file, and every later write would be lost."""
        if self._file is not None and self._identity() != self._file:
            raise StorageError(
                f"SQLite database {self.path} was deleted or replaced while in use; this storage "
                "stops rather than write where no one reads. Restore the file, or start again on the new one.",
                is_retryable=False,
            )

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def error(self, exc: sqlite3.Error) -> StorageError:
        """The error a caller sees for ``exc``: it names the file and says what to do."""
        code = _code(exc)
        if code in _BUSY_CODES:
            return StorageError(
                f"SQLite database {self.path} stayed locked by another connection beyond the "
                f"busy timeout ({self.busy_timeout:g} s, retried); another process holds a long "
                "write transaction. Raise the storage option busy_timeout or shorten that transaction."
            )
        if code == sqlite3.SQLITE_FULL:
            return StorageError(f"SQLite database {self.path} cannot grow: the disk is full ({exc}); free some space.")
        if code in _DAMAGED_CODES:
            return StorageError(
                f"SQLite database {self.path} is damaged ({exc}); restore it from a backup.",
                is_retryable=False,
            )
        if code == sqlite3.SQLITE_CANTOPEN:
            return StorageError(
                f"Cannot open SQLite database {self.path} ({exc}); check that its directory exists "
                "and is writable.",
                is_retryable=False,
            )
        return StorageError(f"SQLite database {self.path}: {exc}")

    # ------------------------------------------------------------------ reads

    def get(self, execution_ids: Sequence[str]) -> list[ExecutionRecord | None]:
        return [self._get(execution_id) for execution_id in execution_ids]

    def get_by_sleeping_unique_id(self, unique_ids: Sequence[str]) -> list[ExecutionRecord | None]:
        return [self._one(_BY_SLEEPING_UNIQUE_ID, (unique_id,)) for unique_id in unique_ids]

    def list_records(self, statuses: Sequence[S] | None, task_id: str | None, executor_id: str | None,
                     limit: int, before: ListCursor | None, queue: str | None = None) -> list[ExecutionRecord]:
        if task_id is None and queue is None:
            every = tuple(STATUSES.values()) if statuses is None else statuses
            return self._list_by_status(every, executor_id, limit, before)
        filters = [value for value in (task_id, executor_id, queue) if value is not None]
        params = [*(str(status) for status in statuses or ()), *filters, *(before or ())]
        sql = list_query(None if statuses is None else len(statuses), task_id is not None, executor_id is not None,
                         before is not None, queue is not None)
        return [from_row(row) for row in self.conn.execute(sql, (*params, max(limit, 0)))]

    def _list_by_status(self, statuses: Sequence[S], executor_id: str | None, limit: int,
                        before: ListCursor | None) -> list[ExecutionRecord]:
        """Newest first across ``statuses``: each status's range of the status index read in
        order, lazily, and merged, so a page reads its rows and one more per status (no index on
        created_at alone for every write to update, no sort)."""
        filters = () if executor_id is None else (executor_id,)
        limit = max(limit, 0)
        cursors = [self.conn.execute(_status_range(status, executor_id is not None, before is not None),
                                     (*filters, *(before or ()), limit))
                   for status in dict.fromkeys(statuses)]
        try:
            newest = heapq.merge(*cursors, key=_list_key, reverse=True)
            return [from_row(row) for row in itertools.islice(newest, limit)]
        finally:
            for cursor in cursors:
                cursor.close()

    def count_by_status(self) -> dict[S, int]:
        return {S(status): count for status, count in self.conn.execute(_COUNT_BY_STATUS)}

    def find_revoked(self, leases: Sequence[Lease]) -> list[str]:
        """Asks only whether each lease holds: no payload is read."""
        return [
            lease.execution_id
            for lease in leases
            if self.conn.execute(_HOLDING, (lease.execution_id, lease.token)).fetchone() is None
        ]

    def list_executors(self, heartbeat_after: float) -> list[ExecutorInfo]:
        return [ExecutorInfo(*row) for row in self.conn.execute(_LIVE_EXECUTORS, (heartbeat_after,))]

    # ------------------------------------------------------------------ writes

    def renew(self, executor: ExecutorInfo, leases: Sequence[Lease], now: float, lease_duration: float) -> list[str]:
        expires_at = now + lease_duration
        lost = [lease.execution_id for lease in leases
                if self.conn.execute(_RENEW, (expires_at, lease.execution_id, lease.token)).rowcount == 0]
        self.conn.execute(_FORGET_EXECUTORS, (now - EXECUTOR_RETENTION,))
        self.conn.execute(_STORE_EXECUTOR, (executor.executor_id, executor.host, executor.pid, executor.started_at,
                                            executor.heartbeat_at, executor.running))
        return lost

    def insert(self, records: Sequence[ExecutionRecord]) -> list[ExecutionRecord]:
        return [self._insert(record) for record in records]

    def insert_joining(self, records: Sequence[ExecutionRecord]) -> list[ExecutionRecord]:
        """``insert`` on a caller's connection (``conn``), in the caller's transaction: inside a
        savepoint, so a failure undoes only this call. Not in a transaction, it begins one (``BEGIN
        IMMEDIATE``, as the caller's own first write would) and, in autocommit mode, commits it at
        once (there is no transaction of the caller's to join); on failure it rolls back what it began."""
        conn = self.conn
        began = not conn.in_transaction
        if not began:
            conn.execute("SAVEPOINT durable_insert")
        elif isinstance(conn, StorageConnection):  # made by connect_for_caller
            begin_immediate(conn, self.busy_timeout)
        else:
            conn.execute("BEGIN IMMEDIATE")
        try:
            stored = self.insert(records)
        except BaseException:
            with contextlib.suppress(sqlite3.Error):  # disk full, say: SQLite rolled back everything
                if began:
                    conn.execute("ROLLBACK")
                else:
                    conn.execute("ROLLBACK TO durable_insert")
                    conn.execute("RELEASE durable_insert")
            raise
        if not began:
            conn.execute("RELEASE durable_insert")
        elif _autocommit(conn):
            conn.execute("COMMIT")
        return stored

    def insert_now(self, records: Sequence[ExecutionRecord]) -> list[ExecutionRecord] | None:
        """``insert`` in a transaction of its own on ``conn`` (from ``connect_for_caller``: its busy
        timeout is 0), committed; None, and nothing written, if that would wait more than a fraction
        of a millisecond: for another connection's write lock, or for the disk (each commit syncs
        with ``synchronous`` FULL or EXTRA)."""
        if self.synchronous in ("FULL", "EXTRA"):
            return None
        conn = self.conn
        for wait in (*_LOCK_WAITS[:3], None):  # at most 170 µs: another writer's commit is often done by then
            try:
                conn.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError as exc:
                if not is_busy(exc):
                    raise
            if wait is None:
                return None
            time.sleep(wait)
        try:
            stored = self.insert(records)
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):  # disk full, say: SQLite rolled back already
                conn.execute("ROLLBACK")
            raise
        return stored

    def main_file(self) -> str:
        """The file of the connection's main database ("" for an in-memory or temporary one)."""
        file: str = next(row[2] for row in self.conn.execute("PRAGMA database_list") if row[1] == "main")
        return file

    def claim(self, executor_id: str, now: float, limit: int, lease_duration: float,
              task_ids: Collection[str] | None = None, queues: Collection[str] | None = None,
              limits: Mapping[str, int] | None = None,
              rates: Mapping[str, tuple[int, float]] | None = None) -> list[ExecutionRecord]:
        """Inside the write transaction (BEGIN IMMEDIATE): ``limits`` and ``rates`` are counted with
        the claim, which flags the records it claims of those tasks and records their starts."""
        limit = max(limit, 0)
        if (limits or rates) and task_ids is not None:
            limited = json.dumps(sorted({*(limits or ()), *(rates or ())}))
            rated = json.dumps(sorted(rates)) if rates else None
            return claim_within_limits(
                lambda tasks, n: self._claim(executor_id, now, n, lease_duration, tasks, queues, limited, rated),
                task_ids, limit, limits or {}, self._running, rates, functools.partial(self._started, now))
        return self._claim(executor_id, now, limit, lease_duration, task_ids, queues)

    def _claim(self, executor_id: str, now: float, limit: int, lease_duration: float,
               task_ids: Collection[str] | None, queues: Collection[str] | None,
               limited: str | None = None, rated: str | None = None) -> list[ExecutionRecord]:
        """Claim up to ``limit`` due records; those of the ``limited`` tasks (a JSON list) are
        flagged, and the starts of the ``rated`` ones recorded."""
        if task_ids is None or queues is None:
            tasks, listed = (None if names is None else json.dumps(list(names)) for names in (task_ids, queues))
            due = [row[1:] for row in self.conn.execute(_CLAIMABLE_ANY, (now, tasks, tasks, listed, listed, limit))]
        else:
            due = self._due([(task_id, queue) for task_id in task_ids for queue in queues], now, limit)
        rowids = [rowid for _, rowid in due]
        if not rowids:
            return []
        params = {"now": now, "executor_id": executor_id, "lease_duration": lease_duration, "rowids": str(rowids),
                  "limited": limited, "rated": rated}
        if rated is not None:
            self.conn.execute(_RECORD_STARTS, params)
        self.conn.execute(_CLAIM if limited is None else _CLAIM_LIMITED, params)
        claimed = {row[0]: from_row(row[1:]) for row in self.conn.execute(_CLAIMED, (params["rowids"],))}
        return [claimed[rowid] for rowid in rowids]

    def _running(self, task_ids: list[str]) -> dict[str, int]:
        """How many records of each of ``task_ids`` run holding a lease, from the index of those."""
        return {task_id: int(self.conn.execute(_RUNNING, (task_id,)).fetchone()[0]) for task_id in task_ids}

    def _started(self, now: float, task_id: str, period: float) -> int:
        """How many starts of ``task_id`` were recorded in the last ``period`` seconds; first
        forgets those older than a day (or the period, if longer) before ``now``."""
        self.conn.execute(_FORGET_STARTS, (task_id, now - max(period, _STARTS_KEPT)))
        return int(self.conn.execute(_STARTED, (task_id, now - period)).fetchone()[0])

    def _due(self, lanes: list[tuple[str, str]], now: float, limit: int) -> list[tuple[float, int]]:
        """Up to ``limit`` due executions of the (task, queue) ``lanes``: the highest priority
        level first, and in a level the earliest, from the claim index. One seek per lane finds
        its next level down, one range query per lane reads a level's due entries (at most
        ``limit``): never an entry that is not due, nor a level below those taken."""
        due: list[tuple[float, int]] = []
        tops = {lane: self._top_priority(lane, _ABOVE_ALL) for lane in lanes}
        while len(due) < limit:
            level = max((top for top in tops.values() if top is not None), default=None)
            if level is None:
                break
            at_level = [lane for lane, top in tops.items() if top == level]
            wanted = limit - len(due)
            due += heapq.nsmallest(wanted, itertools.chain.from_iterable(
                self.conn.execute(_CLAIMABLE, (*lane, level, now, wanted)) for lane in at_level))
            for lane in at_level:
                tops[lane] = self._top_priority(lane, level) if level > 0 else None
        return due

    def _top_priority(self, lane: tuple[str, str], below: int) -> int | None:
        row = self.conn.execute(_TOP_PRIORITY, (*lane, below)).fetchone()
        return None if row is None else int(row[0])

    def commit_runs(self, commits: Sequence[RunCommit], now: float) -> list[StatusChange]:
        changes: list[StatusChange] = []
        for commit in commits:
            record = commit.record
            stored = self._row(record.execution_id)
            if stored is None or not _holds(stored, record.lease_token):
                continue
            self._write_row(to_row(record), stored, now)
            previous = STATUSES[stored[_STATUS]]
            changes.append(StatusChange(record.execution_id, record.task_id, previous, record.status))
            for new in commit.new_executions:
                if self._insert(new) is new:
                    changes.append(StatusChange(new.execution_id, new.task_id, None, new.status))
            changes += self._after_finish(record, now)
        return changes

    def release(self, leases: Sequence[Lease], now: float) -> list[StatusChange]:
        changes: list[StatusChange] = []
        for lease in leases:
            stored = self._row(lease.execution_id)
            if stored is not None and _holds(stored, lease.token):
                changes.append(self._hand_back(from_row(stored), now))
        return changes

    def expire(self, now: float, max_lease_expirations: int, limit: int) -> list[StatusChange]:
        changes: list[StatusChange] = []
        for (execution_id,) in self.conn.execute(_EXPIRED, (now, max(limit, 0))).fetchall():
            record = self._get(execution_id)
            if record is None or record.lease_expires_at is None:
                continue  # finished by a cascade earlier in this call
            expirations = record.lease_expirations + 1
            if record.is_sleeping:
                changes += self._finish(record, now, status=S.TIMED_OUT, error=SLEEPING_TIMED_OUT_ERROR)
            elif expirations > max_lease_expirations:
                changes += self._finish(
                    record, now, status=S.FAILED, error=EXPIRED_TOO_OFTEN_ERROR, lease_expirations=expirations
                )
            elif record.status is S.RUNNING:
                changes.append(self._hand_back(record, now, lease_expirations=expirations, error=EXPIRED_ERROR))
            else:
                changes.append(self._hand_back(record, now, lease_expirations=expirations))
        return changes

    def cancel(self, execution_ids: Sequence[str], now: float) -> list[StatusChange]:
        changes: list[StatusChange] = []
        for execution_id in execution_ids:
            record = self._get(execution_id)
            if record is not None and not record.status.is_finished:
                changes += self._finish(record, now, status=S.CANCELLED, error=CANCELLED_ERROR)
        return changes

    def wake(self, wakeups: Sequence[SleepingWakeup], now: float) -> list[StatusChange]:
        changes: list[StatusChange] = []
        for wakeup in wakeups:
            record = self._get(wakeup.execution_id)
            if record is not None and record.is_sleeping and record.status is S.RUNNING:
                changes += self._finish(
                    record, now, status=S(wakeup.status), output=wakeup.output, error=wakeup.error
                )
        return changes

    def retry(self, execution_ids: Sequence[str], now: float) -> list[StatusChange]:
        changes: list[StatusChange] = []
        for execution_id in execution_ids:
            record = self._get(execution_id)
            if record is not None and transitions.accepts_retry(record):
                self._write(transitions.retry(record, now), record, now)
                changes.append(StatusChange(execution_id, record.task_id, record.status, S.READY))
        return changes

    def delete_finished(self, finished_before: float, limit: int) -> int:
        roots = self.conn.execute(_FINISHED_ROOTS, (finished_before, max(limit, 0))).fetchall()
        return sum(self.conn.execute(_DELETE_TREE, root).rowcount for root in roots)

    # ------------------------------------------------------------------ building blocks

    def _one(self, sql: str, params: tuple[object, ...]) -> ExecutionRecord | None:
        row = self.conn.execute(sql, params).fetchone()
        return None if row is None else from_row(row)

    def _row(self, execution_id: str) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self.conn.execute(_SELECT, (execution_id,)).fetchone()
        return row

    def _get(self, execution_id: str) -> ExecutionRecord | None:
        row = self._row(execution_id)
        return None if row is None else from_row(row)

    def _insert(self, record: ExecutionRecord) -> ExecutionRecord:
        """Insert ``record`` and return it, or return the stored record with its idempotency key."""
        if record.idempotency_key is not None:
            stored = self._one(_BY_IDEMPOTENCY_KEY, (record.task_id, record.idempotency_key))
            if stored is not None:
                return stored
        if record.sleeping_unique_id is not None and self.conn.execute(
            _SLEEPING_UNIQUE_ID_TAKEN, (record.sleeping_unique_id,)
        ).fetchone():
            raise DuplicateSleepingTaskUniqueIdError(record.sleeping_unique_id)
        try:
            self.conn.execute(_INSERT, to_row(record))
        except sqlite3.IntegrityError as exc:
            raise StorageError(
                f"Cannot insert execution {record.execution_id!r} into {self.path}: {exc}", is_retryable=False
            ) from exc
        return record

    def _write(self, new: ExecutionRecord, old: ExecutionRecord, now: float) -> None:
        self._write_row(to_row(new), to_row(old), now)

    def _write_row(self, new: tuple[Any, ...], old: tuple[Any, ...], now: float) -> None:
        """Store row ``new`` over the stored ``old`` as of ``now``, ending its lease (every write but
        a claim does). Only changed columns are written: each indexed one costs an index update."""
        changed = [i for i in range(1, _WRITTEN_END) if new[i] != old[i]]
        sql = _write_query(tuple(COLUMNS[i] for i in changed))
        self.conn.execute(sql, (*(new[i] for i in changed), now, new[0]))

    def _hand_back(self, record: ExecutionRecord, now: float, **changes: object) -> StatusChange:
        """End the lease of a claimed ``record`` so that it is claimed again at once."""
        if record.status is S.RUNNING:
            changes.update(status=S.READY, start_at=now)
        new = record.copy(ready_at=now, executor_id=None, **changes)
        self._write(new, record, now)
        return StatusChange(record.execution_id, record.task_id, record.status, new.status)

    def _finish(self, record: ExecutionRecord, now: float, **changes: object) -> list[StatusChange]:
        """Finish ``record`` with ``changes`` (status, error, output), with closure and cascade."""
        new = record.copy(finished_at=now, ready_at=None, **changes)
        self._write(new, record, now)
        change = StatusChange(record.execution_id, record.task_id, record.status, new.status)
        return [change, *self._after_finish(new, now)]

    def _after_finish(self, record: ExecutionRecord, now: float) -> list[StatusChange]:
        """Closure and cascading cancellation, if ``record`` (just written) is finished."""
        if not record.status.is_finished:
            return []
        changes = []
        if record.parent is not None:
            params = {"now": now, "execution_id": record.parent.execution_id}
            row = self.conn.execute(_CLOSE, params).fetchone()
            if row is not None:
                status = STATUSES[row[1]]
                changes.append(StatusChange(record.parent.execution_id, row[0], status, status))
        if record.status is not S.COMPLETED:
            changes += self._cascade(record, now)
        return changes

    def _cascade(self, ancestor: ExecutionRecord, now: float) -> list[StatusChange]:
        """Cancel every unfinished descendant of ``ancestor``, ending their leases."""
        descendants = self.conn.execute(_ACTIVE_DESCENDANTS, (ancestor.execution_id,)).fetchall()
        if not descendants:
            return []
        error = cascade_error(ancestor)
        common = {
            "error_type": error.error_type,
            "message": error.message,
            "is_retryable": error.is_retryable,
            "is_internal": error.is_internal,
            "now": now,
        }
        self.conn.executemany(
            _CANCEL_DESCENDANT, [{**common, "execution_id": execution_id} for execution_id, _, _ in descendants]
        )
        return [
            StatusChange(execution_id, task_id, STATUSES[status], S.CANCELLED)
            for execution_id, task_id, status in descendants
        ]
