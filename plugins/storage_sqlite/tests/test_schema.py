"""The schema: migrations, files that are not ours, and the query plans of the hot queries."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from durable_conformance.records import new
from durable_core.status import TaskExecutionStatus as S
from durable_core.storage.contract import StorageError
from durable_storage_sqlite import SqliteStorage
from durable_storage_sqlite import _database as q
from durable_storage_sqlite._rows import to_row
from durable_storage_sqlite._schema import APPLICATION_ID, MIGRATIONS, Migration, migrate, schema_version


def connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def create(conn: sqlite3.Connection, migrations: tuple[Migration, ...] = MIGRATIONS) -> None:
    conn.execute("BEGIN IMMEDIATE")
    migrate(conn, schema_version(conn, Path("test.db"), migrations), migrations)
    conn.execute("COMMIT")


def insert_old_row(conn: sqlite3.Connection, execution_id: str = "te_old", task_id: str = "task",
                   ready_at: float = 0.0) -> None:
    """A ready execution written with only the columns of the first schema."""
    conn.execute("INSERT INTO executions (execution_id, task_id, status, lease_token, active_children_count, "
                 "retry_attempts, lease_expirations, created_at, updated_at, start_at, timeout, sleep_before_run, "
                 "retry_max_attempts, retry_base_delay, retry_delay_multiplier, is_sleeping, input_serializer, input, "
                 "ready_at) VALUES (?, ?, 'ready', 0, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 1, 0, 'json', x'', ?)",
                 (execution_id, task_id, ready_at))


async def opened_after(path: Path, version: int) -> SqliteStorage:
    """The storage, opened (so migrated) on a database of schema ``version`` holding ``insert_old_row``'s row."""
    conn = connect(path)
    create(conn, MIGRATIONS[:version])
    insert_old_row(conn)
    conn.close()
    return await SqliteStorage.open(path)


def test_a_new_database_gets_every_migration_in_order_and_is_marked_as_ours(tmp_path: Path) -> None:
    conn = connect(tmp_path / "new.db")
    create(conn)
    assert schema_version(conn, tmp_path / "new.db", MIGRATIONS) == len(MIGRATIONS)
    assert conn.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall() == [
        (m.version, m.name) for m in MIGRATIONS]
    assert conn.execute("PRAGMA application_id").fetchone() == (APPLICATION_ID,)


def test_an_older_database_gets_the_migrations_it_lacks(tmp_path: Path) -> None:
    conn = connect(tmp_path / "old.db")
    create(conn)
    conn.execute("INSERT INTO executions (execution_id, task_id, status, lease_token, active_children_count, "
                 "retry_attempts, lease_expirations, created_at, updated_at, start_at, timeout, sleep_before_run, "
                 "retry_max_attempts, retry_base_delay, retry_delay_multiplier, is_sleeping, input_serializer, input) "
                 "VALUES ('te_1', 't', 'ready', 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 1, 0, 'json', x'')")  # fmt: skip
    newer = (*MIGRATIONS, Migration(len(MIGRATIONS) + 1, "add_note", "ALTER TABLE executions ADD COLUMN note TEXT;"))
    create(conn, newer)
    assert conn.execute("SELECT execution_id, note FROM executions").fetchall() == [("te_1", None)]
    assert conn.execute("SELECT max(version) FROM schema_migrations").fetchone() == (len(newer),)


async def test_a_version_3_database_gains_deferred_options_and_keeps_its_executions(path: Path) -> None:
    """Migration 0004: rows written before it read back with no deferred options; new rows store them."""
    conn = connect(path)
    create(conn, MIGRATIONS[:3])
    insert_old_row(conn)
    conn.close()
    deferred = new("te_new", deferred_options=frozenset({"timeout", "retry"}))
    storage = await SqliteStorage.open(path)
    try:
        await storage.insert_executions([deferred])
        old, stored = await storage.get_executions(["te_old", "te_new"])
        assert old is not None and (old.task_id, old.deferred_options) == ("task", frozenset())
        assert stored == deferred
    finally:
        await storage.aclose()
    conn = connect(path)
    assert conn.execute("SELECT max(version) FROM schema_migrations").fetchone() == (len(MIGRATIONS),)
    assert conn.execute("SELECT execution_id, deferred_options FROM executions ORDER BY execution_id").fetchall() == [
        ("te_new", "retry,timeout"), ("te_old", None)]


async def test_a_version_5_database_claims_by_task_from_a_new_index_and_keeps_its_executions(path: Path) -> None:
    """Migration 0007: the claim index on (task_id, ready_at) replaces the one on ready_at; rows
    written before it are claimed by their task."""
    conn = connect(path)
    create(conn, MIGRATIONS[:6])
    insert_old_row(conn, "te_old", "mine", 1.0)
    insert_old_row(conn, "te_foreign", "theirs", 0.0)
    conn.close()
    storage = await SqliteStorage.open(path)
    try:
        claimed = await storage.claim_executions("de_1", 2.0, 10, 15.0, task_ids=frozenset({"mine"}))
        (foreign,) = await storage.get_executions(["te_foreign"])
    finally:
        await storage.aclose()
    assert [r.execution_id for r in claimed] == ["te_old"]
    assert foreign is not None and foreign.lease_token == 0 and foreign.ready_at == 0.0
    conn = connect(path)
    indexes = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "executions_claim" in indexes and "executions_ready_at" not in indexes


async def test_a_version_6_database_gains_queues_and_keeps_its_executions_in_the_default_one(path: Path) -> None:
    """Migration 0008: rows written before it are in the default queue, claimed and listed there."""
    storage = await opened_after(path, 7)
    try:
        await storage.insert_executions([new("te_new", queue="emails")])
        assert [r.execution_id for r in await storage.list_executions(queue="default")] == ["te_old"]
        assert await storage.claim_executions("de_1", 1.0, 10, 15.0, task_ids=frozenset({"task"}),
                                              queues=frozenset({"elsewhere"})) == []
        (old,) = await storage.claim_executions("de_1", 1.0, 10, 15.0, task_ids=frozenset({"task"}),
                                                queues=frozenset({"default"}))
        (mail,) = await storage.claim_executions("de_1", 1.0, 10, 15.0, task_ids=frozenset({"task"}),
                                                 queues=frozenset({"emails"}))
    finally:
        await storage.aclose()
    assert (old.execution_id, old.queue, mail.execution_id, mail.queue) == ("te_old", "default", "te_new", "emails")


async def test_a_version_8_database_gains_priorities_and_keeps_its_executions_at_priority_0(path: Path) -> None:
    """Migration 0009: rows written before it have priority 0, claimed after a new higher one."""
    storage = await opened_after(path, 8)
    try:
        await storage.insert_executions([new("te_new", priority=3, ready_at=0.5)])
        claimed = await storage.claim_executions("de_1", 1.0, 10, 15.0, task_ids=frozenset({"task"}),
                                                 queues=frozenset({"default"}))
    finally:
        await storage.aclose()
    assert [(r.execution_id, r.priority) for r in claimed] == [("te_new", 3), ("te_old", 0)]


async def test_a_version_11_database_keeps_its_executions_their_running_counts_and_recent_starts(path: Path) -> None:
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
    conn = connect(path)
    create(conn, MIGRATIONS[:11])
    conn.executemany(q._INSERT, [to_row(r) for r in records])
    conn.close()
    storage = await SqliteStorage.open(path)
    try:
        assert await storage.get_executions([r.execution_id for r in records]) == records
        assert await storage.list_executions() == sorted(records, key=lambda r: (r.created_at, r.execution_id),
                                                         reverse=True)
        routed = {"task_ids": frozenset({"capped", "rated"}), "queues": frozenset({"default"})}
        assert await storage.claim_executions("de_2", 100.0, 10, 15.0, **routed, limits={"capped": 2},
                                              rates={"rated": (2, 60.0)}) == []  # two running, two started
        claimed = await storage.claim_executions("de_2", 100.0, 10, 15.0, **routed, limits={"capped": 3},
                                                 rates={"rated": (3, 60.0)})
        assert sorted(r.execution_id for r in claimed) == ["te_capped", "te_rated"]
    finally:
        await storage.aclose()
    conn = connect(path)
    indexes = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert not indexes & {"executions_created_at", "executions_started"} and "executions_running" in indexes
    assert conn.execute("SELECT execution_id FROM execution_starts ORDER BY execution_id").fetchall() == [
        ("te_done1",), ("te_done2",), ("te_rated",), ("te_run0",), ("te_run1",)]  # of the day before, every task's


def snapshot(directory: Path) -> dict[str, bytes]:
    return {file.name: file.read_bytes() for file in sorted(directory.iterdir())}


def written_by_a_newer_version(path: Path) -> None:
    conn = connect(path)
    create(conn)
    conn.execute("INSERT INTO schema_migrations VALUES (99, 'from_the_future')")
    conn.close()


def foreign(path: Path) -> None:
    conn = connect(path)
    conn.execute("CREATE TABLE notes (text TEXT)")
    conn.execute("INSERT INTO notes VALUES ('mine')")
    conn.close()


def damaged(path: Path) -> None:
    """A durable database whose first page (the schema) is overwritten."""
    conn = connect(path)
    create(conn)
    conn.close()
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xff" * 3996
    path.write_bytes(bytes(data))


def bad_page_size(path: Path) -> None:
    path.write_bytes(b"SQLite format 3\x00\x00\x03" + b"\x00" * 1000)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (written_by_a_newer_version, "schema version 99, written by a newer durable-storage-sqlite.*pip install -U"),
        (foreign, "durable did not create"),
        (lambda path: path.write_bytes(b"just some text\n" * 100), "is not a SQLite database"),
        (damaged, "is damaged.*restore it from a backup"),
        (bad_page_size, "is damaged.*restore it from a backup"),
    ],
    ids=["newer", "foreign", "text", "damaged", "bad_page_size"],
)
async def test_a_file_that_is_not_ours_is_refused_untouched(
    path: Path, make: Callable[[Path], object], message: str
) -> None:
    make(path)
    before = snapshot(path.parent)
    with pytest.raises(StorageError, match=f"{re.escape(str(path))}.*{message}") as caught:
        await SqliteStorage.open(path)
    assert not caught.value.is_retryable
    assert snapshot(path.parent) == before


async def test_a_missing_directory_or_a_directory_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="directory exists"):
        await SqliteStorage.open(tmp_path / "missing" / "durable.db")
    with pytest.raises(StorageError, match=f"Cannot open SQLite database {re.escape(str(tmp_path))}: Is a directory"):
        await SqliteStorage.open(tmp_path)


async def test_connections_opening_a_new_file_at_once_create_it_once(tmp_path: Path) -> None:
    for attempt in range(20):  # the races are short: try a few times
        path = tmp_path / f"{attempt}.db"
        storages: list[SqliteStorage] = []

        async def open_one() -> None:
            storages.append(await SqliteStorage.open(path))  # noqa: B023

        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(open_one)
        for storage in storages:
            await storage.aclose()
        versions = connect(path).execute("SELECT version FROM schema_migrations").fetchall()
        assert versions == [(m.version,) for m in MIGRATIONS]


# The hot queries with parameters of the right shape; none may scan the executions table.
HOT_QUERIES: dict[str, tuple[str, tuple[object, ...] | dict[str, object]]] = {
    "get": (q._SELECT, ("te",)),
    "by sleeping unique id": (q._BY_SLEEPING_UNIQUE_ID, ("u",)),
    "sleeping unique id taken": (q._SLEEPING_UNIQUE_ID_TAKEN, ("u",)),
    "by idempotency key": (q._BY_IDEMPOTENCY_KEY, ("t", "k")),
    "lease holds": (q._HOLDING, ("te", 1)),
    "write": (q._write_query(("status", "ready_at")), ("completed", None, 1.0, "te")),
    "claimable": (q._CLAIMABLE, ("t", "default", 0, 1.0, 10)),
    "top priority": (q._TOP_PRIORITY, ("t", "default", 5)),
    "claim": (q._CLAIM, {"now": 1.0, "executor_id": "ex", "lease_duration": 1.0, "rowids": "[1]"}),
    "claimed": (q._CLAIMED, ("[1]",)),
    "expired": (q._EXPIRED, (1.0, 10)),
    "closure": (q._CLOSE, {"now": 1.0, "execution_id": "te"}),
    "cascade": (q._ACTIVE_DESCENDANTS, ("te",)),
    "cancel descendant": (
        q._CANCEL_DESCENDANT,
        {"error_type": "t", "message": "m", "is_retryable": 0, "is_internal": 0, "now": 1.0, "execution_id": "te"},
    ),
    "finished roots": (q._FINISHED_ROOTS, (1.0, 10)),
    "delete tree": (q._DELETE_TREE, ("te",)),
    # a listing without a task or queue merges one range per status, each read in order
    "list": (q._status_range(S.READY, False, False), (10,)),
    "list by executor": (q._status_range(S.READY, True, False), ("de", 10)),
    "list by task": (q.list_query(None, True), ("t", 10)),
    "list by statuses and task": (q.list_query(2, True), ("ready", "running", "t", 10)),
    "list by status and task": (q.list_query(1, True), ("ready", "t", 10)),
    "list page": (q._status_range(S.READY, False, True), (1.0, "te", 10)),
    "list page by executor": (q._status_range(S.READY, True, True), ("de", 1.0, "te", 10)),
    "list page by task": (q.list_query(None, True, after=True), ("t", 1.0, "te", 10)),
    "list page by queue": (q.list_query(None, False, after=True, by_queue=True), ("emails", 1.0, "te", 10)),
    "running": (q._RUNNING, ("t",)),
    "started": (q._STARTED, ("t", 1.0)),
    "forget starts": (q._FORGET_STARTS, ("t", 1.0)),
    "record starts": (q._RECORD_STARTS, {"now": 1.0, "rowids": "[1]", "rated": '["t"]'}),
    "claim limited": (q._CLAIM_LIMITED, {"now": 1.0, "executor_id": "ex", "lease_duration": 1.0, "rowids": "[1]",
                                         "limited": '["t"]'}),
}

FULL_SCAN = re.compile(r"\bSCAN (executions|e)\b(?! USING (COVERING )?INDEX)")
INDEX_FOR = {"finished roots": "executions_finished_roots", "claimable": "executions_claim",
             "top priority": "executions_claim", "list page by queue": "executions_queue",
             "list": "executions_status", "list page": "executions_status", "list by executor": "executions_status",
             "running": "executions_running", "started": "execution_starts USING PRIMARY KEY",
             "forget starts": "execution_starts USING PRIMARY KEY", "record starts": "INTEGER PRIMARY KEY"}


@pytest.mark.parametrize("name", HOT_QUERIES)
def test_hot_query_uses_an_index(tmp_path: Path, name: str) -> None:
    conn = connect(tmp_path / "plan.db")
    create(conn)
    sql, params = HOT_QUERIES[name]
    plan = [detail for *_, detail in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
    assert plan and not any(FULL_SCAN.search(detail) for detail in plan), plan
    assert INDEX_FOR.get(name, "") in plan[0], plan
    unsorted = ("list", "list by executor", "list by task", "claimable", "top priority")
    if name in unsorted or name.startswith("list page"):  # read in index order
        assert not any("TEMP B-TREE" in detail for detail in plan), plan
