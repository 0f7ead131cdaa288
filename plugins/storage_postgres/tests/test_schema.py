"""The schema: creation, migrations, schemas that are not ours, and the plans of the hot queries."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
import trio
from psycopg import sql

from durable_conformance.records import new
from durable_core.status import TaskExecutionStatus as S
from durable_core.storage.contract import CANCELLED_ERROR, StorageError
from durable_storage_postgres import PostgresStorage
from durable_storage_postgres import _schema
from durable_storage_postgres._database import Queries, _error_params
from durable_storage_postgres._rows import STATUSES, to_row
from durable_storage_postgres._schema import MIGRATIONS, Migration, migrate, schema_version


def tables(dsn: str, schema: str) -> list[tuple[str, str]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s ORDER BY 1", (schema,)).fetchall()


def mark_ours(conn: psycopg.Connection, schema: str) -> None:
    conn.execute(sql.SQL("COMMENT ON TABLE {}.schema_migrations IS {}").format(
        sql.Identifier(schema), sql.Literal(_schema.MARKER)))


def insert_old_row(conn: psycopg.Connection, schema: str, execution_id: str = "te_old", task_id: str = "task",
                   ready_at: float = 0.0) -> None:
    """A ready execution written with only the columns of the first schema."""
    conn.execute(sql.SQL(
        "INSERT INTO {}.executions (execution_id, task_id, status, lease_token, active_children_count, "
        "retry_attempts, lease_expirations, created_at, updated_at, start_at, timeout, sleep_before_run, "
        "retry_max_attempts, retry_base_delay, retry_delay_multiplier, is_sleeping, input_serializer, "
        "input, ready_at) VALUES (%s, %s, 'ready', 0, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 1, false, 'json', '', %s)"
    ).format(sql.Identifier(schema)), (execution_id, task_id, ready_at))


async def test_opening_creates_the_schema_once_even_when_many_open_at_once(dsn, schema, postgres):
    async def open_and_close() -> None:
        async with postgres():
            pass

    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(open_and_close)
    with psycopg.connect(dsn) as conn:
        versions = conn.execute(sql.SQL("SELECT version, name FROM {}.schema_migrations").format(
            sql.Identifier(schema))).fetchall()
    assert versions == [(m.version, m.name) for m in MIGRATIONS]
    assert ("executions", "r") in tables(dsn, schema)


async def test_an_older_schema_gets_the_migrations_it_lacks(dsn, schema, postgres):
    async with postgres() as storage:
        await storage.insert_executions([new("te_1")])
    newer = (*MIGRATIONS, Migration(len(MIGRATIONS) + 1, "add_note", "ALTER TABLE executions ADD COLUMN note text;"))
    with psycopg.connect(dsn) as conn:
        assert schema_version(conn, schema, "test", newer) == len(MIGRATIONS)
        migrate(conn, schema, len(MIGRATIONS), newer)
        conn.commit()
        assert schema_version(conn, schema, "test", newer) == len(newer)
        rows = conn.execute(sql.SQL("SELECT execution_id, note FROM {}.executions").format(
            sql.Identifier(schema))).fetchall()
    assert rows == [("te_1", None)]


async def test_a_version_3_schema_gains_deferred_options_and_keeps_its_executions(dsn, schema, postgres):
    """Migration 0004: rows written before it read back with no deferred options; new rows store them."""
    with psycopg.connect(dsn) as conn:
        migrate(conn, schema, 0, MIGRATIONS[:3])
        mark_ours(conn, schema)
        insert_old_row(conn, schema)
    deferred = new("te_new", deferred_options=frozenset({"timeout", "retry"}))
    async with postgres() as storage:
        await storage.insert_executions([deferred])
        old, stored = await storage.get_executions(["te_old", "te_new"])
    assert old is not None and (old.task_id, old.deferred_options) == ("task", frozenset())
    assert stored == deferred
    with psycopg.connect(dsn) as conn:
        assert schema_version(conn, schema, "test") == len(MIGRATIONS)
        rows = conn.execute(sql.SQL("SELECT execution_id, deferred_options FROM {}.executions ORDER BY 1").format(
            sql.Identifier(schema))).fetchall()
    assert rows == [("te_new", "retry,timeout"), ("te_old", None)]


async def test_a_version_5_schema_claims_by_task_from_a_new_index_and_keeps_its_executions(dsn, schema, postgres):
    """Migration 0007: the claim index on (task_id, ready_at) replaces the one on ready_at; rows
    written before it are claimed by their task."""
    with psycopg.connect(dsn) as conn:
        migrate(conn, schema, 0, MIGRATIONS[:6])
        mark_ours(conn, schema)
        insert_old_row(conn, schema, "te_old", "mine", 1.0)
        insert_old_row(conn, schema, "te_foreign", "theirs", 0.0)
    async with postgres() as storage:
        claimed = await storage.claim_executions("de_1", 2.0, 10, 15.0, task_ids=frozenset({"mine"}))
        (foreign,) = await storage.get_executions(["te_foreign"])
    assert [r.execution_id for r in claimed] == ["te_old"]
    assert foreign is not None and foreign.lease_token == 0 and foreign.ready_at == 0.0
    names = {name for name, kind in tables(dsn, schema) if kind == "i"}
    assert "executions_claim" in names and "executions_ready_at" not in names


def old_schema(dsn: str, schema: str, version: int) -> None:
    """``schema`` at ``version``, marked ours, holding ``insert_old_row``'s row."""
    with psycopg.connect(dsn) as conn:
        migrate(conn, schema, 0, MIGRATIONS[:version])
        mark_ours(conn, schema)
        insert_old_row(conn, schema)


async def test_a_version_6_schema_gains_queues_and_keeps_its_executions_in_the_default_one(dsn, schema, postgres):
    """Migration 0008: rows written before it are in the default queue, claimed and listed there."""
    old_schema(dsn, schema, 7)
    async with postgres() as storage:
        await storage.insert_executions([new("te_new", queue="emails")])
        assert [r.execution_id for r in await storage.list_executions(queue="default")] == ["te_old"]
        assert await storage.claim_executions("de_1", 1.0, 10, 15.0, task_ids=frozenset({"task"}),
                                              queues=frozenset({"elsewhere"})) == []
        (old,) = await storage.claim_executions("de_1", 1.0, 10, 15.0, task_ids=frozenset({"task"}),
                                                queues=frozenset({"default"}))
        (mail,) = await storage.claim_executions("de_1", 1.0, 10, 15.0, task_ids=frozenset({"task"}),
                                                 queues=frozenset({"emails"}))
    assert (old.execution_id, old.queue, mail.execution_id, mail.queue) == ("te_old", "default", "te_new", "emails")


async def test_a_version_8_schema_gains_priorities_and_keeps_its_executions_at_priority_0(dsn, schema, postgres):
    """Migration 0009: rows written before it have priority 0, claimed after a new higher one."""
    old_schema(dsn, schema, 8)
    async with postgres() as storage:
        await storage.insert_executions([new("te_new", priority=3, ready_at=0.5)])
        claimed = await storage.claim_executions("de_1", 1.0, 10, 15.0, task_ids=frozenset({"task"}),
                                                 queues=frozenset({"default"}))
    assert [(r.execution_id, r.priority) for r in claimed] == [("te_new", 3), ("te_old", 0)]


async def test_a_version_11_schema_keeps_its_executions_their_running_counts_and_recent_starts(dsn, schema, postgres):
    """Migration 0012: every row reads back unchanged and is listed; the executions running then
    count against a limit (all flagged), the starts of the last day against a rate; the three
    indexes it drops are gone."""
    running = [new(f"te_run{i}", task_id="capped", status=S.RUNNING, ready_at=None, started_at=90.0 + i,
                   executor_id="de_1", lease_token=1, lease_expires_at=200.0, created_at=float(i)) for i in range(2)]
    started = [new(f"te_done{i}", task_id="rated", status=S.COMPLETED, ready_at=None, started_at=started_at,
                   finished_at=started_at + 1, lease_token=1, created_at=10.0 + i)
               for i, started_at in enumerate((-90_000.0, 50.0, 99.0))]  # the first over a day before the latest
    ready = [new(f"te_{task}", task_id=task, ready_at=0.0, created_at=20.0) for task in ("capped", "rated")]
    records = [*running, *started, *ready]
    with psycopg.connect(dsn) as conn:
        migrate(conn, schema, 0, MIGRATIONS[:11])
        mark_ours(conn, schema)
        conn.cursor().executemany(Queries(schema).insert_new, [to_row(r) for r in records])
    async with postgres() as storage:
        assert await storage.get_executions([r.execution_id for r in records]) == records
        assert await storage.list_executions() == sorted(records, key=lambda r: (r.created_at, r.execution_id),
                                                         reverse=True)
        routed = {"task_ids": frozenset({"capped", "rated"}), "queues": frozenset({"default"})}
        assert await storage.claim_executions("de_2", 100.0, 10, 15.0, **routed, limits={"capped": 2},
                                              rates={"rated": (2, 60.0)}) == []  # two running, two started
        claimed = await storage.claim_executions("de_2", 100.0, 10, 15.0, **routed, limits={"capped": 3},
                                                 rates={"rated": (3, 60.0)})
        assert sorted(r.execution_id for r in claimed) == ["te_capped", "te_rated"]
    names = {name for name, _ in tables(dsn, schema)}
    assert not names & {"executions_created_at", "executions_started"} and "executions_running" in names
    with psycopg.connect(dsn) as conn:
        starts = conn.execute(sql.SQL("SELECT execution_id FROM {} ORDER BY execution_id").format(
            sql.Identifier(schema, "execution_starts"))).fetchall()
    assert starts == [("te_done1",), ("te_done2",), ("te_rated",), ("te_run0",), ("te_run1",)]  # every task's


async def test_a_newer_schema_is_refused_and_left_untouched(dsn, schema, postgres):
    async with postgres():
        pass
    with psycopg.connect(dsn) as conn:
        conn.execute(sql.SQL("INSERT INTO {}.schema_migrations VALUES (999, 'future')").format(sql.Identifier(schema)))
    before = tables(dsn, schema)
    with pytest.raises(StorageError, match=r"schema version 999, written by a newer durable-storage-postgres.*"
                                           r"pip install -U durable-storage-postgres"):
        async with postgres():
            pass
    assert tables(dsn, schema) == before


async def test_a_schema_of_someone_else_is_refused_and_left_untouched(dsn, schema, postgres):
    with psycopg.connect(dsn) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {0}; CREATE TABLE {0}.executions (x int)").format(sql.Identifier(schema)))
    with pytest.raises(StorageError, match=f"Schema '{schema}' .* holds tables that durable did not create"):
        async with postgres():
            pass
    assert tables(dsn, schema) == [("executions", "r")]


async def test_a_damaged_schema_is_one_clear_error(dsn, schema, postgres):
    async with postgres():
        pass
    with psycopg.connect(dsn) as conn:
        conn.execute(sql.SQL("DROP TABLE {}.executions").format(sql.Identifier(schema)))
    with pytest.raises(StorageError, match=f"is damaged: it records schema version {len(_schema.MIGRATIONS)} but "
                                           "has no executions table"):
        async with postgres():
            pass


async def test_an_empty_schema_of_our_own_name_is_used(dsn, schema, postgres):
    with psycopg.connect(dsn) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    async with postgres() as storage:
        assert await storage.insert_executions([new("te_1")])


HOT = {
    "claim": ("claim", {"now": 1.0, "executor_id": "de_x", "lease_duration": 1.0, "limit": 100, "task_ids": ["task"],
                        "queues": ["default"], "above_all": 1_000_001}, "executions_claim"),
    "expire": ("expired", (1.0, 100), "executions_lease_expires_at"),
    "cascade": ("cascade", {"execution_id": "te_1", "now": 1.0, **_error_params(CANCELLED_ERROR)},
                "executions_parent"),
    "retention": ("finished_roots", (1.0, 100), "executions_finished_roots"),
    "sleeping": ("sleeping_unique_id_taken", ("u",), "executions_sleeping_unique_id"),
    "idempotency": ("by_idempotency_key", ("t", "k"), "executions_idempotency"),
}


@pytest.mark.parametrize("name", sorted(HOT))
async def test_every_hot_query_uses_its_index(dsn, schema, postgres, name):
    async with postgres() as storage:
        await storage.insert_executions([new(f"te_{i}", now=float(i)) for i in range(2000)])
    attribute, params, index = HOT[name]
    with psycopg.connect(dsn) as conn:
        conn.execute("ANALYZE " + sql.Identifier(schema, "executions").as_string(conn))
        conn.execute("SET enable_seqscan = off")  # on a small table a scan would win; we want to see the index
        plan = "\n".join(row[0] for row in conn.execute("EXPLAIN " + getattr(Queries(schema), attribute), params))
        conn.rollback()
    assert index in plan, plan


async def test_a_claim_reads_neither_entries_not_due_nor_the_priorities_below_those_it_takes(dsn, schema, postgres):
    """O(batch): 2000 high-priority executions not yet due and 2000 due ones of a low priority
    cost a claim of 10 from the level between a few index entries, not thousands."""
    async with postgres() as storage:
        await storage.insert_executions(
            [new(f"te_later_{i}", ready_at=100.0 + i, priority=9) for i in range(2000)]
            + [new(f"te_low_{i}", ready_at=0.5, priority=0) for i in range(2000)]
            + [new(f"te_mid_{i}", ready_at=float(i) / 100, priority=5) for i in range(20)])
    params = {"now": 1.0, "executor_id": "de_x", "lease_duration": 1.0, "limit": 10, "task_ids": ["task"],
              "queues": ["default"], "above_all": 1_000_001}
    with psycopg.connect(dsn) as conn:
        conn.execute("ANALYZE " + sql.Identifier(schema, "executions").as_string(conn))
        ((plan,),) = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + Queries(schema).claim, params).fetchall()
        conn.rollback()

    def entries_read(node: dict[str, Any]) -> int:
        own = node["Actual Rows"] * node["Actual Loops"] if node.get("Index Name") == "executions_claim" else 0
        return own + sum(entries_read(child) for child in node.get("Plans", ()))

    assert 10 <= entries_read(plan[0]["Plan"]) <= 30, plan


@pytest.mark.parametrize("by_status,by_task", [(None, False), (2, False), (1, True), (None, True)])
async def test_a_page_of_the_list_is_read_in_index_order(dsn, schema, postgres, by_status, by_task):
    """A listing by task reads its index's range; one without (by statuses, or every one) merges
    one range of the status index per status: no sort, no index on created_at alone."""
    async with postgres() as storage:
        await storage.insert_executions([new(f"te_{i}", now=float(i)) for i in range(2000)])
    statuses = list(STATUSES)[:by_status] if by_status else list(STATUSES)
    params = {"statuses": statuses, "task_id": "task", "executor_id": None, "limit": 10, "created_at": 5.0,
              "execution_id": "te_5", **{f"status_{i}": status for i, status in enumerate(statuses)}}
    queries = Queries(schema)
    query = (queries.list(by_status is not None, True, after=True) if by_task
             else queries.list_by_status(len(statuses), after=True))
    with psycopg.connect(dsn) as conn:
        conn.execute("ANALYZE " + sql.Identifier(schema, "executions").as_string(conn))
        plan = [row[0] for row in conn.execute("EXPLAIN " + query, params)]
    nodes = [line.strip().removeprefix("->").strip().split("  (")[0] for line in plan]
    assert "Sort" not in nodes, plan
    scans = [node.split(" on ")[0] for node in nodes if node.startswith("Index Scan")]
    if by_task:
        assert scans == ["Index Scan Backward using executions_task"], plan
    else:
        assert "Merge Append" in nodes and scans == ["Index Scan Backward using executions_status"] * len(statuses), plan


def test_the_marker_names_this_distribution():
    assert "durable-storage-postgres" in _schema.MARKER


async def test_the_storage_opens_by_name_and_says_what_it_can(dsn, schema):
    from durable_core import open_storage

    async with open_storage("postgres", dsn=dsn, schema=schema) as storage:
        assert isinstance(storage, PostgresStorage)
        assert storage.capabilities.persistent and storage.capabilities.multi_process
        assert storage.capabilities.change_notifications
    async with open_storage("postgres", dsn=dsn, schema=schema, notify=False) as storage:
        assert not storage.capabilities.change_notifications
