"""The lane (inserts and run commits, group-committed from trio over libpq's pipeline): a
transaction of many calls commits each call wholly or not at all, and a connection lost while a
transaction is in flight fails its callers with a retryable error and loses nothing committed."""

from __future__ import annotations

import uuid

import psycopg
import pytest
import trio

from durable_conformance.records import claim, finish, new
from durable_core.status import TaskExecutionStatus as S
from durable_core.storage.contract import StorageError


async def test_calls_committed_together_each_apply_wholly_or_not_at_all(postgres):
    async with postgres() as storage:
        await storage.insert_executions([new("te_taken")])
        results: dict[int, object] = {}

        async def insert(i: int) -> None:
            records = [new(f"te_{i}")] + ([new("te_taken")] if i == 3 else [])  # te_taken: not an idempotency twin
            try:
                results[i] = await storage.insert_executions(records)
            except StorageError as exc:
                results[i] = exc

        async with trio.open_nursery() as nursery:  # one tick: one transaction
            for i in range(8):
                nursery.start_soon(insert, i)
        failed = results.pop(3)
        assert isinstance(failed, StorageError) and "already exists" in failed.message
        assert sorted(results) == [0, 1, 2, 4, 5, 6, 7]
        stored = await storage.get_executions([f"te_{i}" for i in range(8)])
        assert [r is not None for r in stored] == [True, True, True, False, True, True, True, True]


async def test_commits_and_inserts_of_one_tick_share_a_transaction_and_all_land(postgres):
    async with postgres() as storage:
        await storage.insert_executions([new(f"te_{i}", now=1.0) for i in range(20)])
        claimed = await claim(storage, 1.0, limit=20)
        async with trio.open_nursery() as nursery:
            for record in claimed:
                nursery.start_soon(storage.commit_runs, [finish(record, S.COMPLETED, 2.0)], 2.0)
            for i in range(20):
                nursery.start_soon(storage.insert_executions, [new(f"te_new_{i}", now=2.0)])
        stored = await storage.get_executions([f"te_{i}" for i in range(20)] + [f"te_new_{i}" for i in range(20)])
        assert [r.status for r in stored] == [S.COMPLETED] * 20 + [S.READY] * 20


@pytest.mark.parametrize("calls", [1, 10])
async def test_a_connection_killed_mid_transaction_fails_its_callers_and_loses_nothing(postgres, dsn, schema, calls):
    """The server process is really terminated (``pg_terminate_backend``) while the transaction
    waits on a lock: every caller gets a retryable error, nothing of theirs was stored, what was
    committed before is there, and the next calls run on a new connection."""
    name = f"lane-test-{uuid.uuid4().hex[:8]}"
    async with postgres(application_name=name) as storage:
        await storage.insert_executions([new("te_before")])
        results: dict[int, object] = {}

        async def insert(i: int) -> None:
            try:
                results[i] = await storage.insert_executions([new(f"te_{i}")])
            except StorageError as exc:
                results[i] = exc

        with psycopg.connect(dsn, autocommit=True) as admin, psycopg.connect(dsn) as locker:
            locker.execute(f"LOCK TABLE {schema}.executions IN ACCESS EXCLUSIVE MODE")
            async with trio.open_nursery() as nursery:
                for i in range(calls):
                    nursery.start_soon(insert, i)
                waiting = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'"
                with trio.fail_after(10):
                    while admin.execute(waiting, (name,)).fetchone() != (1,):
                        await trio.sleep(0.01)
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE application_name = %s AND wait_event_type = 'Lock'", (name,))
            locker.rollback()
        assert len(results) == calls
        assert all(isinstance(error, StorageError) and error.is_retryable for error in results.values())
        assert await storage.get_executions([f"te_{i}" for i in range(calls)]) == [None] * calls
        await storage.insert_executions([new("te_after")])
        stored = await storage.get_executions(["te_before", "te_after"])
        assert [r is not None for r in stored] == [True, True]
