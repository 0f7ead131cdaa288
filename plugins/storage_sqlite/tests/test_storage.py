"""Every operation of the storage contract on SQLite, called directly."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from durable_core import DurableExecutor, open_storage
from durable_core.errors import ErrorInfo
from durable_core.models import ExecutionRef, ParentRef, RetryOptions
from durable_core.status import TaskExecutionStatus as S
from durable_core.storage import CANCELLED_ERROR, EXPIRED_ERROR, EXPIRED_TOO_OFTEN_ERROR, SLEEPING_TIMED_OUT_ERROR
from durable_core.storage import STORAGE_API, Capabilities, DuplicateSleepingTaskUniqueIdError, ExecutionRecord
from durable_core.storage import ExecutorInfo, Lease, Payload, RunCommit, SleepingWakeup, StatusChange
from durable_core.storage import Storage, StorageError, cascade_error
from durable_storage_sqlite import SqliteStorage
from durable_storage_sqlite._thread import Kind

NOW = 1_000.0
LEASE_DURATION = 70.0


def record(execution_id: str, **fields: Any) -> ExecutionRecord:
    """A ready top-level execution due at ``NOW``, with ``fields`` changed."""
    defaults: dict[str, Any] = dict(
        task_id="task", status=S.READY, input=Payload("json", b"null"), retry=RetryOptions(),
        timeout=10.0, sleep_before_run=0.0, created_at=NOW, updated_at=NOW, start_at=NOW, ready_at=NOW,
    )  # fmt: skip
    return ExecutionRecord(execution_id=execution_id, **{**defaults, **fields})


def child(execution_id: str, parent: str, index: int = 0, **fields: Any) -> ExecutionRecord:
    return record(execution_id, **{"parent": ParentRef("task", parent, index), "root": ExecutionRef("task", parent), **fields})


def sleeping_fields(unique_id: str) -> dict[str, Any]:
    return dict(
        status=S.RUNNING, is_sleeping=True, sleeping_unique_id=unique_id, ready_at=None, started_at=NOW,
        lease_expires_at=NOW + 10,
    )  # fmt: skip


def sleeping(execution_id: str, unique_id: str) -> ExecutionRecord:
    return record(execution_id, **sleeping_fields(unique_id))


def waiting(execution_id: str, children: int, **fields: Any) -> ExecutionRecord:
    defaults = dict(status=S.WAITING_FOR_CHILDREN, active_children_count=children, ready_at=None, started_at=NOW)
    return record(execution_id, **{**defaults, **fields})


def change(r: ExecutionRecord, previous: S | None, status: S) -> StatusChange:
    return StatusChange(r.execution_id, r.task_id, previous, status)


async def one(storage: SqliteStorage, execution_id: str) -> ExecutionRecord:
    (stored,) = await storage.get_executions([execution_id])
    assert stored is not None
    return stored


async def claim(storage: SqliteStorage, now: float = NOW, limit: int = 1000) -> dict[str, ExecutionRecord]:
    return {r.execution_id: r for r in await storage.claim_executions("ex", now, limit, LEASE_DURATION)}


# ---------------------------------------------------------------------------------- records


def full_record() -> ExecutionRecord:
    """Every field set to something other than its default."""
    return ExecutionRecord(
        execution_id="te_full", task_id="upload", status=S.WAITING_FOR_FINALIZE,
        input=Payload("cbor", bytes(range(256))), retry=RetryOptions(3, 1.5, 2.0, 30.0), timeout=12.5,
        sleep_before_run=2.25, created_at=NOW - 10, updated_at=NOW - 5, start_at=NOW - 8,
        root=ExecutionRef("root_task", "te_root"), parent=ParentRef("parent_task", "te_parent", 7, True),
        is_sleeping=True, sleeping_unique_id="unique-1", idempotency_key="key-1",
        output=Payload("json", b'{"a": 1}'), run_output=Payload("json", b""),
        error=ErrorInfo("timed_out", "too slow \u2713", is_retryable=False, is_internal=True),
        retry_attempts=2, lease_expirations=3,
        children=tuple(ExecutionRef(("a", "b", "b")[i % 3], f"te_child_{i}") for i in range(1000)),
        finalize=ExecutionRef("finish", "te_finalize"), active_children_count=4, started_at=NOW - 7,
        finished_at=NOW - 1, waiting_for_children_started_at=NOW - 6, waiting_for_finalize_started_at=NOW - 4,
        ready_at=NOW + 1, executor_id="de_1", lease_token=9, lease_expires_at=NOW + 100,
    )  # fmt: skip


async def test_every_field_round_trips_and_survives_reopening(sqlite: Any) -> None:
    full, bare = full_record(), record("te_bare", ready_at=None)
    async with sqlite() as storage:
        assert await storage.insert_executions([full, bare]) == [full, bare]
        assert await storage.get_executions(["te_full", "te_bare"]) == [full, bare]
        assert await storage.get_executions_by_sleeping_unique_id(["unique-1"]) == [full]
        assert await storage.list_executions() == [bare, full]
    async with sqlite() as storage:
        assert await storage.get_executions(["te_full", "te_bare"]) == [full, bare]
        (stored,) = await storage.get_executions(["te_full"])
        assert stored is not None and all(isinstance(t, float) for t in (stored.timeout, stored.created_at))


async def test_close_and_reopen_keeps_every_state(sqlite: Any) -> None:
    async with sqlite() as storage:
        await storage.insert_executions([record(f"te_{i}", created_at=NOW + i) for i in range(5)])
        claimed = await claim(storage, limit=2)
        await storage.commit_runs([RunCommit(claimed["te_0"].copy(status=S.COMPLETED, finished_at=NOW))], NOW)
        before = await storage.list_executions()
    async with sqlite() as storage:
        assert await storage.list_executions() == before
        assert await storage.find_revoked_leases([claimed["te_1"].lease]) == []


async def test_idempotency_key_returns_the_stored_execution(sqlite: Any) -> None:
    first = record("te_1", idempotency_key="k")
    async with sqlite() as storage:
        assert await storage.insert_executions([first]) == [first]
        stored = await storage.insert_executions([
            record("te_2", idempotency_key="k"),
            record("te_3", task_id="other", idempotency_key="k"),
            record("te_4", idempotency_key="k2"),
            record("te_5", idempotency_key="k2"),
        ])  # fmt: skip
        assert [r.execution_id for r in stored] == ["te_1", "te_3", "te_4", "te_4"]
        assert await storage.get_executions(["te_2", "te_5"]) == [None, None]


async def test_taken_sleeping_unique_id_inserts_nothing(sqlite: Any) -> None:
    async with sqlite() as storage:
        await storage.insert_executions([sleeping("te_1", "u")])
        with pytest.raises(DuplicateSleepingTaskUniqueIdError, match="'u'"):
            await storage.insert_executions([record("te_2"), sleeping("te_3", "u")])
        with pytest.raises(DuplicateSleepingTaskUniqueIdError):
            await storage.insert_executions([sleeping("te_4", "v"), sleeping("te_5", "v")])
        assert await storage.get_executions(["te_2", "te_3", "te_4", "te_5"]) == [None] * 4


async def test_existing_execution_id_inserts_nothing(sqlite: Any) -> None:
    async with sqlite() as storage:
        await storage.insert_executions([record("te_1")])
        with pytest.raises(StorageError, match="te_1"):
            await storage.insert_executions([record("te_2"), record("te_1", task_id="other")])
        assert await storage.get_executions(["te_2"]) == [None]
        assert (await one(storage, "te_1")).task_id == "task"


async def test_lookups_keep_input_order_with_none_for_unknown(sqlite: Any) -> None:
    async with sqlite() as storage:
        a, b = record("te_a"), sleeping("te_b", "ub")
        await storage.insert_executions([a, b])
        assert await storage.get_executions(["te_b", "nope", "te_a"]) == [b, None, a]
        assert await storage.get_executions_by_sleeping_unique_id(["nope", "ub"]) == [None, b]


async def test_list_filters_newest_first(sqlite: Any) -> None:
    records = [
        record("te_1", created_at=1.0),
        record("te_2", created_at=2.0, status=S.COMPLETED, ready_at=None),
        record("te_3", created_at=3.0, task_id="other"),
        record("te_4", created_at=3.0),
        record("te_5", created_at=5.0, status=S.FAILED, task_id="other", ready_at=None),
    ]
    async with sqlite() as storage:
        await storage.insert_executions(records)

        async def ids(**filters: Any) -> list[str]:
            return [r.execution_id for r in await storage.list_executions(**filters)]

        assert await ids() == ["te_5", "te_4", "te_3", "te_2", "te_1"]  # equal times: newest insert first
        assert await ids(limit=2) == ["te_5", "te_4"]
        assert await ids(statuses=[S.COMPLETED, S.FAILED]) == ["te_5", "te_2"]
        assert await ids(task_id="other") == ["te_5", "te_3"]
        assert await ids(task_id="other", statuses=[S.READY]) == ["te_3"]
        assert await ids(statuses=[]) == []


async def test_listing_across_statuses_merges_them_newest_first_page_by_page(sqlite: Any) -> None:
    """Without a task or queue, a listing merges the ranges of each status (there is no index on
    created_at alone): every page in order, with the executor and status filters, a status named twice once."""
    statuses = [S.READY, S.RUNNING, S.COMPLETED, S.FAILED, S.CANCELLED]
    records = [record(f"te_{i:02}", created_at=float(i // 3), status=statuses[i * 7 % 5], executor_id=f"de_{i % 2}",
                      ready_at=None) for i in range(40)]
    newest = sorted(records, key=lambda r: (r.created_at, r.execution_id), reverse=True)
    async with sqlite() as storage:
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
        assert await storage.list_executions() == newest[:100]


# ---------------------------------------------------------------------------------- claims


async def test_claim_takes_due_records_earliest_first(sqlite: Any) -> None:
    async with sqlite() as storage:
        await storage.insert_executions([
            record("te_a", ready_at=NOW - 1, timeout=5.0),
            record("te_b", ready_at=NOW - 2),
            record("te_later", ready_at=NOW + 1),
            record("te_idle", ready_at=None),
            waiting("te_parent", 0, ready_at=NOW - 3, started_at=NOW - 50, timeout=20.0),
        ])  # fmt: skip
        claimed = await storage.claim_executions("ex", NOW, 2, LEASE_DURATION)
        assert [r.execution_id for r in claimed] == ["te_parent", "te_b"]
        parent, b = claimed
        assert parent == waiting(
            "te_parent", 0, started_at=NOW - 50, timeout=20.0, updated_at=NOW, ready_at=None,
            executor_id="ex", lease_token=1, lease_expires_at=NOW + LEASE_DURATION,
        )  # fmt: skip
        assert b == record(
            "te_b", status=S.RUNNING, started_at=NOW, updated_at=NOW, ready_at=None, executor_id="ex",
            lease_token=1, lease_expires_at=NOW + LEASE_DURATION,
        )  # fmt: skip
        assert await storage.get_executions(["te_parent", "te_b"]) == claimed
        assert list(await claim(storage)) == ["te_a"]
        assert await claim(storage) == {}
        assert list(await claim(storage, now=NOW + 1)) == ["te_later"]


async def test_two_connections_to_one_file_never_claim_the_same_record(sqlite: Any) -> None:
    ids = [f"te_{i}" for i in range(2000)]
    async with sqlite() as first, sqlite() as second:
        await first.insert_executions([record(i) for i in ids])
        claimed: list[str] = []

        async def claimer(storage: SqliteStorage) -> None:
            while batch := await storage.claim_executions("ex", NOW, 7, LEASE_DURATION):
                claimed.extend(r.execution_id for r in batch)

        async with trio.open_nursery() as nursery:
            for storage in (first, second) * 5:
                nursery.start_soon(claimer, storage)
        assert sorted(claimed) == sorted(ids)
        assert {r.lease_token for r in await second.get_executions(ids) if r} == {1}


async def test_only_claims_of_limited_tasks_enter_the_running_index_or_record_starts(sqlite: Any, path: Path) -> None:
    """Executions of tasks without a limit cost no index update of the concurrency count and no
    start recorded; a limited task's claims are counted, and a rate-limited one's starts kept a day."""
    routed = {"task_ids": frozenset({"free", "capped", "rated"}), "queues": frozenset({"default"})}
    async with sqlite() as storage:
        await storage.insert_executions([record(f"te_{task}{i}", task_id=task) for task in ("free", "capped", "rated")
                                         for i in range(3)])
        claimed = await storage.claim_executions("ex", NOW, 10, LEASE_DURATION, **routed,
                                                 limits={"capped": 2}, rates={"rated": (2, 60.0)})
        assert sorted(r.execution_id for r in claimed) == [
            "te_capped0", "te_capped1", "te_free0", "te_free1", "te_free2", "te_rated0", "te_rated1"]
        conn = sqlite3.connect(path)
        assert conn.execute("SELECT task_id, count(*) FROM executions INDEXED BY executions_running "
                            "WHERE is_limited = 1 AND status = 'running' AND lease_expires_at IS NOT NULL "
                            "GROUP BY task_id ORDER BY task_id").fetchall() == [("capped", 2), ("rated", 2)]
        assert conn.execute("SELECT task_id, started_at, execution_id, lease_token FROM execution_starts "
                            "ORDER BY execution_id").fetchall() == [("rated", NOW, "te_rated0", 1),
                                                                    ("rated", NOW, "te_rated1", 1)]
        later = NOW + 86400 + 1  # a day on, the starts of then are forgotten at the next count
        assert len(await storage.claim_executions("ex", later, 10, LEASE_DURATION, **routed,
                                                  rates={"rated": (2, 60.0)})) == 2  # te_capped2 and te_rated2
        assert conn.execute("SELECT execution_id, started_at FROM execution_starts").fetchall() == [
            ("te_rated2", later)]


async def test_a_rate_limit_counts_every_start_so_a_retry_within_the_period_counts_again(sqlite: Any) -> None:
    """SQLite records each start: an execution started twice within the period takes two of its
    starts (the memory and PostgreSQL storages count an execution once, by its latest start)."""
    routed = {"task_ids": frozenset({"a"}), "queues": frozenset({"default"}), "rates": {"a": (2, 60.0)}}
    async with sqlite() as storage:
        await storage.insert_executions([record("te_a0", task_id="a"), record("te_a1", task_id="a", ready_at=NOW + 5)])
        # claims of 1, within the room: with the tasks claimed together (no rate binds yet)
        (first,) = await storage.claim_executions("ex", NOW, 1, LEASE_DURATION, **routed)
        await storage.commit_runs([RunCommit(first.copy(status=S.READY, ready_at=NOW + 1, retry_attempts=1))], NOW)
        (again,) = await storage.claim_executions("ex", NOW + 1, 1, LEASE_DURATION, **routed)
        assert (again.execution_id, again.started_at) == ("te_a0", NOW + 1)
        assert await storage.claim_executions("ex", NOW + 30, 10, LEASE_DURATION, **routed) == []
        assert [r.execution_id for r in await storage.claim_executions("ex", NOW + 60.5, 10, LEASE_DURATION,
                                                                       **routed)] == ["te_a1"]


# ---------------------------------------------------------------------------------- commits


async def test_commit_is_fenced_by_the_claims_token(sqlite: Any) -> None:
    async with sqlite() as storage:
        await storage.insert_executions([record("te_1")])
        claimed = (await claim(storage))["te_1"]
        done = claimed.copy(status=S.COMPLETED, output=Payload("json", b"1"), finished_at=NOW + 1)
        assert await storage.commit_runs([RunCommit(done.copy(lease_token=0))], NOW + 1) == []
        assert await one(storage, "te_1") == claimed

        assert await storage.commit_runs([RunCommit(done)], NOW + 2) == [change(done, S.RUNNING, S.COMPLETED)]
        assert await one(storage, "te_1") == done.copy(updated_at=NOW + 2, lease_expires_at=None)
        assert await storage.commit_runs([RunCommit(done)], NOW + 3) == []  # committing ended the lease


async def test_a_run_whose_lease_expired_and_was_reclaimed_cannot_write(sqlite: Any) -> None:
    async with sqlite() as storage:
        await storage.insert_executions([record("te_1")])
        first = (await claim(storage))["te_1"]
        await storage.expire_leases(NOW + 100, 10, 10)
        second = (await claim(storage, now=NOW + 100))["te_1"]
        assert second.lease_token == first.lease_token + 1
        assert await storage.find_revoked_leases([first.lease, second.lease]) == ["te_1"]
        late = first.copy(status=S.COMPLETED, finished_at=NOW + 101)
        assert await storage.commit_runs([RunCommit(late)], NOW + 101) == []
        assert (await one(storage, "te_1")).status is S.RUNNING


async def test_commit_inserts_children_and_the_last_finished_child_moves_the_parent_along(sqlite: Any) -> None:
    async with sqlite() as storage:
        await storage.insert_executions([record("te_p")])
        parent = (await claim(storage))["te_p"]
        kids = [child(f"te_k{i}", "te_p", i) for i in range(3)]
        spawned = parent.copy(
            status=S.WAITING_FOR_CHILDREN, children=tuple(ExecutionRef(k.task_id, k.execution_id) for k in kids),
            active_children_count=3, waiting_for_children_started_at=NOW, ready_at=None,
        )  # fmt: skip
        assert await storage.commit_runs([RunCommit(spawned, kids)], NOW) == [
            change(parent, S.RUNNING, S.WAITING_FOR_CHILDREN),
            *(change(k, None, S.READY) for k in kids),
        ]
        claimed = await claim(storage)
        assert sorted(claimed) == ["te_k0", "te_k1", "te_k2"]
        outcomes = [S.COMPLETED, S.FAILED, S.COMPLETED]  # a failed child does not cancel its siblings
        for i, status in enumerate(outcomes):
            kid = claimed[f"te_k{i}"].copy(status=status, finished_at=NOW + i, ready_at=None)
            assert await storage.commit_runs([RunCommit(kid)], NOW + i) == [
                change(kid, S.RUNNING, status),
                change(parent, S.WAITING_FOR_CHILDREN, S.WAITING_FOR_CHILDREN),
            ]
            stored = await one(storage, "te_p")
            assert stored.active_children_count == 2 - i
            assert stored.ready_at == (NOW + 2 if i == 2 else None)
        (again,) = await storage.claim_executions("ex", NOW + 2, 10, LEASE_DURATION)
        assert (again.execution_id, again.status, again.lease_token) == ("te_p", S.WAITING_FOR_CHILDREN, 2)
        assert [(await one(storage, k.execution_id)).status for k in kids] == outcomes


async def tree(storage: SqliteStorage) -> ExecutionRecord:
    """Root ``te_r`` (claimed) with children ``te_a`` (waiting; its children: ``te_a1`` claimed,
    ``te_a2`` completed) and ``te_b`` (ready), and an unrelated ``te_u``. Returns the claimed root."""
    await storage.insert_executions([
        record("te_r", ready_at=NOW - 10),
        child("te_a", "te_r", 0, status=S.WAITING_FOR_CHILDREN, active_children_count=1, ready_at=None),
        child("te_b", "te_r", 1, ready_at=NOW + 100),
        child("te_a1", "te_a", 0, ready_at=NOW - 5),
        child("te_a2", "te_a", 1, status=S.COMPLETED, finished_at=NOW - 1, ready_at=None),
        record("te_u", ready_at=NOW + 100),
    ])  # fmt: skip
    claimed = await claim(storage)
    assert sorted(claimed) == ["te_a1", "te_r"]
    return claimed["te_r"]


async def test_ending_without_completing_cancels_every_unfinished_descendant(sqlite: Any) -> None:
    async with sqlite() as storage:
        root = await tree(storage)
        a1 = await one(storage, "te_a1")
        failed = root.copy(status=S.FAILED, error=ErrorInfo("generic", "boom", False), finished_at=NOW + 1)
        changes = await storage.commit_runs([RunCommit(failed)], NOW + 1)
        assert changes[0] == change(root, S.RUNNING, S.FAILED)
        assert sorted(changes[1:], key=lambda c: c.execution_id) == [
            StatusChange("te_a", "task", S.WAITING_FOR_CHILDREN, S.CANCELLED),
            StatusChange("te_a1", "task", S.RUNNING, S.CANCELLED),
            StatusChange("te_b", "task", S.READY, S.CANCELLED),
        ]
        assert await one(storage, "te_a1") == a1.copy(
            status=S.CANCELLED, error=cascade_error(failed), finished_at=NOW + 1, updated_at=NOW + 1,
            lease_expires_at=None,
        )  # fmt: skip
        assert await storage.find_revoked_leases([a1.lease]) == ["te_a1"]
        assert (await one(storage, "te_a2")).status is S.COMPLETED
        assert (await one(storage, "te_u")).status is S.READY
        assert list(await claim(storage, now=NOW + 100)) == ["te_u"]


async def test_commit_inserting_a_taken_sleeping_unique_id_applies_nothing(sqlite: Any) -> None:
    async with sqlite() as storage:
        await storage.insert_executions([sleeping("te_s1", "u"), record("te_p")])
        parent = (await claim(storage))["te_p"]
        spawned = parent.copy(status=S.WAITING_FOR_CHILDREN, active_children_count=1, ready_at=None)
        with pytest.raises(DuplicateSleepingTaskUniqueIdError):
            await storage.commit_runs([RunCommit(spawned, [sleeping("te_s2", "u")])], NOW)
        assert await one(storage, "te_p") == parent
        assert await storage.get_executions(["te_s2"]) == [None]
        stale = RunCommit(spawned.copy(lease_token=0), [sleeping("te_s2", "u")])
        assert await storage.commit_runs([stale], NOW) == []  # a lease that does not hold inserts nothing


async def test_a_failing_call_does_not_disturb_the_calls_committed_with_it(sqlite: Any) -> None:
    async with sqlite() as storage:
        await storage.insert_executions([sleeping("te_s", "u")])
        failures: list[Exception] = []

        async def insert(r: ExecutionRecord) -> None:
            try:
                await storage.insert_executions([r])
            except DuplicateSleepingTaskUniqueIdError as exc:
                failures.append(exc)

        async with trio.open_nursery() as nursery:
            for i in range(50):
                nursery.start_soon(insert, record(f"te_{i}"))
                if i == 25:
                    nursery.start_soon(insert, sleeping("te_dup", "u"))
        assert len(failures) == 1
        assert None not in await storage.get_executions([f"te_{i}" for i in range(50)])
        assert await storage.get_executions(["te_dup"]) == [None]


# ---------------------------------------------------------------------------------- leases


async def test_release_hands_claimed_records_back_at_once(sqlite: Any) -> None:
    async with sqlite() as storage:
        await storage.insert_executions([
            record("te_a", retry_attempts=1, lease_expirations=2), waiting("te_p", 0, ready_at=NOW),
        ])  # fmt: skip
        claimed = await claim(storage)
        a, p = claimed["te_a"], claimed["te_p"]
        changes = await storage.release_leases(
            [a.lease, p.lease, Lease("te_a", 99), Lease("nope", 1)], NOW + 5
        )
        assert changes == [change(a, S.RUNNING, S.READY), change(p, S.WAITING_FOR_CHILDREN, S.WAITING_FOR_CHILDREN)]
        assert await one(storage, "te_a") == a.copy(
            status=S.READY, ready_at=NOW + 5, start_at=NOW + 5, executor_id=None, lease_expires_at=None,
            updated_at=NOW + 5,
        )  # fmt: skip
        assert await one(storage, "te_p") == p.copy(
            ready_at=NOW + 5, executor_id=None, lease_expires_at=None, updated_at=NOW + 5
        )
        assert await storage.release_leases([a.lease], NOW + 6) == []
        again = await claim(storage, now=NOW + 5)
        assert {r.lease_token for r in again.values()} == {2}


async def test_find_revoked_leases_in_input_order(sqlite: Any) -> None:
    async with sqlite() as storage:
        await storage.insert_executions([record("te_a"), record("te_b"), record("te_c")])
        claimed = await claim(storage)
        await storage.cancel_executions(["te_c"], NOW)
        leases = [claimed["te_c"].lease, Lease("te_b", 7), claimed["te_a"].lease, Lease("nope", 1)]
        assert await storage.find_revoked_leases(leases) == ["te_c", "te_b", "nope"]


async def test_expire_leases(sqlite: Any) -> None:
    async with sqlite() as storage:
        await storage.insert_executions([
            record("te_a", ready_at=NOW - 4, timeout=10.0),
            waiting("te_p", 0, ready_at=NOW - 3, timeout=20.0, error=EXPIRED_ERROR),
            record("te_b", ready_at=NOW - 2, timeout=30.0, lease_expirations=2),
            child("te_bc", "te_b"),
            waiting("te_q", 1),
            child("te_s", "te_q", **sleeping_fields("u")),
        ])  # fmt: skip
        claimed = await claim(storage, limit=3)
        a, p, b = claimed["te_a"], claimed["te_p"], claimed["te_b"]
        for lease, now in [(p.lease, NOW + 10), (b.lease, NOW + 20)]:  # leases end at +70, +80, +90
            assert await storage.renew_leases(ExecutorInfo("ex", "host", 1, NOW, now, 1), [lease], now, LEASE_DURATION) == []
        s, q = await storage.get_executions(["te_s", "te_q"])
        assert s is not None and q is not None

        assert await storage.expire_leases(NOW + 69, 2, 10) == [
            change(s, S.RUNNING, S.TIMED_OUT), change(q, S.WAITING_FOR_CHILDREN, S.WAITING_FOR_CHILDREN),
        ]
        assert await one(storage, "te_s") == s.copy(
            status=S.TIMED_OUT, error=SLEEPING_TIMED_OUT_ERROR, finished_at=NOW + 69, lease_expires_at=None,
            updated_at=NOW + 69,
        )  # fmt: skip
        assert (await one(storage, "te_q")).ready_at == NOW + 69

        assert await storage.expire_leases(NOW + 100, 2, 1) == [change(a, S.RUNNING, S.READY)]
        assert await one(storage, "te_a") == a.copy(
            status=S.READY, error=EXPIRED_ERROR, lease_expirations=1, ready_at=NOW + 100, start_at=NOW + 100,
            executor_id=None, lease_expires_at=None, updated_at=NOW + 100,
        )  # fmt: skip

        bc = await one(storage, "te_bc")
        assert await storage.expire_leases(NOW + 100, 2, 10) == [
            change(p, S.WAITING_FOR_CHILDREN, S.WAITING_FOR_CHILDREN),
            change(b, S.RUNNING, S.FAILED),
            change(bc, S.READY, S.CANCELLED),
        ]
        assert await one(storage, "te_p") == p.copy(
            lease_expirations=1, ready_at=NOW + 100, executor_id=None, lease_expires_at=None, updated_at=NOW + 100
        )
        failed = await one(storage, "te_b")
        assert failed == b.copy(
            status=S.FAILED, error=EXPIRED_TOO_OFTEN_ERROR, lease_expirations=3, finished_at=NOW + 100,
            lease_expires_at=None, updated_at=NOW + 100,
        )  # fmt: skip
        assert (await one(storage, "te_bc")).error == cascade_error(failed)
        assert await storage.expire_leases(NOW + 1000, 2, 10) == []


# ---------------------------------------------------------------------------------- from outside


async def test_cancel_with_closure_and_cascade(sqlite: Any) -> None:
    async with sqlite() as storage:
        root = await tree(storage)
        a1 = await one(storage, "te_a1")
        a = await one(storage, "te_a")
        assert await storage.cancel_executions(["te_a1", "te_a2", "nope"], NOW + 1) == [
            change(a1, S.RUNNING, S.CANCELLED), change(a, S.WAITING_FOR_CHILDREN, S.WAITING_FOR_CHILDREN),
        ]
        assert await one(storage, "te_a1") == a1.copy(
            status=S.CANCELLED, error=CANCELLED_ERROR, finished_at=NOW + 1, lease_expires_at=None, updated_at=NOW + 1
        )
        assert await one(storage, "te_a") == a.copy(active_children_count=0, ready_at=NOW + 1, updated_at=NOW + 1)

        b = await one(storage, "te_b")
        changes = await storage.cancel_executions(["te_r", "te_a"], NOW + 2)
        cancelled_root = await one(storage, "te_r")
        assert changes == [
            change(root, S.RUNNING, S.CANCELLED), change(a, S.WAITING_FOR_CHILDREN, S.CANCELLED),
            change(b, S.READY, S.CANCELLED),
        ]  # fmt: skip
        assert (await one(storage, "te_a")).error == cascade_error(cancelled_root)
        assert await storage.cancel_executions(["te_r"], NOW + 3) == []


async def test_wake_sleeping_executions(sqlite: Any) -> None:
    async with sqlite() as storage:
        await storage.insert_executions([
            waiting("te_q", 2), child("te_s1", "te_q", 0, **sleeping_fields("u1")),
            child("te_s2", "te_q", 1, **sleeping_fields("u2")), record("te_r", status=S.RUNNING, ready_at=None),
        ])  # fmt: skip
        s1, s2, q, r = await storage.get_executions(["te_s1", "te_s2", "te_q", "te_r"])
        assert s1 and s2 and q and r
        error = ErrorInfo("generic", "no", is_retryable=False)
        wakeups = [
            SleepingWakeup("te_s1", S.COMPLETED, output=Payload("json", b'"ok"')),
            SleepingWakeup("te_s2", S.FAILED, error=error),
            SleepingWakeup("te_r", S.COMPLETED),
            SleepingWakeup("nope", S.COMPLETED),
        ]
        assert await storage.wake_sleeping_executions(wakeups, NOW + 1) == [
            change(s1, S.RUNNING, S.COMPLETED), change(q, S.WAITING_FOR_CHILDREN, S.WAITING_FOR_CHILDREN),
            change(s2, S.RUNNING, S.FAILED), change(q, S.WAITING_FOR_CHILDREN, S.WAITING_FOR_CHILDREN),
        ]  # fmt: skip
        assert await one(storage, "te_s1") == s1.copy(
            status=S.COMPLETED, output=Payload("json", b'"ok"'), finished_at=NOW + 1, lease_expires_at=None,
            updated_at=NOW + 1,
        )  # fmt: skip
        assert (await one(storage, "te_s2")).error == error
        assert (await one(storage, "te_q")).ready_at == NOW + 1
        assert await one(storage, "te_r") == r
        assert await storage.wake_sleeping_executions(wakeups, NOW + 2) == []


async def test_delete_finished_executions_deletes_whole_old_trees(sqlite: Any) -> None:
    done: dict[str, Any] = dict(status=S.COMPLETED, ready_at=None)
    async with sqlite() as storage:
        await storage.insert_executions([
            record("te_t1", finished_at=NOW - 30, **done),
            child("te_t1a", "te_t1", finished_at=NOW - 31, **done),
            child("te_t1b", "te_t1", 1, finished_at=NOW - 31, **done),
            child("te_t1a1", "te_t1a", finished_at=NOW - 32, **done),
            record("te_t2", finished_at=NOW - 20, status=S.FAILED, ready_at=None),
            child("te_t2a", "te_t2", status=S.CANCELLED, finished_at=NOW - 20, ready_at=None),
            record("te_t3", finished_at=NOW - 10, **done),
            waiting("te_t4", 1),
            child("te_t4a", "te_t4", finished_at=NOW - 40, **done),
            record("te_t5", finished_at=NOW - 5, **done),
        ])  # fmt: skip
        assert await storage.delete_finished_executions(NOW - 5, 2) == 6
        assert await storage.get_executions(["te_t1", "te_t1a", "te_t1a1", "te_t2a"]) == [None] * 4
        assert await storage.delete_finished_executions(NOW - 5, 10) == 1
        assert await storage.delete_finished_executions(NOW - 5, 10) == 0
        remaining = await storage.list_executions()
        assert sorted(r.execution_id for r in remaining) == ["te_t4", "te_t4a", "te_t5"]


# ---------------------------------------------------------------------------------- trio


async def test_every_operation_is_a_checkpoint(sqlite: Any) -> None:
    async with sqlite() as storage:
        calls = [
            lambda: storage.insert_executions([record("te_1"), record("te_2")]),
            lambda: storage.get_executions(["te_1"]),
            lambda: storage.get_executions_by_sleeping_unique_id(["u"]),
            lambda: storage.list_executions(),
            lambda: storage.claim_executions("ex", NOW, 1, LEASE_DURATION),
            lambda: storage.commit_runs([], NOW),
            lambda: storage.release_leases([Lease("te_1", 1)], NOW),
            lambda: storage.find_revoked_leases([Lease("te_1", 1)]),
            lambda: storage.expire_leases(NOW, 10, 10),
            lambda: storage.cancel_executions(["te_2"], NOW),
            lambda: storage.wake_sleeping_executions([], NOW),
            lambda: storage.delete_finished_executions(NOW + 1, 10),
        ]
        for call in calls:
            with trio.testing.assert_checkpoints():
                await call()


async def test_a_call_cancelled_before_it_runs_applies_nothing(sqlite: Any) -> None:
    async with sqlite() as storage:
        with trio.CancelScope() as scope:
            scope.cancel()
            await storage.insert_executions([record("te_1")])
        assert scope.cancelled_caught
        assert await storage.get_executions(["te_1"]) == [None]


async def test_a_call_cancelled_once_running_is_applied_and_its_result_delivered(sqlite: Any) -> None:
    async with sqlite() as storage:
        running, release = trio.Event(), threading.Event()
        token = trio.lowlevel.current_trio_token()

        def slow_insert() -> str:
            storage._db.insert([record("te_1")])
            trio.from_thread.run_sync(running.set, trio_token=token)
            release.wait()
            return "inserted"

        received: list[str] = []
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:

                async def call() -> None:
                    received.append(await storage._thread.call(Kind.ALONE, slow_insert))  # in the thread
                    await trio.lowlevel.checkpoint()  # where the cancellation arrives

                nursery.start_soon(call)
                await running.wait()
                scope.cancel()
                release.set()
        assert received == ["inserted"]
        assert (await one(storage, "te_1")).execution_id == "te_1"


# ---------------------------------------------------------------------------------- the file


async def test_the_calls_of_one_tick_commit_together_on_trios_thread(sqlite: Any) -> None:
    """No hop to the connection thread and back (more than a transaction costs) while the
    connection is free: the tick's calls run inline, still in one transaction."""
    async with sqlite() as storage:
        threads: list[int] = []
        commits = 0
        commit = storage._thread.commit

        def counted(*args: Any) -> None:
            nonlocal commits
            commits += 1
            commit(*args)

        def insert(execution_id: str) -> list[ExecutionRecord]:
            threads.append(threading.get_ident())
            return storage._db.insert([record(execution_id)])

        storage._thread.commit = counted
        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(storage._thread.call, Kind.WRITE, insert, f"te_{i}")
        assert commits == 1
        assert threads == [threading.get_ident()] * 20
        assert len(await storage.list_executions()) == 20


async def test_a_busy_storage_reads_the_change_feed_at_most_once_a_millisecond_and_still_sees_commits(
    sqlite: Any
) -> None:
    """Inline rounds look at ``PRAGMA data_version`` at most every millisecond, not after every
    transaction (that cost a tenth of a small one), and a storage kept busy by its own calls still
    learns of another connection's commits within a few."""
    async with sqlite() as storage, sqlite() as other:
        reads = 0
        read = storage._thread._read_data_version

        def counted() -> int:
            nonlocal reads
            reads += 1
            return read()

        storage._thread._read_data_version = counted
        seen = await storage.wait_for_changes(None)
        await storage.insert_executions([record("te_own")])
        started = time.monotonic()
        for _ in range(300):
            await storage.get_executions(["te_own"])  # each its own inline transaction
        elapsed = time.monotonic() - started
        assert reads <= elapsed / storage._thread.inline_round_interval + 2
        assert await storage.wait_for_changes(None) == seen, "its own commits do not move the feed"

        await other.insert_executions([record("te_other")])
        async with trio.open_nursery() as nursery:

            async def busy() -> None:
                while True:
                    await storage.get_executions(["te_own"])

            nursery.start_soon(busy)
            with trio.fail_after(5):
                assert await storage.wait_for_changes(seen) != seen
            nursery.cancel_scope.cancel()


async def test_an_idle_round_of_the_thread_never_waits_for_the_connection_trio_uses(sqlite: Any) -> None:
    """Waiting for it, the thread would hold it afterwards while it waits for the GIL, and trio's
    next calls would have to go to the thread: it looks again an interval later instead (trio's
    round looks when it ends), without spinning meanwhile."""
    async with sqlite() as storage:
        thread = storage._thread
        rounds: list[object] = []
        thread.after_round = rounds.append
        finished = threading.Event()
        thread.idle_timeout = 60.0
        thread._last_round = 0.0  # a look is due
        with thread._using:  # as while trio runs an inline transaction
            threading.Thread(target=lambda: (thread._idle_round(storage._db), finished.set())).start()
            assert finished.wait(5), "the idle round waited for the connection"
            assert rounds == []
        thread._idle_round(storage._db)
        assert rounds == [], "it looks again an interval later, not at once (no spinning meanwhile)"
        thread._last_round = 0.0
        thread._idle_round(storage._db)
        assert rounds == [storage._db]


async def test_a_write_meeting_another_process_lock_waits_in_the_thread_while_trio_runs_on(
    sqlite: Any, path: Path
) -> None:
    async with sqlite() as storage:
        token = trio.lowlevel.current_trio_token()
        trio_thread = threading.get_ident()
        waiting_elsewhere = trio.Event()

        def trace(statement: str) -> None:
            if statement == "BEGIN IMMEDIATE" and threading.get_ident() != trio_thread:
                trio.from_thread.run_sync(waiting_elsewhere.set, trio_token=token)

        storage._db.conn.set_trace_callback(trace)
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        inserted: list[ExecutionRecord] = []
        async with trio.open_nursery() as nursery:

            async def insert() -> None:
                inserted.extend(await storage.insert_executions([record("te_1")]))

            nursery.start_soon(insert)
            await waiting_elsewhere.wait()  # trio runs this task while the insert waits
            assert inserted == []
            blocker.execute("COMMIT")
            blocker.close()
        assert [r.execution_id for r in inserted] == ["te_1"]


async def test_a_lock_held_beyond_busy_timeout_is_retried(sqlite: Any, path: Path) -> None:
    async with sqlite(busy_timeout=0.01, busy_retries=50) as storage:
        retried = trio.Event()
        token = trio.lowlevel.current_trio_token()
        begins = 0

        def trace(statement: str) -> None:
            nonlocal begins
            begins += statement == "BEGIN IMMEDIATE"
            if begins == 2:  # the first attempt found the database locked
                trio.from_thread.run_sync(retried.set, trio_token=token)

        await storage._thread.call(Kind.ALONE, storage._db.conn.set_trace_callback, trace)
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(storage.insert_executions, [record("te_1")])
            await retried.wait()
            blocker.execute("COMMIT")
            blocker.close()
        assert (await one(storage, "te_1")).execution_id == "te_1"


async def test_a_lock_held_too_long_is_one_clear_error(sqlite: Any, path: Path) -> None:
    async with sqlite(busy_timeout=0.05, busy_retries=2) as storage:
        await storage.insert_executions([record("te_1")])
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            assert (await one(storage, "te_1")).execution_id == "te_1"  # WAL: reads go on
            with pytest.raises(StorageError, match=f"{path}.*locked.*busy_timeout") as caught:
                await storage.insert_executions([record("te_2")])
            assert caught.value.is_retryable
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        await storage.insert_executions([record("te_2")])


async def test_a_closed_storage_refuses_calls(sqlite: Any) -> None:
    async with sqlite() as storage:
        pass
    await storage.aclose()
    with pytest.raises(StorageError, match="closed"):
        await storage.get_executions(["te_1"])


async def test_opened_by_name_with_tuning(path: Path) -> None:
    async with open_storage("sqlite", path=path, synchronous="full") as storage:
        assert isinstance(storage, SqliteStorage) and isinstance(storage, Storage)
        assert storage.storage_api == STORAGE_API
        assert storage.capabilities == Capabilities(persistent=True, multi_process=True, change_notifications=True,
                                                    routing=True, concurrency_limits=True, rate_limits=True)

        def pragmas() -> list[object]:
            conn = storage._db.conn
            return [conn.execute(f"PRAGMA {name}").fetchone()[0] for name in ("journal_mode", "synchronous", "secure_delete")]

        assert await storage._thread.call(Kind.READ, pragmas) == ["wal", 2, 0]


@pytest.mark.parametrize(("options", "mode"), [({}, 0o600), ({"file_mode": 0o640}, 0o640)], ids=["default", "0o640"])
async def test_new_database_files_get_the_file_mode_whatever_the_umask(path: Path, options: dict[str, Any],
                                                                      mode: int) -> None:
    previous = os.umask(0o002)
    try:
        async with open_storage("sqlite", path=path, **options) as storage:
            await storage.insert_executions([record("te_1")])
            files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
            assert [stat.S_IMODE(file.stat().st_mode) for file in files] == [mode] * 3
    finally:
        os.umask(previous)


async def test_an_existing_database_keeps_its_mode(path: Path) -> None:
    path.touch(mode=0o644)
    path.chmod(0o644)
    async with open_storage("sqlite", path=path):
        pass
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"synchronous": "sometimes"}, "synchronous='sometimes'"),
        ({"busy_timeout": -1}, "busy_timeout=-1"),
        ({"busy_retries": 1.5}, "busy_retries=1.5"),
        ({"max_batch_size": 0}, "max_batch_size=0"),
        ({"watch_interval": 0}, "watch_interval=0"),
        ({"file_mode": 0o1000}, "file_mode=512: expected an integer >= 0 and <= 511"),
        ({"colour": "blue"}, "colour"),
    ],
)
async def test_invalid_options_are_one_clear_error(path: Path, options: dict[str, Any], message: str) -> None:
    with pytest.raises(StorageError, match=message):
        async with open_storage("sqlite", path=path, **options):
            pass
    assert not path.exists()


async def test_executors_on_two_connections_learn_of_each_others_work_at_once(path: Path) -> None:
    """The change feed: an idle worker starts what a client enqueued, and the client's handle
    sees it finished, without waiting for the next poll (an hour here)."""
    worker = DurableExecutor("sqlite", storage_options={"path": path}, poll_interval=3600)
    client = DurableExecutor("sqlite", storage_options={"path": path}, poll_interval=3600,
                             max_concurrent_task_executions=0)
    started = trio.Event()

    @worker.task(id="noop", timeout=10)
    async def noop(ctx: Any, input: Any) -> None:
        started.set()

    client.task(id="noop", timeout=10, run=noop.run)
    async with worker, client:
        await trio.testing.wait_all_tasks_blocked()  # the worker's claimer is idle
        handle = await client.enqueue_task("noop")
        with trio.fail_after(5):
            await started.wait()
            assert (await handle.wait_and_get_finished_execution()).status == "completed"
