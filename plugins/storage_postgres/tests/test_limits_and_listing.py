"""What migration 0012 changed: only the claims of limited tasks feed the counts of limits and
rates, and a listing without a task or queue merges the status ranges."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from durable_conformance.records import new
from durable_core.status import TaskExecutionStatus as S
from durable_core.storage import RunCommit

NOW = 1000.0
LEASE_DURATION = 15.0


async def test_listing_across_statuses_merges_them_newest_first_page_by_page(postgres):
    """Every page in order, with the executor and status filters, a status named twice once."""
    statuses = [S.READY, S.RUNNING, S.COMPLETED, S.FAILED, S.CANCELLED]
    records = [new(f"te_{i:02}", created_at=float(i // 3), status=statuses[i * 7 % 5], executor_id=f"de_{i % 2}",
                   ready_at=None) for i in range(40)]
    newest = sorted(records, key=lambda r: (r.created_at, r.execution_id), reverse=True)
    async with postgres() as storage:
        await storage.insert_executions(records)

        async def pages(size: int, **filters: Any) -> list[str]:
            listed, cursor = [], None
            while page := await storage.list_executions(limit=size, before=cursor, **filters):
                listed += [r.execution_id for r in page]
                cursor = (page[-1].created_at, page[-1].execution_id)
            return listed

        for size in (1, 4, 100):
            assert await pages(size) == [r.execution_id for r in newest]
        assert await pages(3, executor_id="de_1") == [r.execution_id for r in newest if r.executor_id == "de_1"]
        wanted = [S.FAILED, S.READY, S.FAILED]
        assert await pages(5, statuses=wanted) == [r.execution_id for r in newest if r.status in wanted]
        assert await storage.list_executions(statuses=[]) == []
        assert await storage.list_executions() == newest


async def test_only_claims_of_limited_tasks_enter_the_running_index_or_record_starts(dsn, schema, postgres):
    """Executions of tasks without a limit cost no index update of the concurrency count and no
    start recorded; a limited task's claims are counted, and a rate-limited one's starts kept a day."""
    routed = {"task_ids": frozenset({"free", "capped", "rated"}), "queues": frozenset({"default"})}
    executions, starts = sql.Identifier(schema, "executions"), sql.Identifier(schema, "execution_starts")
    async with postgres() as storage:
        await storage.insert_executions([new(f"te_{task}{i}", task_id=task) for task in ("free", "capped", "rated")
                                         for i in range(3)])
        claimed = await storage.claim_executions("ex", NOW, 10, LEASE_DURATION, **routed,
                                                 limits={"capped": 2}, rates={"rated": (2, 60.0)})
        assert sorted(r.execution_id for r in claimed) == [
            "te_capped0", "te_capped1", "te_free0", "te_free1", "te_free2", "te_rated0", "te_rated1"]
        with psycopg.connect(dsn) as conn:
            assert conn.execute(sql.SQL("SELECT task_id, count(*) FROM {} WHERE is_limited AND status = 'running' "
                                        "AND lease_expires_at IS NOT NULL GROUP BY task_id ORDER BY task_id")
                                .format(executions)).fetchall() == [("capped", 2), ("rated", 2)]
            assert conn.execute(sql.SQL("SELECT task_id, started_at, execution_id, lease_token FROM {} "
                                        "ORDER BY execution_id").format(starts)).fetchall() == [
                ("rated", NOW, "te_rated0", 1), ("rated", NOW, "te_rated1", 1)]
        later = NOW + 86400 + 1  # a day on, the starts of then are forgotten at the next count
        assert len(await storage.claim_executions("ex", later, 10, LEASE_DURATION, **routed,
                                                  rates={"rated": (2, 60.0)})) == 2  # te_capped2 and te_rated2
        with psycopg.connect(dsn) as conn:
            assert conn.execute(sql.SQL("SELECT execution_id, started_at FROM {}").format(starts)).fetchall() == [
                ("te_rated2", later)]


async def test_a_rate_limit_counts_every_start_so_a_retry_within_the_period_counts_again(postgres):
    """PostgreSQL records each start, as SQLite does: an execution started twice within the
    period takes two of its starts (the memory storage counts an execution once)."""
    routed = {"task_ids": frozenset({"a"}), "queues": frozenset({"default"}), "rates": {"a": (2, 60.0)}}
    async with postgres() as storage:
        await storage.insert_executions([new("te_a0", task_id="a", now=NOW),
                                         new("te_a1", task_id="a", now=NOW, ready_at=NOW + 5)])
        # claims of 1, within the room: with the tasks claimed together (no rate binds yet)
        (first,) = await storage.claim_executions("ex", NOW, 1, LEASE_DURATION, **routed)
        await storage.commit_runs([RunCommit(first.copy(status=S.READY, ready_at=NOW + 1, retry_attempts=1))], NOW)
        (again,) = await storage.claim_executions("ex", NOW + 1, 1, LEASE_DURATION, **routed)
        assert (again.execution_id, again.started_at) == ("te_a0", NOW + 1)
        assert await storage.claim_executions("ex", NOW + 30, 10, LEASE_DURATION, **routed) == []
        assert [r.execution_id for r in await storage.claim_executions("ex", NOW + 60.5, 10, LEASE_DURATION,
                                                                       **routed)] == ["te_a1"]


async def test_a_limited_claim_that_names_no_queues_flags_and_records_too(postgres):
    """Not the engine's claim (it names queues), but a limit holds there as well."""
    async with postgres() as storage:
        await storage.insert_executions([new(f"te_{i}", task_id="a", now=NOW) for i in range(4)])
        claimed = [await storage.claim_executions("ex", NOW + i, 10, LEASE_DURATION, task_ids=frozenset({"a"}),
                                                  limits={"a": 2}, rates={"a": (3, 60.0)}) for i in range(2)]
        assert [len(batch) for batch in claimed] == [2, 0]
        await storage.commit_runs([RunCommit(r.copy(status=S.COMPLETED, finished_at=NOW)) for r in claimed[0]], NOW)
        # two ready, two finished: the rate's room is the one start left of three
        (third,) = await storage.claim_executions("ex", NOW + 2, 10, LEASE_DURATION, task_ids=frozenset({"a"}),
                                                  rates={"a": (3, 60.0)})
        assert third.execution_id == "te_2"
