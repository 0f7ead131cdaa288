"""The contract's domain operations as set-based PostgreSQL statements.

Used by the storage's connection threads and its lane, which run every operation inside a
transaction (see ``_thread`` and ``_lane``); the operations never begin or commit. Inserts and
run commits are ``Waves`` (``_steps``), so that the lane sends the statements of many calls
together. Every write locks the rows it changes
(``FOR UPDATE``, or ``FOR UPDATE SKIP LOCKED`` when claiming and expiring), and every fenced
write checks the lease in the same statement that writes, so one round trip does both. Batches
are pipelined (psycopg's pipeline mode): the statements of a batch go to the server together, run
in order there, and cost one round trip, not one per element.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import psycopg

from durable_core.errors import ErrorInfo
from durable_core.status import ERRORED_TASK_EXECUTION_STATUSES, FINISHED_TASK_EXECUTION_STATUSES
from durable_core.status import TaskExecutionStatus as S
from durable_core.storage import CANCELLED_ERROR, EXPIRED_ERROR, EXPIRED_TOO_OFTEN_ERROR, SLEEPING_TIMED_OUT_ERROR
from durable_core.storage import EXECUTOR_RETENTION, DuplicateSleepingTaskUniqueIdError, ExecutionRecord
from durable_core.storage import MAX_PRIORITY, ExecutorInfo, Lease, ListCursor, Payload, claim_within_limits
from durable_core.storage import RunCommit, SleepingWakeup, StatusChange, StorageError, cascade_error

from ._rows import COLUMNS, KEPT, STATUSES, from_row, to_row
from ._steps import Last, Statement, Steps, Waves, run_steps, run_waves, waves_of

_FINISHED = ", ".join(f"'{s}'" for s in sorted(FINISHED_TASK_EXECUTION_STATUSES))
_ERRORED = ", ".join(f"'{s}'" for s in sorted(ERRORED_TASK_EXECUTION_STATUSES))
_PRIORITY = 1 + COLUMNS.index("priority")
"""Where a claimed row has its priority (after the ``ready_at`` it was claimed at)."""
_WRITTEN = tuple(i for i, column in enumerate(COLUMNS) if column not in KEPT)
"""Positions in a row of the columns a commit writes."""
_WRITTEN_VALUES = operator.itemgetter(*_WRITTEN)
_WRITTEN_NAMES = tuple(f"r_{COLUMNS[i]}" for i in _WRITTEN)
"""The parameters of a commit's statement with the values of ``_WRITTEN_VALUES(row)``."""
_CLOSE_SET = """ready_at = CASE WHEN active_children_count = 1
        AND status IN ('waiting_for_children', 'waiting_for_finalize') THEN %(now)s ELSE ready_at END,
    active_children_count = greatest(active_children_count - 1, 0),
    updated_at = %(now)s"""
"""Closure: one child of the parent finished (the contract's rule for ``ready_at``)."""


_STARTS_KEPT = 86400.0
"""Seconds a start is kept at least: the longest period of a ``rate_limit`` ("N/d")."""


_ERROR_COLUMNS = ("error_type", "error_message", "error_is_retryable", "error_is_internal", "error_type_name",
                  "error_traceback")
_ERROR_SETS = ", ".join(f"{column} = %({column})s" for column in _ERROR_COLUMNS)
"""Store the error of ``_error_params``."""
_EXPIRED_ERROR_SETS = ",\n    ".join(
    f"{c} = CASE WHEN %(expired)s = 1 AND e.status = 'running' THEN %({c})s ELSE e.{c} END" for c in _ERROR_COLUMNS)
"""Handing back: an expired running execution gets the error of ``_error_params``, others keep theirs."""


def _error_params(error: ErrorInfo | None) -> dict[str, Any]:
    if error is None:
        return dict.fromkeys(_ERROR_COLUMNS)
    values = (error.error_type, error.message, error.is_retryable, error.is_internal, error.type_name,
              error.traceback)
    return dict(zip(_ERROR_COLUMNS, values, strict=True))


def _payload_params(payload: Payload | None) -> dict[str, Any]:
    return {"output_serializer": payload and payload.serializer, "output": payload and payload.data}


class Queries:
    """The statements of one schema (a validated identifier, so it is safe to interpolate)."""

    def __init__(self, schema: str):
        t = f'"{schema}".executions'
        cols = ", ".join(COLUMNS)
        self.cols = cols
        self.table = t
        self.get = f"SELECT {cols} FROM {t} WHERE execution_id = ANY(%s)"
        self.by_sleeping_unique_id = f"SELECT {cols} FROM {t} WHERE sleeping_unique_id = ANY(%s)"
        self.by_idempotency_key = f"SELECT {cols} FROM {t} WHERE task_id = %s AND idempotency_key = %s"
        self.sleeping_unique_id_taken = f"SELECT 1 FROM {t} WHERE sleeping_unique_id = %s"
        self.count_by_status = f"SELECT status, count(*) FROM {t} GROUP BY status"
        self.revoked = f"""
SELECT l.execution_id FROM unnest(%s::text[], %s::bigint[]) WITH ORDINALITY AS l (execution_id, token, n)
LEFT JOIN {t} AS e ON e.execution_id = l.execution_id AND e.lease_token = l.token
    AND e.lease_expires_at IS NOT NULL
WHERE e.execution_id IS NULL ORDER BY l.n"""
        self.renew = f"""
WITH r AS (
    UPDATE {t} AS e SET lease_expires_at = %s
    FROM unnest(%s::text[], %s::bigint[]) AS l (execution_id, token)
    WHERE e.execution_id = l.execution_id AND e.lease_token = l.token AND e.lease_expires_at IS NOT NULL
        AND NOT e.is_sleeping
    RETURNING e.execution_id, e.lease_token
)
SELECT l.execution_id FROM unnest(%s::text[], %s::bigint[]) WITH ORDINALITY AS l (execution_id, token, n)
WHERE (l.execution_id, l.token) NOT IN (SELECT execution_id, lease_token FROM r) ORDER BY l.n"""
        x = f'"{schema}".executors'
        starts = f'"{schema}".execution_starts'
        executor_columns = "executor_id, host, pid, started_at, heartbeat_at, running"
        self.forget_executors = f"DELETE FROM {x} WHERE heartbeat_at < %s"
        self.store_executor = f"""
INSERT INTO {x} ({executor_columns}) VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (executor_id) DO UPDATE SET (host, pid, started_at, heartbeat_at, running) =
    (EXCLUDED.host, EXCLUDED.pid, EXCLUDED.started_at, EXCLUDED.heartbeat_at, EXCLUDED.running)"""
        self.live_executors = (
            f"SELECT {executor_columns} FROM {x} WHERE heartbeat_at >= %s ORDER BY started_at, executor_id")
        claim = f"""
UPDATE {t} AS e SET
    status = CASE e.status WHEN 'ready' THEN 'running' ELSE e.status END,
    started_at = CASE e.status WHEN 'ready' THEN %(now)s ELSE e.started_at END,
    ready_at = NULL,
    executor_id = %(executor_id)s,
    lease_token = e.lease_token + 1,
    lease_expires_at = %(now)s + %(lease_duration)s,
    updated_at = %(now)s{{limited}}
FROM ({{}}) AS c
WHERE e.execution_id = c.execution_id
RETURNING c.ready_at, {", ".join(f"e.{c}" for c in COLUMNS)}"""
        top = f"""SELECT max(top.priority) FROM lanes CROSS JOIN LATERAL (
        SELECT priority FROM {t} WHERE task_id = lanes.task_id AND queue = lanes.queue AND ready_at IS NOT NULL
            AND priority < {{}} ORDER BY priority DESC LIMIT 1) AS top"""
        claim_by_task = f"""
WITH RECURSIVE lanes AS (
    SELECT k.task_id, q.queue FROM unnest(%(task_ids)s::text[]) AS k (task_id) CROSS JOIN unnest(%(queues)s::text[]) AS q (queue)
), levels (priority) AS (
    {top.format('%(above_all)s')}
    UNION ALL
    SELECT ({top.format('levels.priority')}) FROM levels WHERE levels.priority > 0
)
SELECT c.execution_id, c.ready_at FROM levels CROSS JOIN LATERAL (
    SELECT d.execution_id, d.ready_at FROM lanes CROSS JOIN LATERAL (
        SELECT execution_id, ready_at FROM {t}
        WHERE task_id = lanes.task_id AND queue = lanes.queue AND priority = levels.priority AND ready_at <= %(now)s
        ORDER BY ready_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED) AS d
    ORDER BY d.ready_at LIMIT %(limit)s) AS c
WHERE levels.priority IS NOT NULL
LIMIT %(limit)s"""
        self.claim = claim.format(claim_by_task, limited="")
        """The priority levels of the (task, queue)s claimed from, highest first, each found by one
        seek per (task, queue) in the claim index (task_id, queue, priority, ready_at); of each level
        the earliest due executions, until ``limit``. PostgreSQL evaluates a recursive query only as
        far as its rows are fetched, and the LIMIT stops fetching: the levels below those claimed
        are never read, nor any entry not due. Each range locks up to ``limit`` rows until the
        transaction ends, of which only the earliest in all are claimed: with several busy tasks
        other claimers skip a few more rows for that short while."""
        self.lock_task = "SELECT pg_advisory_xact_lock(hashtext('durable:' || %s))"
        """Serializes the claims of a limited task until the transaction ends."""
        flag = ",\n    is_limited = e.is_limited OR e.task_id = ANY(%(limited)s::text[])"

        def limited(claim_from: str) -> str:
            """The claim from ``claim_from``, flagging the records it claims of the ``limited``
            tasks (those the count of running ones reads) and recording the starts it makes of the
            ``rated`` ones (a claimed record is ``running`` now only if it was ``ready``: a start)."""
            return f"""
WITH c AS ({claim.format(claim_from, limited=flag)}
), s AS (
    INSERT INTO {starts} (task_id, started_at, execution_id, lease_token)
    SELECT task_id, %(now)s, execution_id, lease_token FROM c
    WHERE status = 'running' AND task_id = ANY(%(rated)s::text[])
)
SELECT * FROM c"""

        self.claim_limited = limited(claim_by_task)
        self.running = (f"SELECT count(*) FROM {t} "
                        "WHERE task_id = %s AND is_limited AND status = 'running' AND lease_expires_at IS NOT NULL")
        """A limited task's running executions (partial index ``executions_running``: the claims of
        limited tasks set ``is_limited``, so no other execution enters it): a statement of its own
        after ``lock_task``, so that its snapshot sees what the claimer before committed."""
        self.forget_starts = f"DELETE FROM {starts} WHERE task_id = %s AND started_at < %s"
        self.started = f"SELECT count(*) FROM {starts} WHERE task_id = %s AND started_at >= %s"
        """A rate-limited task's starts since a time, each recorded by the claim that made it, also
        counted after ``lock_task``."""
        claim_any = f"""
SELECT execution_id, ready_at FROM {t}
WHERE ready_at <= %(now)s AND (%(task_ids)s::text[] IS NULL OR task_id = ANY(%(task_ids)s))
    AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s))
ORDER BY priority DESC, ready_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED"""
        self.claim_any = claim.format(claim_any, limited="")
        """A claim that names no queues, or no tasks: not the engine's (it reads every due entry and sorts)."""
        self.claim_any_limited = limited(claim_any)
        self.close = f"UPDATE {t} SET {_CLOSE_SET} WHERE execution_id = %(execution_id)s RETURNING task_id, status"
        self.cascade = "WITH RECURSIVE {}\n{}\nRETURNING e.execution_id, e.task_id, old.status".format(*self._cascading(""))
        self.expired = f"""
SELECT execution_id, is_sleeping, lease_expirations FROM {t}
WHERE lease_expires_at <= %s ORDER BY lease_expires_at LIMIT %s FOR UPDATE SKIP LOCKED"""
        self.finished_roots = f"""
SELECT execution_id FROM {t}
WHERE parent_execution_id IS NULL AND finished_at < %s AND status IN ({_FINISHED})
ORDER BY finished_at LIMIT %s"""
        self.retry = f"""
UPDATE {t} AS e SET status = 'ready', start_at = %(now)s, ready_at = %(now)s, updated_at = %(now)s,
    retry_attempts = e.retry_attempts + 1, lease_expirations = 0, output_serializer = NULL, output = NULL,
    run_output_serializer = NULL, run_output = NULL, finalize_task_id = NULL, finalize_execution_id = NULL,
    children = NULL, active_children_count = 0, finished_at = NULL, waiting_for_children_started_at = NULL,
    waiting_for_finalize_started_at = NULL, executor_id = NULL, lease_expires_at = NULL
FROM (SELECT execution_id, status FROM {t}
      WHERE execution_id = ANY(%(ids)s) AND status IN ({_ERRORED}) AND parent_execution_id IS NULL
        AND NOT is_sleeping FOR UPDATE) AS o
WHERE e.execution_id = o.execution_id
RETURNING e.execution_id, e.task_id, o.status, e.status"""
        self.delete_trees = f"""
WITH RECURSIVE tree (execution_id) AS (
    SELECT unnest(%s::text[])
    UNION ALL
    SELECT e.execution_id FROM {t} AS e JOIN tree AS s ON e.parent_execution_id = s.execution_id
)
DELETE FROM {t} WHERE execution_id IN (SELECT execution_id FROM tree)"""
        # one execution: cancelling, waking, expiring and failing finish it with closure and cascade
        self._finish_sets = f"""status = %(status)s, {_ERROR_SETS},
    lease_expirations = e.lease_expirations + %(expired)s,
    finished_at = %(now)s, ready_at = NULL, lease_expires_at = NULL, updated_at = %(now)s"""

    def _cascading(self, guard: str) -> tuple[str, str]:
        """The CTEs and the UPDATE that cancel the unfinished descendants of ``%(execution_id)s``
        (``guard``: a further condition on starting the walk)."""
        t = self.table
        return f"""subtree (execution_id) AS (
    SELECT execution_id FROM {t} WHERE parent_execution_id = %(execution_id)s{guard}
    UNION ALL
    SELECT e.execution_id FROM {t} AS e JOIN subtree AS s ON e.parent_execution_id = s.execution_id
), old AS (
    SELECT e.execution_id, e.status FROM {t} AS e JOIN subtree USING (execution_id)
    WHERE e.status NOT IN ({_FINISHED}) FOR UPDATE OF e
)""", f"""UPDATE {t} AS e SET status = 'cancelled', {_ERROR_SETS},
    finished_at = %(now)s, ready_at = NULL, lease_expires_at = NULL, updated_at = %(now)s
FROM old WHERE e.execution_id = old.execution_id AND e.status NOT IN ({_FINISHED})"""

    @functools.lru_cache(maxsize=8)
    def commit_run(self, close: bool, cascade: bool) -> str:
        """One commit as one statement: the fenced write of ``%(execution_id)s`` and, only if its
        lease held, the closure of ``%(parent)s`` and the cascade, as rows ``(step, a, b, c)``:
        ``(0, previous status)``, ``(1, parent task id, parent status)``, ``(2, id, task id,
        previous status)`` for each cancelled descendant. One statement, so pipelining commits
        keeps them in order: each sees what the commits before it did."""
        t = self.table
        written = [COLUMNS[i] for i in _WRITTEN]
        steps = [f"""WITH RECURSIVE o AS (
    SELECT execution_id, status FROM {t}
    WHERE execution_id = %(execution_id)s AND lease_token = %(lease_token)s AND lease_expires_at IS NOT NULL
    FOR UPDATE
), c AS (
    UPDATE {t} AS e SET ({", ".join(written)}) = ({", ".join(f"%(r_{c})s" for c in written)}),
        updated_at = %(now)s, lease_expires_at = NULL
    FROM o WHERE e.execution_id = o.execution_id
    RETURNING o.status
)"""]
        rows = ["SELECT 0, status, NULL, NULL FROM c"]
        if close:
            steps.append(f"""p AS (
    UPDATE {t} SET {_CLOSE_SET} WHERE execution_id = %(parent)s AND EXISTS (SELECT FROM c)
    RETURNING task_id, status
)""")
            rows.append("SELECT 1, task_id, status, NULL FROM p")
        if cascade:
            ctes, update = self._cascading(" AND EXISTS (SELECT FROM c)")
            steps += [ctes, f"d AS (\n{update}\nRETURNING e.execution_id, e.task_id, old.status\n)"]
            rows.append("SELECT 2, execution_id, task_id, status FROM d")
        return ", ".join(steps) + "\n" + "\nUNION ALL ".join(rows)

    @functools.lru_cache(maxsize=8)  # one Queries per storage, a handful of shapes
    def finish(self, condition: str, with_output: bool) -> str:
        """Finish the execution ``%(execution_id)s`` if ``condition`` holds on it."""
        output = ", output_serializer = %(output_serializer)s, output = %(output)s" if with_output else ""
        return f"""
UPDATE {self.table} AS e SET {self._finish_sets}{output}
FROM (SELECT execution_id, status FROM {self.table}
      WHERE execution_id = %(execution_id)s AND {condition} FOR UPDATE) AS o
WHERE e.execution_id = o.execution_id
RETURNING e.task_id, o.status, e.parent_execution_id"""

    @functools.lru_cache(maxsize=8)
    def hand_back(self, holding: str) -> str:
        """Hand claimed executions back: ``holding`` selects those whose lease ends (as ``h``)."""
        return f"""
UPDATE {self.table} AS e SET
    status = CASE e.status WHEN 'running' THEN 'ready' ELSE e.status END,
    start_at = CASE e.status WHEN 'running' THEN %(now)s ELSE e.start_at END,
    {_EXPIRED_ERROR_SETS},
    lease_expirations = e.lease_expirations + %(expired)s,
    ready_at = %(now)s, executor_id = NULL, lease_expires_at = NULL, updated_at = %(now)s
FROM (SELECT e.execution_id, e.status FROM {self.table} AS e {holding} FOR UPDATE OF e) AS o
WHERE e.execution_id = o.execution_id
RETURNING e.execution_id, e.task_id, o.status, e.status"""

    @functools.cached_property
    def insert(self) -> str:
        """One row: batches are pipelined (a statement of hundreds of rows takes the server longer
        to parse and plan than running one prepared statement per row)."""
        values = ", ".join(["%s"] * len(COLUMNS))
        return f"INSERT INTO {self.table} ({self.cols}) VALUES ({values}) ON CONFLICT DO NOTHING RETURNING execution_id"

    @functools.cached_property
    def insert_new(self) -> str:
        """``insert`` failing on a conflict: an insert that needs no second look (``insert_waves``)."""
        return f"INSERT INTO {self.table} ({self.cols}) VALUES ({', '.join(['%s'] * len(COLUMNS))})"

    @functools.lru_cache(maxsize=8)
    def list(self, by_status: bool, by_task: bool, by_executor: bool = False, after: bool = False,
             by_queue: bool = False) -> str:
        """Ids compare in the indexes' collation "C", byte by byte, whatever the database's."""
        conditions = (["status = ANY(%(statuses)s)"] if by_status else []) + (["task_id = %(task_id)s"] if by_task else [])
        conditions += ["executor_id = %(executor_id)s"] if by_executor else []
        conditions += ["queue = %(queue)s"] if by_queue else []
        conditions += ['(created_at, execution_id COLLATE "C") < (%(created_at)s, %(execution_id)s)'] if after else []
        where = f"WHERE {' AND '.join(conditions)} " if conditions else ""
        return f"SELECT {self.cols} FROM {self.table} {where}{_NEWEST_FIRST}"

    @functools.lru_cache(maxsize=8)
    def list_by_status(self, statuses: int, by_executor: bool = False, after: bool = False) -> str:
        """Newest first across ``statuses`` statuses (``%(status_0)s``...), neither task nor queue
        given: one range of the status index per status, each read in index order up to the
        page's size, merged (Merge Append), so that no index on created_at alone is needed for
        every write to update, and no rows beyond a page's per status are read."""
        conditions = ["executor_id = %(executor_id)s"] if by_executor else []
        conditions += ['(created_at, execution_id COLLATE "C") < (%(created_at)s, %(execution_id)s)'] if after else []
        ranges = [f"(SELECT {self.cols} FROM {self.table} WHERE {' AND '.join([f'status = %(status_{i})s', *conditions])} "
                  f"{_NEWEST_FIRST})" for i in range(statuses)]
        return f"SELECT * FROM ({' UNION ALL '.join(ranges)}) AS r {_NEWEST_FIRST}"


_NEWEST_FIRST = 'ORDER BY created_at DESC, execution_id COLLATE "C" DESC LIMIT %(limit)s'


_HOLDING_LEASE = (
    "JOIN unnest(%(ids)s::text[], %(tokens)s::bigint[]) AS l (execution_id, token) "
    "ON e.execution_id = l.execution_id AND e.lease_token = l.token WHERE e.lease_expires_at IS NOT NULL"
)
_LEASE_SET = "WHERE e.execution_id = ANY(%(ids)s) AND e.lease_expires_at IS NOT NULL"
_UNFINISHED = f"status NOT IN ({_FINISHED})"
_SLEEPING = "is_sleeping AND status = 'running'"
_LEASED = "lease_expires_at IS NOT NULL"


def _commit_changes(commits: Sequence[RunCommit], rows: Sequence[list[Any]]) -> list[StatusChange]:
    """The changes of ``commits`` from the rows of their statements, in order (nothing where a
    lease did not hold)."""
    changes: list[StatusChange] = []
    for commit, each in zip(commits, rows):
        record = commit.record
        for step, a, b, c in sorted(each, key=lambda row: row[0]):  # UNION ALL keeps no order
            if step == 0:
                changes.append(StatusChange(record.execution_id, record.task_id, STATUSES[a], record.status))
            elif step == 1:  # the closure of the parent, so there is one
                assert record.parent is not None
                changes.append(StatusChange(record.parent.execution_id, a, STATUSES[b], STATUSES[b]))
            else:
                changes.append(StatusChange(a, b, STATUSES[c], S.CANCELLED))
    return changes


def _in_order(changes: list[StatusChange], ids: Sequence[str]) -> list[StatusChange]:
    """``changes`` (one per id at most, as RETURNING gave them) in the order of ``ids``."""
    by_id = {change.execution_id: change for change in changes}
    return [by_id[execution_id] for execution_id in dict.fromkeys(ids) if execution_id in by_id]


IDENTITY = "SELECT (SELECT system_identifier FROM pg_control_system()), current_database(), current_setting('port')"
"""Which server and database a connection is on: the cluster's system identifier (chosen by
initdb), the database, and the server's port (clusters restored from one backup share the
identifier). Not the server's address: it differs between a Unix socket and TCP, and per interface."""


def describe_identity(identity: tuple[Any, ...]) -> str:
    system_identifier, database, port = identity
    return f"database {database!r} of the server with system identifier {system_identifier} (port {port})"


class Database:
    """The domain operations of one schema, on the cursor each call is given. ``identity``: what
    ``IDENTITY`` gave on the storage's connection when it opened."""

    def __init__(self, schema: str, where: str, identity: tuple[Any, ...]):
        self.schema = schema
        self.where = where
        self.identity = identity
        self.q = Queries(schema)

    # ------------------------------------------------------------------ reads

    def get(self, cur: psycopg.Cursor, execution_ids: Sequence[str]) -> list[ExecutionRecord | None]:
        return self._by(cur, self.q.get, execution_ids, lambda r: r.execution_id)

    def get_by_sleeping_unique_id(self, cur: psycopg.Cursor, unique_ids: Sequence[str]) -> list[ExecutionRecord | None]:
        return self._by(cur, self.q.by_sleeping_unique_id, unique_ids, lambda r: r.sleeping_unique_id)

    def list_records(self, cur: psycopg.Cursor, statuses: Sequence[S] | None, task_id: str | None,
                     executor_id: str | None, limit: int, before: ListCursor | None,
                     queue: str | None = None) -> list[ExecutionRecord]:
        created_at, execution_id = before or (None, None)
        params = {"statuses": [str(s) for s in statuses or ()], "task_id": task_id, "executor_id": executor_id,
                  "limit": max(limit, 0), "created_at": created_at, "execution_id": execution_id, "queue": queue}
        if task_id is None and queue is None:
            every = dict.fromkeys(STATUSES if statuses is None else map(str, statuses))
            if not every:
                return []
            params.update({f"status_{i}": status for i, status in enumerate(every)})
            cur.execute(self.q.list_by_status(len(every), executor_id is not None, before is not None), params)
        else:
            cur.execute(self.q.list(statuses is not None, task_id is not None, executor_id is not None,
                                    before is not None, queue is not None), params)
        return [from_row(row) for row in cur.fetchall()]

    def count_by_status(self, cur: psycopg.Cursor) -> dict[S, int]:
        cur.execute(self.q.count_by_status)
        return {S(status): count for status, count in cur.fetchall()}

    def find_revoked(self, cur: psycopg.Cursor, leases: Sequence[Lease]) -> list[str]:
        """Asks only whether each lease holds: no payload is read."""
        if not leases:
            return []
        cur.execute(self.q.revoked, ([lease.execution_id for lease in leases], [lease.token for lease in leases]))
        return [execution_id for (execution_id,) in cur.fetchall()]

    def list_executors(self, cur: psycopg.Cursor, heartbeat_after: float) -> list[ExecutorInfo]:
        cur.execute(self.q.live_executors, (heartbeat_after,))
        return [ExecutorInfo(*row) for row in cur.fetchall()]

    # ------------------------------------------------------------------ writes

    def renew(self, cur: psycopg.Cursor, executor: ExecutorInfo, leases: Sequence[Lease], now: float,
              lease_duration: float) -> list[str]:
        """One statement renews every lease that holds and names those that do not."""
        ids, tokens = [lease.execution_id for lease in leases], [lease.token for lease in leases]
        cur.execute(self.q.renew, (now + lease_duration, ids, tokens, ids, tokens))
        lost = [execution_id for (execution_id,) in cur.fetchall()]
        cur.execute(self.q.forget_executors, (now - EXECUTOR_RETENTION,))
        cur.execute(self.q.store_executor, (executor.executor_id, executor.host, executor.pid, executor.started_at,
                                            executor.heartbeat_at, executor.running))
        return lost

    def insert(self, cur: psycopg.Cursor, records: Sequence[ExecutionRecord]) -> list[ExecutionRecord]:
        return run_steps(cur, self.insert_steps(records))

    def insert_waves(self, records: Sequence[ExecutionRecord], optimistic: bool) -> Waves[list[ExecutionRecord]]:
        """``insert_steps``; or, if ``optimistic``, one ``Last`` wave of plain inserts, which fail
        where ``insert_steps`` would look for an idempotency twin (the lane then runs the
        transaction again, not optimistic)."""
        if not optimistic:
            return (yield from waves_of(self.insert_steps(records)))
        if records:
            yield Last([Statement(self.q.insert_new, to_row(record)) for record in records])
        return list(records)

    def insert_steps(self, records: Sequence[ExecutionRecord]) -> Steps[list[ExecutionRecord]]:
        """Insert what is new; idempotency-key twins return the stored record (see ``_twin``). As
        ``Steps``, so that a caller's connection, sync or asyncio, inserts the same way."""
        if not records:
            return []
        rows = yield Statement(self.q.insert, [to_row(record) for record in records], many=True)
        inserted = {execution_id for (execution_id,) in rows}
        stored = []
        for record in records:
            stored.append(record if record.execution_id in inserted else (yield from self._twin(record)))
        return stored

    def caller_insert_steps(self, records: Sequence[ExecutionRecord], channel: str | None
                            ) -> Steps[list[ExecutionRecord]]:
        """``insert_steps`` in a caller's transaction, then, if it inserted anything, NOTIFY on
        ``channel`` (None: no one listens), which the server delivers when the caller commits."""
        stored = yield from self.insert_steps(records)
        if channel is not None and any(kept is new for new, kept in zip(records, stored)):
            yield Statement("SELECT pg_notify(%s, '')", (channel,))
        return stored

    def claim(self, cur: psycopg.Cursor, executor_id: str, now: float, limit: int,
              lease_duration: float, task_ids: Collection[str] | None = None,
              queues: Collection[str] | None = None,
              limits: Mapping[str, int] | None = None,
              rates: Mapping[str, tuple[int, float]] | None = None) -> list[ExecutionRecord]:
        """With ``limits`` or ``rates``, counted under per-task advisory locks (``_running``), the
        claim flags the records it claims of those tasks and records their starts."""
        if (limits or rates) and task_ids is not None:
            limited = sorted({*(limits or ()), *(rates or ())})
            rated = sorted(rates or ())
            return claim_within_limits(
                lambda tasks, n: self._claim(cur, executor_id, now, n, lease_duration, tasks, queues, limited, rated),
                task_ids, limit, limits or {}, functools.partial(self._running, cur), rates,
                lambda task_id, period: self._started(cur, task_id, now, period))
        return self._claim(cur, executor_id, now, limit, lease_duration, task_ids, queues)

    def _claim(self, cur: psycopg.Cursor, executor_id: str, now: float, limit: int, lease_duration: float,
               task_ids: Collection[str] | None, queues: Collection[str] | None,
               limited: list[str] | None = None, rated: list[str] | None = None) -> list[ExecutionRecord]:
        """Claim up to ``limit`` due records; those of the ``limited`` tasks are flagged, and the
        starts of the ``rated`` ones recorded."""
        if limit <= 0 or (task_ids is not None and not task_ids) or (queues is not None and not queues):
            return []
        params = {"now": now, "executor_id": executor_id, "lease_duration": lease_duration, "limit": limit,
                  "above_all": MAX_PRIORITY + 1,
                  "task_ids": None if task_ids is None else list(task_ids),
                  "queues": None if queues is None else list(queues), "limited": limited, "rated": rated}
        if task_ids is None or queues is None:
            cur.execute(self.q.claim_any if limited is None else self.q.claim_any_limited, params)
        else:
            cur.execute(self.q.claim if limited is None else self.q.claim_limited, params)
        rows = sorted(cur.fetchall(), key=lambda row: (-row[_PRIORITY], row[0]))
        return [from_row(row[1:]) for row in rows]

    def _running(self, cur: psycopg.Cursor, task_ids: list[str]) -> dict[str, int]:
        """How many records of each of ``task_ids`` run holding a lease, counted under a per-task
        advisory lock held to the end of the transaction (taken in the order given, sorted): the
        claimers of a limited task count and claim one after another."""
        counts = {}
        for task_id in task_ids:
            cur.execute(self.q.lock_task, (task_id,))
            cur.execute(self.q.running, (task_id,))
            row = cur.fetchone()
            counts[task_id] = 0 if row is None else int(row[0])
        return counts

    def _started(self, cur: psycopg.Cursor, task_id: str, now: float, period: float) -> int:
        """How many starts of ``task_id`` were recorded in the last ``period`` seconds, counted after
        ``_running`` took the task's advisory lock (``rate_limit``); first forgets those older than a
        day (or the period, if longer) before ``now``."""
        cur.execute(self.q.forget_starts, (task_id, now - max(period, _STARTS_KEPT)))
        cur.execute(self.q.started, (task_id, now - period))
        row = cur.fetchone()
        return 0 if row is None else int(row[0])

    def commit_runs(self, cur: psycopg.Cursor, commits: Sequence[RunCommit], now: float) -> list[StatusChange]:
        """``commit_waves`` on a cursor (the storage runs them on its lane)."""
        return run_waves(cur, self.commit_waves(commits, now))

    def commit_waves(self, commits: Sequence[RunCommit], now: float) -> Waves[list[StatusChange]]:
        """Each commit without new executions is one statement (with its closure and cascade),
        all sent at once (a ``Last`` wave if none inserts); one that inserts is sent alone, with
        its inserts after it, in its place in the order, so every commit still sees what the
        ones before it did."""
        changes: list[StatusChange] = []
        pending: list[RunCommit] = []
        for commit in commits:
            if not commit.new_executions:
                pending.append(commit)
                continue
            rows = yield [self._commit_statement(c, now, after=True) for c in pending] + [
                self._commit_statement(commit, now, after=False)]
            changes += _commit_changes(pending, rows)
            pending = []
            applied = _commit_changes([commit], rows[-1:])
            if applied:
                stored = yield from waves_of(self.insert_steps(commit.new_executions))
                changes += applied + [StatusChange(new.execution_id, new.task_id, None, new.status)
                                      for new, kept in zip(commit.new_executions, stored) if kept is new]
                record = commit.record
                parent = None if record.parent is None else record.parent.execution_id
                changes += yield from waves_of(
                    self._after_finish_steps(record.execution_id, record.task_id, record.status, parent, now))
        if pending:
            changes += _commit_changes(pending, (yield Last(self._commit_statement(c, now, after=True) for c in pending)))
        return changes

    def release(self, cur: psycopg.Cursor, leases: Sequence[Lease], now: float) -> list[StatusChange]:
        if not leases:
            return []
        params = {"ids": [lease.execution_id for lease in leases], "tokens": [lease.token for lease in leases],
                  "now": now, "expired": 0, **_error_params(None)}
        return _in_order(self._hand_back(cur, _HOLDING_LEASE, params), params["ids"])

    def expire(self, cur: psycopg.Cursor, now: float, max_lease_expirations: int, limit: int) -> list[StatusChange]:
        cur.execute(self.q.expired, (now, max(limit, 0)))
        changes: list[StatusChange] = []
        for execution_id, is_sleeping, lease_expirations in cur.fetchall():
            if is_sleeping:
                changes += self._finish(cur, execution_id, _LEASED, now, S.TIMED_OUT, SLEEPING_TIMED_OUT_ERROR)
            elif lease_expirations + 1 > max_lease_expirations:
                changes += self._finish(cur, execution_id, _LEASED, now, S.FAILED, EXPIRED_TOO_OFTEN_ERROR, expired=1)
            else:  # nothing if a cascade earlier in this call finished it
                params = {"ids": [execution_id], "now": now, "expired": 1, **_error_params(EXPIRED_ERROR)}
                changes += self._hand_back(cur, _LEASE_SET, params)
        return changes

    def cancel(self, cur: psycopg.Cursor, execution_ids: Sequence[str], now: float) -> list[StatusChange]:
        changes: list[StatusChange] = []
        for execution_id in execution_ids:
            changes += self._finish(cur, execution_id, _UNFINISHED, now, S.CANCELLED, CANCELLED_ERROR)
        return changes

    def retry(self, cur: psycopg.Cursor, execution_ids: Sequence[str], now: float) -> list[StatusChange]:
        """``transitions.retry`` of each id that ``transitions.accepts_retry``, as one statement."""
        cur.execute(self.q.retry, {"ids": list(execution_ids), "now": now})
        changes = [StatusChange(i, t, STATUSES[old], STATUSES[new]) for i, t, old, new in cur.fetchall()]
        return _in_order(changes, execution_ids)

    def wake(self, cur: psycopg.Cursor, wakeups: Sequence[SleepingWakeup], now: float) -> list[StatusChange]:
        changes: list[StatusChange] = []
        for w in wakeups:
            changes += self._finish(cur, w.execution_id, _SLEEPING, now, S(w.status), w.error, output=(w.output,))
        return changes

    def delete_finished(self, cur: psycopg.Cursor, finished_before: float, limit: int) -> int:
        cur.execute(self.q.finished_roots, (finished_before, max(limit, 0)))
        roots = [execution_id for (execution_id,) in cur.fetchall()]
        if not roots:
            return 0
        cur.execute(self.q.delete_trees, (roots,))
        return cur.rowcount

    # ------------------------------------------------------------------ building blocks

    def _by(self, cur: psycopg.Cursor, query: str, keys: Sequence[str], key: Any) -> list[ExecutionRecord | None]:
        if not keys:
            return []
        cur.execute(query, (list(keys),))
        found = {key(record): record for record in map(from_row, cur.fetchall())}
        return [found.get(k) for k in keys]

    def _commit_statement(self, commit: RunCommit, now: float, *, after: bool) -> Statement:
        """The statement of ``commit`` (with its closure and cascade if ``after``); its rows
        become changes in ``_commit_changes``."""
        record = commit.record
        params = dict(zip(_WRITTEN_NAMES, _WRITTEN_VALUES(to_row(record))))
        params.update(execution_id=record.execution_id, lease_token=record.lease_token, now=now,
                      parent=record.parent and record.parent.execution_id)
        finished = after and record.status.is_finished
        cascade = finished and record.status is not S.COMPLETED
        if cascade:
            params.update(_error_params(cascade_error(record)))
        return Statement(self.q.commit_run(finished and record.parent is not None, cascade), params)

    def _twin(self, record: ExecutionRecord) -> Steps[ExecutionRecord]:
        """Why ``record`` was not inserted: the stored record with its idempotency key, or an error."""
        if record.idempotency_key is not None:
            rows = yield Statement(self.q.by_idempotency_key, (record.task_id, record.idempotency_key))
            if rows:
                return from_row(rows[0])
        if record.sleeping_unique_id is not None:
            if (yield Statement(self.q.sleeping_unique_id_taken, (record.sleeping_unique_id,))):
                raise DuplicateSleepingTaskUniqueIdError(record.sleeping_unique_id)
        raise StorageError(f"Task execution {record.execution_id} already exists", is_retryable=False)

    def _hand_back(self, cur: psycopg.Cursor, holding: str, params: dict[str, Any]) -> list[StatusChange]:
        cur.execute(self.q.hand_back(holding), params)
        return [StatusChange(i, task_id, STATUSES[old], STATUSES[new]) for i, task_id, old, new in cur.fetchall()]

    def _finish(self, cur: psycopg.Cursor, execution_id: str, condition: str, now: float, status: S,
                error: ErrorInfo | None, *, expired: int = 0, output: tuple[Payload | None] | None = None,
                ) -> list[StatusChange]:
        """Finish one execution if ``condition`` holds, with closure and cascade."""
        params = {"execution_id": execution_id, "status": status.value, "now": now, "expired": expired,
                  **_error_params(error), **_payload_params(output[0] if output else None)}
        cur.execute(self.q.finish(condition, output is not None), params)
        row = cur.fetchone()
        if row is None:
            return []
        task_id, previous, parent = row
        change = StatusChange(execution_id, task_id, STATUSES[previous], status)
        return [change, *self._after_finish(cur, execution_id, task_id, status, parent, now)]

    def _after_finish(self, cur: psycopg.Cursor, execution_id: str, task_id: str, status: S,
                      parent: str | None, now: float) -> list[StatusChange]:
        return run_steps(cur, self._after_finish_steps(execution_id, task_id, status, parent, now))

    def _after_finish_steps(self, execution_id: str, task_id: str, status: S, parent: str | None,
                            now: float) -> Steps[list[StatusChange]]:
        """Closure and cascading cancellation, if the execution (just written) is finished."""
        if not status.is_finished:
            return []
        changes = []
        if parent is not None:
            rows = yield Statement(self.q.close, {"now": now, "execution_id": parent})
            if rows:
                parent_status = STATUSES[rows[0][1]]
                changes.append(StatusChange(parent, rows[0][0], parent_status, parent_status))
        if status is not S.COMPLETED:
            error = cascade_error(StatusChange(execution_id, task_id, None, status))
            rows = yield Statement(self.q.cascade, {"execution_id": execution_id, "now": now, **_error_params(error)})
            changes += [StatusChange(i, t, STATUSES[old], S.CANCELLED) for i, t, old in rows]
        return changes
