"""``insert_executions_on`` and ``insert_executions_on_async``: executions inserted in the
transaction of a caller's own psycopg connection (the outbox pattern) exist if and only if the
caller commits, and the storage's NOTIFY reaches waiting executors when it does."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import psycopg
import pytest
import trio
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row

from durable_conformance.records import claim, new, sleeping
from durable_core.storage import DuplicateSleepingTaskUniqueIdError, StorageError, TransactionalInserts
from durable_storage_postgres import PostgresStorage


@pytest.fixture
def app(dsn: str) -> Iterator[psycopg.Connection]:
    """The application's connection (psycopg's default: not autocommit), with a table of its own."""
    with psycopg.connect(dsn) as conn:
        conn.execute("CREATE TEMPORARY TABLE orders (name text)")
        conn.commit()
        yield conn


def orders(conn: psycopg.Connection) -> list[str]:
    return [name for (name,) in conn.execute("SELECT name FROM orders ORDER BY name")]


async def stored_ids(storage: PostgresStorage) -> list[str]:
    return sorted(r.execution_id for r in await storage.list_executions(limit=1000))


def in_asyncio(dsn: str, work: Callable[[psycopg.AsyncConnection], Awaitable[Any]]) -> Awaitable[Any]:
    """Run ``work`` with an asyncio connection, in an asyncio event loop of another thread (as
    an ``AsyncClient`` in an asyncio application would)."""

    async def main() -> Any:
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            return await work(conn)

    return trio.to_thread.run_sync(asyncio.run, main())


async def test_a_committed_insert_is_stored_claimable_elsewhere_and_wakes_the_change_feed(postgres, app):
    async with postgres() as storage, postgres() as other:
        assert isinstance(storage, TransactionalInserts)
        seen = await other.wait_for_changes(None)
        app.execute("INSERT INTO orders VALUES ('book')")
        record = new("te_mail", deferred_options=frozenset({"retry", "timeout"}))
        assert storage.insert_executions_on(app, [record]) == [record]
        assert await stored_ids(other) == []  # not committed yet
        app.commit()
        with trio.fail_after(10):
            assert await other.wait_for_changes(seen) != seen  # the NOTIFY, delivered at commit
        assert [r.execution_id for r in await claim(other, 1.0)] == ["te_mail"]
        assert orders(app) == ["book"]


async def test_a_rolled_back_transaction_stores_nothing(postgres, app):
    async with postgres() as storage:
        app.execute("INSERT INTO orders VALUES ('book')")
        storage.insert_executions_on(app, [new("te_1"), new("te_2")])
        app.rollback()
        assert await stored_ids(storage) == [] and orders(app) == []
        storage.insert_executions_on(app, [new("te_3")])  # an idle connection: it begins the caller's transaction
        assert app.info.transaction_status is psycopg.pq.TransactionStatus.INTRANS
        app.rollback()
        assert await stored_ids(storage) == []


async def test_an_idempotency_key_inserts_once_in_one_transaction_and_across_transactions(postgres, app):
    async with postgres() as storage:
        first = new("te_1", idempotency_key="order-1")
        assert storage.insert_executions_on(app, [first, new("te_2", idempotency_key="order-1")]) == [first, first]
        assert storage.insert_executions_on(app, [new("te_3", idempotency_key="order-1")]) == [first]
        app.commit()
        assert storage.insert_executions_on(app, [new("te_4", idempotency_key="order-1")]) == [first]
        app.commit()
        assert await stored_ids(storage) == ["te_1"]
        assert await storage.insert_executions([new("te_5", idempotency_key="order-1")]) == [first]


async def test_a_taken_sleeping_unique_id_inserts_nothing_and_the_callers_transaction_goes_on(postgres, app):
    async with postgres() as storage:
        await storage.insert_executions([sleeping("te_asleep", "hook-1")])
        app.execute("INSERT INTO orders VALUES ('book')")
        with pytest.raises(DuplicateSleepingTaskUniqueIdError, match="'hook-1'"):
            storage.insert_executions_on(app, [new("te_1"), sleeping("te_2", "hook-1")])
        app.execute("INSERT INTO orders VALUES ('pen')")  # not aborted: only the savepoint was rolled back
        app.commit()
        assert orders(app) == ["book", "pen"]
        assert await stored_ids(storage) == ["te_asleep"]


async def test_an_existing_execution_id_is_refused_alone(postgres, app):
    async with postgres() as storage:
        await storage.insert_executions([new("te_1")])
        app.execute("INSERT INTO orders VALUES ('book')")
        with pytest.raises(StorageError, match="Task execution te_1 already exists"):
            storage.insert_executions_on(app, [new("te_2"), new("te_1")])
        app.commit()
        assert orders(app) == ["book"] and await stored_ids(storage) == ["te_1"]


async def test_in_autocommit_mode_the_insert_commits_at_once_all_or_none(postgres, dsn):
    async with postgres() as storage:
        await storage.insert_executions([sleeping("te_asleep", "hook-1")])
        with psycopg.connect(dsn, autocommit=True) as conn:
            with pytest.raises(DuplicateSleepingTaskUniqueIdError):
                storage.insert_executions_on(conn, [new("te_1"), sleeping("te_2", "hook-1")])
            storage.insert_executions_on(conn, [new("te_3")])
            assert conn.info.transaction_status is psycopg.pq.TransactionStatus.IDLE
            assert await stored_ids(storage) == ["te_3", "te_asleep"]
            with conn.transaction(force_rollback=True):  # a transaction the caller began is joined
                storage.insert_executions_on(conn, [new("te_4")])
        assert await stored_ids(storage) == ["te_3", "te_asleep"]


async def test_a_callers_row_factory_is_left_alone(postgres, dsn):
    async with postgres() as storage:
        with psycopg.connect(dsn, row_factory=dict_row) as conn:
            record = new("te_1", idempotency_key="k")
            storage.insert_executions_on(conn, [record])
            assert storage.insert_executions_on(conn, [new("te_2", idempotency_key="k")]) == [record]
            assert conn.execute("SELECT 1 AS one").fetchone() == {"one": 1}


async def test_an_asyncio_connection_commits_rolls_back_and_survives_a_failure(postgres, dsn):
    async with postgres() as storage, postgres() as other:
        await storage.insert_executions([sleeping("te_asleep", "hook-1")])
        seen = await other.wait_for_changes(None)

        async def work(conn: psycopg.AsyncConnection) -> list[Any]:
            kept = await storage.insert_executions_on_async(conn, [new("te_1", idempotency_key="k")])
            twin = await storage.insert_executions_on_async(conn, [new("te_2", idempotency_key="k")])
            with pytest.raises(DuplicateSleepingTaskUniqueIdError):
                await storage.insert_executions_on_async(conn, [new("te_3"), sleeping("te_4", "hook-1")])
            await conn.commit()
            await storage.insert_executions_on_async(conn, [new("te_5")])
            await conn.rollback()
            return [kept, twin]

        kept, twin = await in_asyncio(dsn, work)
        assert kept == twin == [new("te_1", idempotency_key="k")]
        assert await stored_ids(storage) == ["te_1", "te_asleep"]
        with trio.fail_after(10):
            assert await other.wait_for_changes(seen) != seen


async def test_a_connection_to_the_same_database_by_another_address_is_accepted(postgres, dsn):
    params = conninfo_to_dict(dsn)
    if params.get("host") not in ("127.0.0.1", "localhost"):
        pytest.skip("the test server is not on this machine")
    other_address = make_conninfo(dsn, host="localhost" if params["host"] == "127.0.0.1" else "127.0.0.1")
    async with postgres() as storage:
        with psycopg.connect(other_address) as conn:
            storage.insert_executions_on(conn, [new("te_1")])
            conn.commit()
        assert await stored_ids(storage) == ["te_1"]


async def test_a_connection_to_anscratch_database_is_refused_and_nothing_is_written(postgres, schema, scratch_database):
    async with postgres() as storage:
        database = conninfo_to_dict(scratch_database)["dbname"]
        message = (f"PostgresStorage.insert_executions_on: the connection is on database '{database}' of the server "
                   r"with system identifier \d+ \(port \d+\), this storage on database '\w+' of the server with "
                   r"system identifier \d+ \(port \d+\) \(PostgreSQL at .*\); pass a connection to the storage's "
                   "database")
        with psycopg.connect(scratch_database) as conn:
            with pytest.raises(StorageError, match=message) as caught:
                storage.insert_executions_on(conn, [new("te_1")])
            assert not caught.value.is_retryable
            conn.commit()
            assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s",
                                (schema,)).fetchone() == (0,)

        async def refused(conn: psycopg.AsyncConnection) -> None:
            with pytest.raises(StorageError, match="insert_executions_on_async: the connection is on database"):
                await storage.insert_executions_on_async(conn, [new("te_2")])

        await in_asyncio(scratch_database, refused)
        assert await stored_ids(storage) == []


async def test_a_connection_of_the_wrong_kind_is_refused_saying_what_to_call(postgres, dsn):
    async with postgres() as storage:
        with psycopg.connect(dsn) as conn:
            with pytest.raises(StorageError, match=re.escape(
                    "PostgresStorage.insert_executions_on_async takes a psycopg.AsyncConnection (psycopg 3) to the "
                    "storage's database, in the caller's transaction; got psycopg.Connection: for that, call "
                    "insert_executions_on (the Client)")):
                await storage.insert_executions_on_async(conn, [new("te_1")])

        async def wrong(conn: psycopg.AsyncConnection) -> None:
            with pytest.raises(StorageError, match=re.escape(
                    "PostgresStorage.insert_executions_on takes a sync psycopg.Connection (psycopg 3) to the "
                    "storage's database, in the caller's transaction; got psycopg.AsyncConnection: for that, call "
                    "insert_executions_on_async (the AsyncClient)")):
                storage.insert_executions_on(conn, [new("te_1")])

        await in_asyncio(dsn, wrong)
        with pytest.raises(StorageError, match="takes a sync psycopg.Connection .*; got builtins.str$"):
            storage.insert_executions_on(dsn, [new("te_1")])
        assert await stored_ids(storage) == []


async def test_an_aborted_or_closed_connection_is_one_clear_error(postgres, app):
    async with postgres() as storage:
        with pytest.raises(psycopg.errors.DivisionByZero):
            app.execute("SELECT 1 / 0")
        with pytest.raises(StorageError, match="the caller's transaction is aborted .* roll it back, then call again"):
            storage.insert_executions_on(app, [new("te_1")])
        app.rollback()
        app.close()
        with pytest.raises(StorageError, match="insert_executions_on: the connection is closed; pass an open one"):
            storage.insert_executions_on(app, [new("te_1")])
        assert await stored_ids(storage) == []
