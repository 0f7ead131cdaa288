"""``insert_executions_on``: executions inserted in the transaction of a caller's own sqlite3
connection (the outbox pattern) exist if and only if the caller commits."""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from durable_conformance.records import new, sleeping
from durable_core import DurableExecutor
from durable_core.status import TaskExecutionStatus as S
from durable_core.storage import DuplicateSleepingTaskUniqueIdError, NonBlockingInserts, StorageError, TransactionalInserts
from durable_storage_sqlite import SqliteStorage



@pytest.fixture
def app(path: Path) -> Iterator[sqlite3.Connection]:
    """The application's connection to the storage's file, Python's default (legacy) transactions."""
    conn = sqlite3.connect(path)
    yield conn
    conn.close()


def orders(conn: sqlite3.Connection) -> list[str]:
    return [name for (name,) in conn.execute("SELECT name FROM orders ORDER BY name")]


async def stored_ids(storage: SqliteStorage) -> list[str]:
    return sorted(r.execution_id for r in await storage.list_executions(limit=1000))


def add_order(conn: sqlite3.Connection, name: str) -> None:
    conn.execute("INSERT INTO orders (name) VALUES (?)", (name,))


async def test_executions_inserted_in_a_committed_transaction_are_stored_and_run(
    sqlite: Any, app: sqlite3.Connection, path: Path
) -> None:
    """Another storage object's executor, polling once an hour, starts the execution as soon as
    the caller commits: the change feed sees the caller's commit."""
    worker = DurableExecutor("sqlite", storage_options={"path": path}, poll_interval=3600)
    ran = trio.Event()

    @worker.task(id="send_email", timeout=10)
    async def send_email(ctx: Any, input: Any) -> str:
        ran.set()
        return f"sent {input['n']}"

    async with sqlite() as storage:
        assert isinstance(storage, TransactionalInserts)
        app.execute("CREATE TABLE orders (name TEXT)")
        app.commit()
        async with worker:
            seen = await storage.wait_for_changes(None)
            add_order(app, "book")
            record = new("te_mail", task_id="send_email", deferred_options=frozenset({"timeout"}))
            assert storage.insert_executions_on(app, [record]) == [record]
            assert app.in_transaction and await stored_ids(storage) == []  # not committed yet
            app.commit()
            with trio.fail_after(10):
                assert await storage.wait_for_changes(seen) != seen
                await ran.wait()
                handle = await worker.get_task_execution_handle(send_email, "te_mail")
                finished = await handle.wait_and_get_finished_execution()
        assert (finished.status, finished.output) == (S.COMPLETED, "sent 1")
        assert orders(app) == ["book"]


async def test_a_rolled_back_transaction_stores_nothing(sqlite: Any, app: sqlite3.Connection) -> None:
    async with sqlite() as storage:
        app.execute("CREATE TABLE orders (name TEXT)")
        app.commit()
        add_order(app, "book")
        storage.insert_executions_on(app, [new("te_1"), new("te_2")])
        app.rollback()
        assert await stored_ids(storage) == [] and orders(app) == []
        storage.insert_executions_on(app, [new("te_3")])  # not in a transaction: it begins the caller's
        assert app.in_transaction
        app.rollback()
        assert await stored_ids(storage) == []


async def test_an_idempotency_key_inserts_once_in_one_transaction_and_across_transactions(
    sqlite: Any, app: sqlite3.Connection
) -> None:
    async with sqlite() as storage:
        first = new("te_1", idempotency_key="order-1")
        twins = [new(f"te_{n}", idempotency_key="order-1") for n in (2, 3, 4)]
        assert storage.insert_executions_on(app, [first, twins[0]]) == [first, first]
        assert storage.insert_executions_on(app, twins[1:2]) == [first]  # a later call, same transaction
        app.commit()
        assert await storage.insert_executions_on_async(app, twins[2:]) == [first]  # a later transaction
        app.rollback()
        assert await storage.insert_executions(twins) == [first] * 3
        assert await stored_ids(storage) == ["te_1"]


async def test_a_taken_sleeping_unique_id_inserts_nothing_and_the_callers_transaction_goes_on(
    sqlite: Any, app: sqlite3.Connection
) -> None:
    async with sqlite() as storage:
        await storage.insert_executions([sleeping("te_asleep", "hook-1")])
        app.execute("CREATE TABLE orders (name TEXT)")
        app.commit()
        add_order(app, "book")
        with pytest.raises(DuplicateSleepingTaskUniqueIdError, match="'hook-1'"):
            storage.insert_executions_on(app, [new("te_1"), sleeping("te_2", "hook-1")])
        assert app.in_transaction  # the caller's transaction, with its order, is still open
        add_order(app, "pen")
        app.commit()
        assert orders(app) == ["book", "pen"]
        assert await stored_ids(storage) == ["te_asleep"]


async def test_outside_a_transaction_a_failure_leaves_none_open(sqlite: Any, app: sqlite3.Connection) -> None:
    async with sqlite() as storage:
        await storage.insert_executions([sleeping("te_asleep", "hook-1")])
        with pytest.raises(DuplicateSleepingTaskUniqueIdError):
            storage.insert_executions_on(app, [new("te_1"), sleeping("te_2", "hook-1")])
        assert not app.in_transaction
        assert await stored_ids(storage) == ["te_asleep"]


async def test_in_autocommit_mode_the_insert_commits_at_once_all_or_none(sqlite: Any, path: Path) -> None:
    """With ``isolation_level=None`` there is no transaction to join unless the caller began one."""
    async with sqlite() as storage:
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            await storage.insert_executions([sleeping("te_asleep", "hook-1")])
            with pytest.raises(DuplicateSleepingTaskUniqueIdError):
                storage.insert_executions_on(conn, [new("te_1"), sleeping("te_2", "hook-1")])
            storage.insert_executions_on(conn, [new("te_3")])
            assert not conn.in_transaction
            assert await stored_ids(storage) == ["te_3", "te_asleep"]
            conn.execute("BEGIN")  # a transaction the caller began is joined, not committed
            storage.insert_executions_on(conn, [new("te_4")])
            conn.execute("ROLLBACK")
            assert await stored_ids(storage) == ["te_3", "te_asleep"]
        finally:
            conn.close()


async def test_the_async_variant_takes_the_same_connection(sqlite: Any, app: sqlite3.Connection) -> None:
    async with sqlite() as storage:
        record = new("te_1")
        assert await storage.insert_executions_on_async(app, [record]) == [record]
        app.commit()
        assert await stored_ids(storage) == ["te_1"]


async def test_the_callers_row_and_text_factories_are_left_as_they_were(
    sqlite: Any, app: sqlite3.Connection
) -> None:
    app.row_factory = sqlite3.Row
    app.text_factory = bytes
    async with sqlite() as storage:
        record = new("te_1", idempotency_key="k")
        storage.insert_executions_on(app, [record])
        assert storage.insert_executions_on(app, [new("te_2", idempotency_key="k")]) == [record]
    assert (app.row_factory, app.text_factory) == (sqlite3.Row, bytes)


async def test_a_connection_to_the_same_file_by_another_path_is_accepted(
    sqlite: Any, path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with sqlite() as storage:
        link = tmp_path / "link.db"
        link.symlink_to(path)
        monkeypatch.chdir(tmp_path)
        for name in (str(link), "durable.db", f"./sub/../{path.name}"):
            (tmp_path / "sub").mkdir(exist_ok=True)
            conn = sqlite3.connect(name)
            try:
                storage.insert_executions_on(conn, [new(f"te_{len(name)}")])
                conn.commit()
            finally:
                conn.close()
        assert len(await stored_ids(storage)) == 3


async def test_a_connection_to_another_database_is_refused_and_nothing_is_written(
    sqlite: Any, path: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other.db"
    async with sqlite() as storage:
        for conn, where in [(sqlite3.connect(other), str(other)),
                            (sqlite3.connect(":memory:"), "an in-memory database")]:
            message = (f"the connection is on {where}, this storage on {path}; pass a connection to the "
                       f"storage's file: sqlite3.connect({str(path)!r})")
            with pytest.raises(StorageError, match=re.escape(message)) as caught:
                storage.insert_executions_on(conn, [new("te_1")])
            assert not caught.value.is_retryable and not conn.in_transaction
            assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)
            conn.close()
        assert await stored_ids(storage) == []
    assert os.path.getsize(other) == 0


@pytest.mark.parametrize("connection", ["durable.db", None, object()], ids=["path", "none", "object"])
async def test_a_connection_of_another_kind_is_refused(sqlite: Any, connection: object) -> None:
    async with sqlite() as storage:
        for call in (storage.insert_executions_on, storage.insert_executions_on_async):
            with pytest.raises(StorageError, match=f"SqliteStorage.{call.__name__} takes a sqlite3.Connection"):
                result = call(connection, [new("te_1")])
                if not isinstance(result, list):
                    await result
        assert await stored_ids(storage) == []


async def test_a_closed_connection_or_one_of_another_thread_is_one_clear_error(sqlite: Any, path: Path) -> None:
    closed = sqlite3.connect(path)
    closed.close()
    elsewhere = await trio.to_thread.run_sync(sqlite3.connect, path)
    async with sqlite() as storage:
        for conn, reason in [(closed, "Cannot operate on a closed database"), (elsewhere, "same thread")]:
            with pytest.raises(StorageError, match=f"SqliteStorage.insert_executions_on cannot use this connection: "
                                                   f".*{reason}") as caught:
                storage.insert_executions_on(conn, [new("te_1")])
            assert not caught.value.is_retryable
        assert await stored_ids(storage) == []


async def test_a_non_blocking_insert_commits_unless_another_connection_holds_the_lock(sqlite: Any,
                                                                                       path: Path) -> None:
    """``NonBlockingInserts`` (what ``AsyncClient`` writes with on its loop's thread): committed at
    once when the lock is free; None and nothing written while another connection holds it."""
    async with sqlite() as storage:
        assert isinstance(storage, NonBlockingInserts)
        conn = storage.connect()
        try:
            assert storage.try_insert_executions_on(conn, [new("te_now")]) == [new("te_now")]
            blocker = sqlite3.connect(path, isolation_level=None)
            blocker.execute("BEGIN IMMEDIATE")
            assert storage.try_insert_executions_on(conn, [new("te_later")]) is None
            assert not conn.in_transaction
            blocker.execute("COMMIT")
            blocker.close()
            assert storage.try_insert_executions_on(conn, [new("te_later")]) == [new("te_later")]
        finally:
            conn.close()
        assert await stored_ids(storage) == ["te_later", "te_now"]
        with pytest.raises(StorageError, match="takes a connection from this storage's connect()"):
            storage.try_insert_executions_on(sqlite3.connect(path), [new("te_x")])


async def test_with_synchronous_full_a_non_blocking_insert_never_runs(sqlite: Any) -> None:
    """Each commit would wait for the disk: the caller must take the path that may wait."""
    async with sqlite(synchronous="FULL") as storage:
        conn = storage.connect()
        try:
            assert storage.try_insert_executions_on(conn, [new("te_1")]) is None
        finally:
            conn.close()
        assert await stored_ids(storage) == []
