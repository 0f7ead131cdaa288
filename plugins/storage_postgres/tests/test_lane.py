"""The lane (inserts and run commits, group-committed from trio over libpq's pipeline): a
transaction of many calls commits each call wholly or not at all, and a connection lost while a
transaction is in flight fails its callers with a retryable error and loses nothing committed.
Inserts run optimistically (plain INSERTs, one implicit transaction in one round trip); NOTIFYs of a burst
are coalesced, and the one owed is sent once the burst is over."""

from __future__ import annotations

import uuid

import psycopg
import pytest
import trio

from durable_conformance.records import claim, finish, new
from durable_core.storage import ExecutionRecord
from durable_core.status import TaskExecutionStatus as S
from durable_core.storage.contract import StorageError
from durable_storage_postgres import _lane


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


async def test_an_idempotency_twin_in_a_transaction_of_many_runs_it_again_and_every_call_gets_its_record(postgres):
    """The optimistic transaction fails on the twin's conflict; run again, each call gets what it
    would alone: the twin the stored record, the others theirs, stored."""
    async with postgres() as storage:
        (stored,) = await storage.insert_executions([new("te_first", idempotency_key="k")])
        results: dict[int, list[ExecutionRecord]] = {}

        async def insert(i: int) -> None:
            records = [new(f"te_{i}")] + ([new("te_twin", idempotency_key="k")] if i == 3 else [])
            results[i] = await storage.insert_executions(records)

        async with trio.open_nursery() as nursery:  # one tick: one transaction
            for i in range(8):
                nursery.start_soon(insert, i)
        assert [r.execution_id for r in results[3]] == ["te_3", "te_first"]
        assert results[3][1] == stored
        assert all([r.execution_id for r in results[i]] == [f"te_{i}"] for i in range(8) if i != 3)
        found = await storage.get_executions([f"te_{i}" for i in range(8)] + ["te_twin"])
        assert [r is not None for r in found] == [True] * 8 + [False]


async def test_notifications_of_a_burst_are_coalesced_and_the_last_change_is_told(postgres, monkeypatch):
    """Another storage object (another process) is told of a change within a burst of
    transactions too: by the NOTIFY owed, sent once ``NOTIFY_INTERVAL`` has passed with no
    transaction to carry it; and by the one owed when the storage closes."""
    monkeypatch.setattr(_lane, "NOTIFY_INTERVAL", 0.3)
    async with postgres() as writer, postgres() as watcher:
        seen = await watcher.wait_for_changes(None)

        async def told() -> float:
            """When ``watcher`` is told of a change next."""
            nonlocal seen
            seen = await watcher.wait_for_changes(seen)
            return trio.current_time()

        first = trio.current_time()
        await writer.insert_executions([new("te_1")])  # the first of a burst: told at once
        assert await told() < first + 0.3
        await writer.insert_executions([new("te_2")])  # within the interval: owed
        assert await told() >= first + 0.3  # no transaction came: paid on its own
        assert await watcher.get_executions(["te_2"]) != [None]
        third = trio.current_time()
        await writer.insert_executions([new("te_3")])  # within the interval of the NOTIFY paid
        await writer.aclose()  # pays it now
        assert await told() < third + 0.3


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


async def test_the_calls_a_transaction_woke_join_those_made_meanwhile(postgres):
    """One execution at a time, a producer's next insert and the commit of the run its last insert
    started (made ticks later) share a transaction: about one per execution, not 1.5 (31 of them
    here before the lane waited for them)."""
    async with postgres() as storage:
        lane = storage._lane
        transaction = lane._transaction
        transactions = 0

        async def counted(*args):
            nonlocal transactions
            transactions += 1
            return await transaction(*args)

        lane._transaction = counted
        async with trio.open_nursery() as nursery:

            async def run(i: int) -> None:  # as the runner's commit: two ticks after the run starts
                await trio.lowlevel.checkpoint()
                await trio.lowlevel.checkpoint()
                await storage.insert_executions([new(f"te_run_{i}")])

            for i in range(20):
                await storage.insert_executions([new(f"te_{i}")])
                nursery.start_soon(run, i)
        assert transactions <= 20 + 3
        stored = await storage.get_executions([f"te_{i}" for i in range(20)] + [f"te_run_{i}" for i in range(20)])
        assert all(r is not None for r in stored)


async def test_a_claim_does_not_wait_for_a_lane_transaction_waiting_on_a_lock(postgres, dsn, schema):
    """Claims (SKIP LOCKED) cannot deadlock with the lane, so they do not take turns with it: while
    a commit waits on a row another connection locked, a claim of other executions returns."""
    name = f"lane-test-{uuid.uuid4().hex[:8]}"
    async with postgres(application_name=name) as storage:
        await storage.insert_executions([new("te_run", now=1.0)])
        (running,) = await claim(storage, 1.0, limit=1)
        await storage.insert_executions([new("te_other", now=2.0)])
        with psycopg.connect(dsn, autocommit=True) as admin, psycopg.connect(dsn) as locker:
            locker.execute(f"SELECT 1 FROM {schema}.executions WHERE execution_id = 'te_run' FOR UPDATE")
            async with trio.open_nursery() as nursery:
                nursery.start_soon(storage.commit_runs, [finish(running, S.COMPLETED, 3.0)], 3.0)
                waiting = ("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
                           "AND wait_event_type = 'Lock'")
                with trio.fail_after(10):
                    while admin.execute(waiting, (name,)).fetchone() != (1,):
                        await trio.sleep(0.01)
                try:
                    with trio.fail_after(5):
                        claimed = await claim(storage, 3.0)
                finally:
                    locker.rollback()
                assert [r.execution_id for r in claimed] == ["te_other"]
        assert [r.status for r in await storage.get_executions(["te_run", "te_other"])] == [S.COMPLETED, S.RUNNING]


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


@pytest.mark.parametrize("where", ["lane", "thread"])
async def test_a_cancel_request_not_meant_for_a_transaction_runs_it_again(postgres, dsn, schema, where):
    """A cancel request sent to abandon a transaction may reach the server after that one ended,
    and cancel the next on the connection. Here the server really cancels (``pg_cancel_backend``)
    a transaction no caller gave up, while it waits on a lock: it runs again, and its caller gets
    its result, on the lane (an insert) and on a connection thread (a cancel of executions)."""
    name = f"lane-test-{uuid.uuid4().hex[:8]}"
    async with postgres(application_name=name) as storage:
        await storage.insert_executions([new("te_ready")])
        results: list[object] = []

        async def write() -> None:
            if where == "lane":
                results.append(await storage.insert_executions([new("te_new")]))
            else:
                results.append(await storage.cancel_executions(["te_ready"], 2.0))

        with psycopg.connect(dsn, autocommit=True) as admin, psycopg.connect(dsn) as locker:
            locker.execute(f"LOCK TABLE {schema}.executions IN ACCESS EXCLUSIVE MODE")
            waiting = ("SELECT pid, xact_start FROM pg_stat_activity WHERE application_name = %s "
                       "AND wait_event_type = 'Lock'")
            async with trio.open_nursery() as nursery:
                nursery.start_soon(write)
                with trio.fail_after(10):
                    while not (blocked := admin.execute(waiting, (name,)).fetchall()):
                        await trio.sleep(0.01)
                (pid, began), = blocked
                admin.execute("SELECT pg_cancel_backend(%s)", (pid,))
                with trio.fail_after(10):  # until the transaction runs again, waiting on the lock anew
                    while not results and not any(again > began for _, again in admin.execute(waiting, (name,))):
                        await trio.sleep(0.01)
                locker.rollback()
        assert len(results) == 1 and not isinstance(results[0], BaseException)
        if where == "lane":
            assert (await storage.get_executions(["te_new"]))[0] is not None
        else:
            assert (await storage.get_executions(["te_ready"]))[0].status is S.CANCELLED
