"""Every operation of the storage contract, checked directly with explicit times.

Each mixin checks one behaviour; ``StorageConformance`` combines them. A check receives the
``storage`` under test, already opened (in the check's trio run) by the class's factory.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

from durable_core.errors import ErrorInfo
from durable_core.models import ExecutionRef, ParentRef, RetryOptions
from durable_core.status import FINISHED_TASK_EXECUTION_STATUSES
from durable_core.status import TaskExecutionStatus as S
from durable_core.storage import CANCELLED_ERROR, EXPIRED_ERROR, EXPIRED_TOO_OFTEN_ERROR, SLEEPING_TIMED_OUT_ERROR
from durable_core.storage import EXECUTOR_RETENTION, DuplicateSleepingTaskUniqueIdError, ExecutionRecord, Lease
from durable_core.storage import Payload
from durable_core.storage import RunCommit, SleepingWakeup, StatusCounts, Storage, StorageError, cascade_error, list_key
from durable_core.storage import transitions

from .marks import requires
from .records import BOOM, DEFERRABLE, LEASE_DURATION, OUTPUT, RUN_OUTPUT, change, child, claim, claim_one
from .records import claimed_copy, committed_copy, executor, expected, finish, get, get_stored, new, retry, sleeping
from .records import spawn, summarize

W = S.WAITING_FOR_CHILDREN
MiB = 1024 * 1024


def _ids(records: list[ExecutionRecord]) -> list[str]:
    return [r.execution_id for r in records]


async def _claim_at_once(storage: Storage, routed: dict[str, Any]) -> list[ExecutionRecord]:
    """What two claimers claim at once (at 1.0, up to 10 each) with the same ``routed`` arguments."""
    claimed: list[ExecutionRecord] = []

    async def claim_as(executor_id: str) -> None:
        claimed.extend(await storage.claim_executions(executor_id, 1.0, 10, LEASE_DURATION, **routed))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(claim_as, "de_1")
        nursery.start_soon(claim_as, "de_2")
    return claimed


def full_record(execution_id: str = "te_full") -> ExecutionRecord:
    """A record with every field set to something other than its default."""
    return ExecutionRecord(
        execution_id=execution_id, task_id="task_Full_9", status=S.WAITING_FOR_FINALIZE,
        input=Payload("json", bytes(range(256))),
        retry=RetryOptions(max_attempts=3, base_delay=1.5, delay_multiplier=2.0, max_delay=8.0),
        timeout=7.25, sleep_before_run=1.5, created_at=1.125, updated_at=2.0, start_at=3.0,
        root=ExecutionRef("root", "te_root"), parent=ParentRef("root", "te_root", 4, True),
        is_sleeping=True, sleeping_unique_id="ünïque-id ✓ " + "u" * 200, idempotency_key="kéy " + "k" * 240,
        output=Payload("cbor", b""), run_output=RUN_OUTPUT,
        error=ErrorInfo("timed_out", "lost ‘quotes’ \"and\" newlines\n", is_retryable=True, is_internal=True,
                        type_name="my_app.errors.Lost", traceback="Traceback (most recent call last):\n  …\n"),
        retry_attempts=2, lease_expirations=1,
        children=(ExecutionRef("c", "te_c1"), ExecutionRef("c", "te_c2"), ExecutionRef("d", "te_c3")),
        finalize=ExecutionRef("f", "te_f"), active_children_count=2, started_at=4.5, finished_at=None,
        waiting_for_children_started_at=5.0, waiting_for_finalize_started_at=6.0, ready_at=9.75,
        executor_id="de_x", lease_token=3, lease_expires_at=20.5,
        deferred_options=frozenset({"retry", "sleep_before_run"}), queue="emails.high-1", priority=1_000_000,
        context={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tenant": "ünï ✓"},
    )


async def _parent_with_children(storage: Storage, count: int = 2, now: float = 1.0,
                                parent_id: str = "te_p") -> tuple[ExecutionRecord, list[ExecutionRecord]]:
    """A parent waiting for ``count`` ready children; returns the parent as committed and the children."""
    await storage.insert_executions([new(parent_id, now=now - 1.0)])
    parent = await claim_one(storage, now - 1.0, parent_id)
    children = [child(parent, f"{parent_id}_c{i}", now=now, index=i) for i in range(count)]
    commit = spawn(parent, children, now)
    await storage.commit_runs([commit], now)
    return committed_copy(commit, now), children


# ---------------------------------------------------------------------------------------- inserting


class InsertChecks:
    """``insert_executions`` and ``get_executions``: round trips, idempotency, unique ids, all or none."""

    async def test_inserted_record_round_trips_every_field(self, storage: Storage) -> None:
        record, plain = full_record(), new("te_plain", now=0.5)
        assert await storage.insert_executions([record, plain]) == [record, plain]
        assert await storage.get_executions(["te_full", "te_unknown", "te_plain"]) == [record, None, plain]

    async def test_deferred_options_round_trip_through_get_list_and_claim(self, storage: Storage) -> None:
        """A client that enqueues without the task's definition marks the options it did not know;
        the executor that claims the record must see exactly those."""
        every, one = frozenset(DEFERRABLE), frozenset({"timeout"})
        records = [new("te_every", deferred_options=every), new("te_one", now=0.5, deferred_options=one),
                   new("te_none", now=0.75)]
        assert await storage.insert_executions(records) == records
        assert await storage.get_executions(_ids(records)) == records
        assert await storage.list_executions() == records[::-1]
        twin = new("te_twin", now=0.9, deferred_options=every, idempotency_key="k")
        assert await storage.insert_executions([twin, new("te_twin2", idempotency_key="k")]) == [twin, twin]
        claimed = await claim(storage, 1.0)
        assert claimed == [claimed_copy(r, 1.0) for r in [*records, twin]]
        assert [r.deferred_options for r in claimed] == [every, one, frozenset(), every]

    async def test_a_record_inserted_claimed_is_fenced_by_its_lease(self, storage: Storage) -> None:
        """An executor with a free slot claims what it enqueues as it inserts it (the engine's
        claim on insert): the stored lease must hold, fence and expire as a claim's does."""
        kept = transitions.claim(new("te_kept"), "de_a", 0.0, LEASE_DURATION)
        lost = transitions.claim(new("te_lost"), "de_a", 0.0, LEASE_DURATION)
        assert await storage.insert_executions([kept, lost]) == [kept, lost]
        assert await claim(storage, 1.0, executor_id="de_b") == []
        assert await storage.find_revoked_leases([kept.lease, lost.lease]) == []
        assert await storage.renew_leases(executor("de_a", 1.0), [kept.lease], 1.0, LEASE_DURATION) == []
        changes = await storage.commit_runs([finish(kept, S.COMPLETED, 2.0)], 2.0)
        assert summarize(changes) == expected(change(kept, S.RUNNING, S.COMPLETED))
        expired = await storage.expire_leases(LEASE_DURATION, 10, 10)
        assert summarize(expired) == expected(change(lost, S.RUNNING, S.READY))
        assert (await get_stored(storage, "te_lost")).lease_expirations == 1

    async def test_context_is_kept_from_insert_through_every_operation(self, storage: Storage) -> None:
        """What plugins store with an execution when it is created (a trace it belongs to) comes
        back when it runs, and stays after any change; none stays none."""
        trace = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tracestate": "a=1"}
        records = [new("te_traced", context=trace), new("te_plain", now=0.5)]
        assert await storage.insert_executions(records) == records
        assert await storage.get_executions(_ids(records)) == records
        assert await storage.list_executions() == records[::-1]
        traced, plain = await claim(storage, 1.0)
        assert (traced.context, plain.context) == (trace, None)
        await storage.commit_runs([retry(traced, 1.0, 0.5), finish(plain, S.COMPLETED, 1.0)], 1.0)
        (again,) = await claim(storage, 2.0)
        await storage.expire_leases(100.0, 10, 10)
        await storage.cancel_executions(["te_traced"], 101.0)
        after = await storage.get_executions(_ids(records))
        assert [r and (r.status, r.context) for r in after] == [(S.CANCELLED, trace), (S.COMPLETED, None)]

    async def test_get_returns_records_in_the_order_asked_with_none_for_unknown_ids(self, storage: Storage) -> None:
        await storage.insert_executions([new("te_a"), new("te_b", task_id="other")])
        got = await storage.get_executions(["te_b", "te_x", "te_a", "te_b"])
        assert [None if r is None else r.execution_id for r in got] == ["te_b", None, "te_a", "te_b"]
        assert await storage.get_executions([]) == []

    async def test_a_large_batch_and_large_payloads_are_stored(self, storage: Storage) -> None:
        """The engine's limits: batches of enqueues, 1 MiB inputs and outputs, 1000 children."""
        big = Payload("json", b"x" * MiB)
        batch = [new(f"te_{i:04}", input=big, ready_at=-1.0) if i == 0 else new(f"te_{i:04}") for i in range(1000)]
        stored = await storage.insert_executions(batch)
        assert _ids(stored) == _ids(batch)
        assert (await get_stored(storage, "te_0000")).input == big
        parent = await claim_one(storage, 0.0, "te_0000")
        children = [child(parent, f"te_c{i:04}", now=1.0, index=i) for i in range(1000)]
        changes = await storage.commit_runs([spawn(parent, children, 1.0, run_output=big)], 1.0)
        assert len(summarize(changes)) == 1001
        stored_parent = await get(storage, "te_0000")
        assert stored_parent is not None and stored_parent.run_output == big
        assert len(stored_parent.children) == 1000 and stored_parent.active_children_count == 1000
        assert None not in await storage.get_executions([c.execution_id for c in children])

    async def test_idempotency_key_returns_the_stored_execution_and_inserts_nothing(self, storage: Storage) -> None:
        first = new("te_1", idempotency_key="k")
        await storage.insert_executions([first])
        stored = await storage.insert_executions(
            [new("te_2", idempotency_key="k"), new("te_3", task_id="other", idempotency_key="k"),
             new("te_4", idempotency_key="j"), new("te_5", idempotency_key="j"), new("te_6")]
        )
        assert _ids(stored) == ["te_1", "te_3", "te_4", "te_4", "te_6"]
        assert stored[0] == first
        assert await storage.get_executions(["te_2", "te_5"]) == [None, None]
        assert len(await storage.list_executions(limit=100)) == 4

    async def test_idempotency_key_returns_the_stored_record_as_it_is_now(self, storage: Storage) -> None:
        await storage.insert_executions([new("te_1", idempotency_key="k")])
        claimed = await claim_one(storage, 0.0, "te_1")
        await storage.commit_runs([finish(claimed, S.COMPLETED, 1.0)], 1.0)
        (stored,) = await storage.insert_executions([new("te_2", idempotency_key="k", now=2.0)])
        assert stored == await get(storage, "te_1")
        assert stored.status is S.COMPLETED

    async def test_duplicate_sleeping_unique_id_raises_and_inserts_nothing(self, storage: Storage) -> None:
        await storage.insert_executions([sleeping("te_1", "u")])
        with pytest.raises(DuplicateSleepingTaskUniqueIdError, match="'u'"):
            await storage.insert_executions([new("te_2"), sleeping("te_3", "u")])
        with pytest.raises(DuplicateSleepingTaskUniqueIdError, match="'v'"):
            await storage.insert_executions([sleeping("te_4", "v"), new("te_5"), sleeping("te_6", "v")])
        assert await storage.get_executions(["te_2", "te_3", "te_4", "te_5", "te_6"]) == [None] * 5
        assert await storage.get_executions_by_sleeping_unique_id(["v"]) == [None]

    async def test_a_unique_id_stays_taken_after_its_execution_finished(self, storage: Storage) -> None:
        await storage.insert_executions([sleeping("te_1", "u")])
        await storage.wake_sleeping_executions([SleepingWakeup("te_1", S.COMPLETED, output=OUTPUT)], 1.0)
        with pytest.raises(DuplicateSleepingTaskUniqueIdError):
            await storage.insert_executions([sleeping("te_2", "u", now=2.0)])

    async def test_existing_execution_id_raises_and_inserts_nothing(self, storage: Storage) -> None:
        await storage.insert_executions([new("te_1")])
        with pytest.raises(StorageError):
            await storage.insert_executions([new("te_2"), new("te_1", task_id="other")])
        assert await get(storage, "te_2") is None
        assert (await get_stored(storage, "te_1")).task_id == "task"


class LookupChecks:
    """``get_executions_by_sleeping_unique_id`` and ``list_executions``."""

    async def test_sleeping_executions_are_found_by_unique_id(self, storage: Storage) -> None:
        record = sleeping("te_1", "u")
        await storage.insert_executions([record, new("te_2"), sleeping("te_3", "w", task_id="other")])
        found = await storage.get_executions_by_sleeping_unique_id(["u", "te_2", "nope", "w", "u"])
        assert [None if r is None else r.execution_id for r in found] == ["te_1", None, None, "te_3", "te_1"]
        assert found[0] == record
        assert await storage.get_executions_by_sleeping_unique_id([]) == []

    async def test_list_is_newest_first_filtered_and_limited(self, storage: Storage) -> None:
        await storage.insert_executions(
            [new("te_a", now=3.0), new("te_b", now=1.0, task_id="other"), new("te_c", now=4.0),
             new("te_d", now=2.0), sleeping("te_e", "u", now=5.0)]
        )
        (claimed,) = await claim(storage, 3.5, 1)
        assert claimed.execution_id == "te_b"
        await storage.cancel_executions(["te_d"], 6.0)
        assert _ids(await storage.list_executions()) == ["te_e", "te_c", "te_a", "te_d", "te_b"]
        assert _ids(await storage.list_executions(limit=2)) == ["te_e", "te_c"]
        assert _ids(await storage.list_executions(task_id="task")) == ["te_c", "te_a", "te_d"]
        assert _ids(await storage.list_executions(statuses=[S.RUNNING])) == ["te_e", "te_b"]
        assert _ids(await storage.list_executions(statuses=[S.READY, S.CANCELLED], task_id="task", limit=2)) == [
            "te_c", "te_a"]
        assert await storage.list_executions(statuses=[S.COMPLETED]) == []
        assert await storage.list_executions(limit=0) == []
        assert await storage.list_executions(task_id="nobody") == []
        listed = await storage.list_executions(statuses=[S.CANCELLED])
        assert listed == [await get(storage, "te_d")]

    async def test_list_by_queue_pages_too(self, storage: Storage) -> None:
        await storage.insert_executions([new("te_a", now=1.0, queue="emails"), new("te_b", now=2.0),
                                         new("te_c", now=3.0, queue="emails"), new("te_d", now=4.0, queue="emails")])
        assert _ids(await storage.list_executions(queue="emails")) == ["te_d", "te_c", "te_a"]
        assert _ids(await storage.list_executions(queue="default")) == ["te_b"]
        assert _ids(await storage.list_executions(queue="emails", statuses=[S.READY], task_id="task",
                                                  before=(4.0, "te_d"), limit=1)) == ["te_c"]
        assert await storage.list_executions(queue="nowhere") == []

    async def test_list_orders_ties_by_id_and_pages_from_a_cursor(self, storage: Storage) -> None:
        """``before``: the key of a page's last record gives the next page, which a newer record
        does not shift; equal ``created_at`` are ordered by ``execution_id``, both descending."""
        await storage.insert_executions([new("te_a", now=1.0), new("te_c", now=2.0), new("te_b", now=2.0),
                                         new("te_d", now=2.0, task_id="other"), new("te_e", now=3.0)])
        assert _ids(await storage.list_executions()) == ["te_e", "te_d", "te_c", "te_b", "te_a"]
        first = await storage.list_executions(limit=2)
        await storage.insert_executions([new("te_f", now=4.0)])
        assert _ids(await storage.list_executions(limit=2, before=list_key(first[-1]))) == ["te_c", "te_b"]
        assert _ids(await storage.list_executions(before=(2.0, "te_c"))) == ["te_b", "te_a"]
        assert _ids(await storage.list_executions(task_id="task", before=(2.0, "te_d"))) == ["te_c", "te_b", "te_a"]
        assert _ids(await storage.list_executions(statuses=[S.READY], before=(2.0, "te_b"), limit=5)) == ["te_a"]
        assert await storage.list_executions(before=(1.0, "te_a")) == []
        assert _ids(await storage.list_executions(before=(9.0, ""))) == ["te_f", "te_e", "te_d", "te_c", "te_b", "te_a"]

    async def test_counts_by_status_when_the_storage_counts(self, storage: Storage) -> None:
        """``StatusCounts`` is optional (nothing to check without it); a storage that has it
        counts every stored execution."""
        if not isinstance(storage, StatusCounts):
            return
        assert {s: n for s, n in (await storage.count_executions()).items() if n} == {}
        await storage.insert_executions([new("te_a"), new("te_b", now=1.0), new("te_c", now=1.0, task_id="other")])
        await claim_one(storage, 0.5, "te_a")
        await storage.cancel_executions(["te_b"], 1.0)
        counts = {s: n for s, n in (await storage.count_executions()).items() if n}
        assert counts == {S.RUNNING: 1, S.CANCELLED: 1, S.READY: 1}


# ---------------------------------------------------------------------------------------- claiming


class ClaimChecks:
    """``claim_executions``: due records only, earliest first, the limit, the lease it sets."""

    async def test_claim_takes_the_earliest_ready_first_up_to_the_limit(self, storage: Storage) -> None:
        records = [new("te_a", ready_at=3.0), new("te_b", ready_at=1.0), new("te_c", ready_at=2.0),
                   new("te_d", ready_at=5.0), sleeping("te_s", "u")]
        await storage.insert_executions(records)
        claimed = await storage.claim_executions("de_1", 3.0, 2, LEASE_DURATION)
        assert _ids(claimed) == ["te_b", "te_c"]
        assert claimed == [claimed_copy(records[1], 3.0, "de_1"), claimed_copy(records[2], 3.0, "de_1")]
        assert await storage.get_executions(["te_b", "te_c"]) == claimed
        assert _ids(await claim(storage, 3.0)) == ["te_a"]  # ready_at == now is due
        assert await claim(storage, 4.75) == []
        assert _ids(await claim(storage, 5.0)) == ["te_d"]
        assert await claim(storage, 1000.0) == []  # claimed and sleeping records are never due

    async def test_claim_limit_and_equal_ready_times(self, storage: Storage) -> None:
        await storage.insert_executions([new(f"te_{i}", ready_at=1.0) for i in range(5)] + [new("te_z", ready_at=0.5)])
        assert await claim(storage, 2.0, 0) == []
        first = await claim(storage, 2.0, 3)
        assert _ids(first)[0] == "te_z" and len(first) == 3
        rest = await claim(storage, 2.0, 10)
        assert sorted(_ids(first[1:]) + _ids(rest)) == [f"te_{i}" for i in range(5)]

    async def test_claim_takes_higher_priorities_first_then_the_earliest(self, storage: Storage) -> None:
        """Priority first, then ``ready_at``: a later high-priority record overtakes earlier low
        ones, but one not yet due, however high, waits."""
        await storage.insert_executions([
            new("te_low_early", ready_at=0.5), new("te_mid_late", ready_at=2.0, priority=5),
            new("te_high_future", ready_at=9.0, priority=1_000_000), new("te_mid_early", ready_at=1.0, priority=5),
            new("te_high", ready_at=3.0, priority=7), new("te_low_late", ready_at=1.5),
        ])
        first = await claim(storage, 3.0, 3)
        assert _ids(first) == ["te_high", "te_mid_early", "te_mid_late"]
        assert [r.priority for r in first] == [7, 5, 5]
        assert _ids(await claim(storage, 3.0, 10)) == ["te_low_early", "te_low_late"]
        assert _ids(await claim(storage, 9.0, 10)) == ["te_high_future"]

    @requires("routing", why="a claim for some tasks and queues takes only theirs")
    async def test_a_routed_claim_takes_higher_priorities_first_across_tasks_and_queues(self, storage: Storage) -> None:
        """Levels merge across the (task, queue)s claimed from; a level's not-yet-due records,
        however many, neither block nor slow the levels below."""
        await storage.insert_executions(
            [new(f"te_future_{i}", task_id="a", ready_at=50.0 + i, priority=9) for i in range(30)] + [
                new("te_a_low", task_id="a", ready_at=0.1), new("te_b_mid", task_id="b", queue="q", ready_at=0.9,
                                                               priority=3),
                new("te_a_mid", task_id="a", queue="q", ready_at=0.5, priority=3),
                new("te_c_top", task_id="c", ready_at=0.0, priority=99),  # a task not claimed from
                new("te_b_low", task_id="b", ready_at=0.2)])
        routed: dict[str, Any] = {"task_ids": frozenset({"a", "b"}), "queues": frozenset({"default", "q"})}
        first = await storage.claim_executions("de_1", 1.0, 3, LEASE_DURATION, **routed)
        assert _ids(first) == ["te_a_mid", "te_b_mid", "te_a_low"]
        assert _ids(await storage.claim_executions("de_1", 1.0, 10, LEASE_DURATION, **routed)) == ["te_b_low"]
        assert await storage.claim_executions("de_1", 49.0, 10, LEASE_DURATION, **routed) == []
        later = await storage.claim_executions("de_1", 51.0, 10, LEASE_DURATION, **routed)
        assert _ids(later) == ["te_future_0", "te_future_1"]

    @requires("routing", why="a claim for some tasks takes only theirs")
    async def test_a_claim_for_some_tasks_takes_only_theirs_earliest_first(self, storage: Storage) -> None:
        records = [new("te_a1", task_id="a", ready_at=3.0), new("te_b1", task_id="b", ready_at=1.0),
                   new("te_c1", task_id="c", ready_at=0.5), new("te_a2", task_id="a", ready_at=2.0),
                   new("te_b2", task_id="b", ready_at=4.0)]
        await storage.insert_executions(records)
        claimed = await storage.claim_executions("de_1", 5.0, 3, LEASE_DURATION, task_ids=frozenset({"a", "b"}))
        assert claimed == [claimed_copy(records[i], 5.0, "de_1") for i in (1, 3, 0)]
        assert await storage.get_executions(["te_c1", "te_b2"]) == [records[2], records[4]]  # untouched
        assert await storage.claim_executions("de_1", 5.0, 10, LEASE_DURATION, task_ids=frozenset({"x"})) == []
        assert await storage.claim_executions("de_1", 5.0, 10, LEASE_DURATION, task_ids=frozenset()) == []
        rest = await storage.claim_executions("de_2", 5.0, 10, LEASE_DURATION, task_ids=frozenset({"c", "b", "x"}))
        assert _ids(rest) == ["te_c1", "te_b2"]

    @requires("routing", "concurrency_limits", why="a task's max_concurrency caps its running executions")
    async def test_a_claim_with_limits_never_exceeds_them_and_finished_ones_free_slots(self, storage: Storage) -> None:
        """``limits`` count the running records of every claimer (not sleeping ones); claims made
        at once never exceed them together; a finished execution frees its slot."""
        await storage.insert_executions([new(f"te_a{i}", task_id="a", ready_at=i / 10) for i in range(6)]
                                        + [new(f"te_b{i}", task_id="b", ready_at=i / 10) for i in range(3)])
        routed: dict[str, Any] = {"task_ids": frozenset({"a", "b"}), "queues": frozenset({"default"}),
                                  "limits": {"a": 2}}
        claimed = await _claim_at_once(storage, routed)
        assert sorted(_ids(claimed)) == ["te_a0", "te_a1", "te_b0", "te_b1", "te_b2"]
        assert await storage.claim_executions("de_3", 1.0, 10, LEASE_DURATION, **routed) == []
        first = next(r for r in claimed if r.execution_id == "te_a0")
        await storage.commit_runs([finish(first, S.COMPLETED, 2.0)], 2.0)
        assert _ids(await storage.claim_executions("de_3", 2.0, 10, LEASE_DURATION, **routed)) == ["te_a2"]
        second = next(r for r in claimed if r.execution_id == "te_a1")
        retrying = second.copy(status=S.READY, ready_at=50.0, started_at=None)
        await storage.commit_runs([RunCommit(retrying)], 2.0)  # it waits to retry: its slot is free
        assert _ids(await storage.claim_executions("de_3", 2.0, 10, LEASE_DURATION, **routed)) == ["te_a3"]
        assert _ids(await storage.claim_executions("de_3", 2.0, 10, LEASE_DURATION,
                                                   **{**routed, "limits": {"a": 4}})) == ["te_a4", "te_a5"]

    @requires("routing", "rate_limits", why="a task's rate_limit caps its claims per sliding period")
    async def test_a_claim_with_rates_never_exceeds_them_in_a_period_and_takes_more_after(self, storage: Storage) -> None:
        """``rates`` count the records of a task started in the last period, by every claimer,
        finished or not; claims made at once never exceed them together; once the period has
        passed since those starts, more are claimed."""
        await storage.insert_executions([new(f"te_a{i}", task_id="a", ready_at=i / 10) for i in range(7)]
                                        + [new(f"te_b{i}", task_id="b", ready_at=i / 10) for i in range(3)])
        routed: dict[str, Any] = {"task_ids": frozenset({"a", "b"}), "queues": frozenset({"default"}),
                                  "rates": {"a": (3, 60.0)}}
        claimed = await _claim_at_once(storage, routed)
        assert sorted(_ids(claimed)) == ["te_a0", "te_a1", "te_a2", "te_b0", "te_b1", "te_b2"]
        await storage.commit_runs([finish(r, S.COMPLETED, 2.0) for r in claimed], 2.0)  # finished ones still count
        assert await storage.claim_executions("de_3", 30.0, 10, LEASE_DURATION, **routed) == []
        assert await storage.claim_executions("de_3", 60.5, 10, LEASE_DURATION, **routed) == []
        assert _ids(await storage.claim_executions("de_3", 61.5, 2, LEASE_DURATION, **routed)) == ["te_a3", "te_a4"]
        assert _ids(await storage.claim_executions("de_3", 61.5, 10, LEASE_DURATION, **routed)) == ["te_a5"]
        assert await storage.claim_executions("de_3", 62.0, 10, LEASE_DURATION,
                                              **{**routed, "limits": {"a": 10}}) == []
        assert _ids(await storage.claim_executions("de_3", 122.0, 10, LEASE_DURATION,
                                                   **{**routed, "limits": {"a": 3}})) == []  # 3 still running
        assert _ids(await storage.claim_executions("de_3", 122.0, 10, LEASE_DURATION,
                                                   **{**routed, "limits": {"a": 4}})) == ["te_a6"]

    @requires("routing", why="a claim for some queues takes only theirs")
    async def test_a_claim_for_some_queues_takes_only_theirs(self, storage: Storage) -> None:
        records = [new("te_a_mail", task_id="a", queue="emails", ready_at=1.0),
                   new("te_a_default", task_id="a", ready_at=0.5),
                   new("te_b_mail", task_id="b", queue="emails", ready_at=0.25),
                   new("te_a_other", task_id="a", queue="other", ready_at=0.0)]
        await storage.insert_executions(records)
        claimed = await storage.claim_executions("de_1", 5.0, 10, LEASE_DURATION, task_ids=frozenset({"a"}),
                                                 queues=frozenset({"emails", "default"}))
        assert claimed == [claimed_copy(records[i], 5.0, "de_1") for i in (1, 0)]
        assert [r and r.queue for r in claimed] == ["default", "emails"]
        assert await storage.claim_executions("de_1", 5.0, 10, LEASE_DURATION, task_ids=frozenset({"a", "b"}),
                                              queues=frozenset()) == []
        rest = await storage.claim_executions("de_1", 5.0, 10, LEASE_DURATION, task_ids=frozenset({"a", "b"}),
                                              queues=frozenset({"other", "emails"}))
        assert _ids(rest) == ["te_a_other", "te_b_mail"]

    async def test_claim_does_not_take_what_is_not_due(self, storage: Storage) -> None:
        await storage.insert_executions([
            new("te_later", ready_at=50.0, start_at=50.0),
            new("te_none", ready_at=None),  # e.g. a parent waiting for children
            new("te_done", status=S.COMPLETED, ready_at=None, finished_at=0.0),
        ])
        assert await claim(storage, 49.5) == []
        assert _ids(await claim(storage, 1e9)) == ["te_later"]

    async def test_claiming_a_waiting_parent_keeps_its_status(self, storage: Storage) -> None:
        parent, (first,) = await _parent_with_children(storage, 1)
        claimed_child = await claim_one(storage, 1.0, first.execution_id)
        await storage.commit_runs([finish(claimed_child, S.COMPLETED, 2.0)], 2.0)
        waiting = await get(storage, "te_p")
        assert waiting is not None
        again = await claim_one(storage, 3.0, "te_p", executor_id="de_b")
        assert again == claimed_copy(waiting, 3.0, "de_b")
        assert (again.status, again.started_at, again.lease_token) == (W, parent.started_at, 2)

    async def test_every_claim_increments_the_fencing_token(self, storage: Storage) -> None:
        await storage.insert_executions([new("te_1", lease_token=7)])
        tokens = []
        now = 0.0
        for end in ("release", "expire", "retry", "release"):
            claimed = await claim_one(storage, now, "te_1")
            tokens.append(claimed.lease_token)
            if end == "release":
                await storage.release_leases([claimed.lease], now)
            elif end == "expire":
                now += 100.0
                await storage.expire_leases(now, 10, 10)
            else:
                await storage.commit_runs([retry(claimed, now, 0.0)], now)
        assert tokens == [8, 9, 10, 11]


# ---------------------------------------------------------------------------------------- fencing


class CommitChecks:
    """``commit_runs`` and ``find_revoked_leases``: fenced writes that a lost lease can never make."""

    async def test_commit_stores_every_field_but_the_lease(self, storage: Storage) -> None:
        await storage.insert_executions([new("te_1"), new("te_2", ready_at=0.5)])
        claimed = await claim_one(storage, 0.0, "te_1")
        commit = finish(claimed, S.FAILED, 2.5, error=BOOM, output=OUTPUT, run_output=RUN_OUTPUT,
                        retry_attempts=3, executor_id="de_a", created_at=0.0, updated_at=1.0)
        changes = await storage.commit_runs([commit], 3.0)
        assert summarize(changes) == expected(change(claimed, S.RUNNING, S.FAILED))
        stored = await get(storage, "te_1")
        assert stored == committed_copy(commit, 3.0)
        assert (stored.lease_token, stored.lease_expires_at, stored.updated_at) == (1, None, 3.0)

        claimed = await claim_one(storage, 3.0, "te_2")
        commit = finish(claimed, S.COMPLETED, 4.0, output=Payload("cbor", b"\x00\xff" * 1000), error=None)
        assert summarize(await storage.commit_runs([commit], 4.0)) == expected(change(claimed, S.RUNNING, S.COMPLETED))
        assert await get(storage, "te_2") == committed_copy(commit, 4.0)

    async def test_a_commit_stores_deferred_options_as_sent_cleared_or_kept(self, storage: Storage) -> None:
        """The executor that claims a record with deferred options fills in the task's defaults and
        commits it with none left; a commit that keeps them keeps them, and so does every other
        operation."""
        deferred, one = frozenset(DEFERRABLE), frozenset({"timeout"})
        await storage.insert_executions([new(f"te_{i}", now=i / 10, deferred_options=deferred) for i in range(3)])
        first, kept, parent = await claim(storage, 0.5)
        filled = finish(first, S.COMPLETED, 1.0, retry=RetryOptions(max_attempts=3), timeout=30.0,
                        sleep_before_run=0.5, deferred_options=frozenset())
        kid = child(parent, "te_kid", now=1.0, deferred_options=one)
        commits = [filled, retry(kept, 1.0, 0.5), spawn(parent, [kid], 1.0, deferred_options=frozenset())]
        await storage.commit_runs(commits, 1.0)
        stored = await storage.get_executions(["te_0", "te_1", "te_2", "te_kid"])
        assert stored == [*(committed_copy(c, 1.0) for c in commits), kid]
        assert _ids(await claim(storage, 2.0)) == ["te_kid", "te_1"]
        await storage.expire_leases(100.0, 10, 10)
        await storage.cancel_executions(["te_2", "te_1"], 101.0)
        after = await storage.get_executions(["te_0", "te_1", "te_2", "te_kid"])
        assert [r and (r.status, r.deferred_options) for r in after] == [
            (S.COMPLETED, frozenset()), (S.CANCELLED, deferred), (S.CANCELLED, frozenset()), (S.CANCELLED, one)]

    async def test_a_retry_is_claimable_again_at_its_start(self, storage: Storage) -> None:
        await storage.insert_executions([new("te_1", timeout=1.0)])
        claimed = await claim_one(storage, 0.0, "te_1")
        commit = retry(claimed, 1.0, 30.0)
        assert summarize(await storage.commit_runs([commit], 1.0)) == expected(change(claimed, S.RUNNING, S.READY))
        assert await get(storage, "te_1") == committed_copy(commit, 1.0)
        assert await claim(storage, 30.75) == []
        assert await storage.expire_leases(1000.0, 0, 10) == []  # committing ended the lease
        again = await claim_one(storage, 31.0, "te_1")
        assert (again.retry_attempts, again.lease_token, again.started_at, again.error) == (1, 2, 31.0, BOOM)

    async def test_an_errors_type_name_and_traceback_survive_a_commit_and_are_replaced_with_it(
        self, storage: Storage
    ) -> None:
        detailed = ErrorInfo("generic", "KeyError: 'file'", is_retryable=True, type_name="builtins.KeyError",
                             traceback="Traceback (most recent call last):\n  ✓ ‘line’\n" * 400)
        await storage.insert_executions([new("te_1", timeout=1.0)])
        claimed = await claim_one(storage, 0.0, "te_1")
        await storage.commit_runs([retry(claimed, 1.0, 0.0, error=detailed)], 1.0)
        claimed = await claim_one(storage, 1.0, "te_1")
        assert claimed.error == detailed
        await storage.expire_leases(100.0, 10, 10)  # the engine's own error carries no details
        assert (await get_stored(storage, "te_1")).error == EXPIRED_ERROR
        claimed = await claim_one(storage, 100.0, "te_1")
        await storage.commit_runs([finish(claimed, S.FAILED, 101.0, error=detailed)], 101.0)
        assert (await get_stored(storage, "te_1")).error == detailed

    async def test_a_commit_whose_token_is_not_the_stored_one_changes_nothing(self, storage: Storage) -> None:
        await storage.insert_executions([new("te_1")])
        claimed = await claim_one(storage, 0.0, "te_1")
        for token in (0, 2, 99):
            stale = finish(claimed.copy(lease_token=token), S.COMPLETED, 1.0)
            assert await storage.commit_runs([stale], 1.0) == []
            assert await storage.find_revoked_leases([Lease("te_1", token)]) == ["te_1"]
        assert await get(storage, "te_1") == claimed
        assert await storage.find_revoked_leases([claimed.lease]) == []

    async def test_a_lease_ended_by_anything_can_never_commit_again(self, storage: Storage) -> None:
        ends = ("commit", "release", "cancel", "expire")
        await storage.insert_executions([new(f"te_{end}", timeout=1.0) for end in ends])
        claimed = {r.execution_id.removeprefix("te_"): r for r in await claim(storage, 0.0)}
        await storage.commit_runs([retry(claimed["commit"], 0.5, 0.0)], 0.5)
        await storage.release_leases([claimed["release"].lease], 0.5)
        await storage.cancel_executions(["te_cancel"], 0.5)
        assert summarize(await storage.expire_leases(15.0, 10, 10)) == expected(
            change(claimed["expire"], S.RUNNING, S.READY))
        leases = [claimed[end].lease for end in ends]
        assert await storage.find_revoked_leases(leases) == [f"te_{end}" for end in ends]
        before = await storage.get_executions([f"te_{end}" for end in ends])
        late = [finish(claimed[end], S.COMPLETED, 16.0) for end in ends]
        assert await storage.commit_runs(late, 16.0) == []
        assert await storage.release_leases(leases, 16.0) == []
        assert await storage.get_executions([f"te_{end}" for end in ends]) == before
        # re-claimed: the new lease holds, the old one still does not
        reclaimed = await claim(storage, 16.0)
        assert sorted(_ids(reclaimed)) == ["te_commit", "te_expire", "te_release"]
        assert await storage.commit_runs(late, 17.0) == []
        assert await storage.find_revoked_leases([r.lease for r in reclaimed]) == []
        assert await storage.get_executions(_ids(reclaimed)) == reclaimed

    async def test_commits_in_one_batch_are_fenced_each_alone(self, storage: Storage) -> None:
        await storage.insert_executions([new("te_a"), new("te_b"), new("te_c")])
        a, b, c = await claim(storage, 0.0)
        commits = [finish(a, S.COMPLETED, 1.0), finish(b.copy(lease_token=5), S.COMPLETED, 1.0),
                   finish(c, S.FAILED, 1.0), RunCommit(new("te_unknown").copy(lease_token=1))]
        changes = await storage.commit_runs(commits, 1.0)
        assert summarize(changes) == expected(change(a, S.RUNNING, S.COMPLETED), change(c, S.RUNNING, S.FAILED))
        assert await get(storage, "te_b") == b
        assert await get(storage, "te_unknown") is None
        assert await storage.commit_runs([], 1.0) == []

    async def test_a_commit_returns_a_change_for_each_execution_it_inserts(self, storage: Storage) -> None:
        await storage.insert_executions([new("te_p")])
        parent = await claim_one(storage, 0.0, "te_p")
        first, asleep = child(parent, "te_c1", now=1.0), child(parent, "te_c2", now=1.0, index=1, make=sleeping,
                                                               unique_id="u")
        changes = await storage.commit_runs([spawn(parent, [first, asleep], 1.0)], 1.0)
        assert summarize(changes) == expected(
            change(parent, S.RUNNING, W), change(first, None, S.READY), change(asleep, None, S.RUNNING))
        assert await storage.get_executions(["te_c1", "te_c2"]) == [first, asleep]

    async def test_a_commit_inserting_a_taken_unique_id_applies_nothing(self, storage: Storage) -> None:
        await storage.insert_executions([new("te_a"), new("te_b"), sleeping("te_s", "u")])
        a, b = await claim(storage, 0.0)
        duplicate = child(b, "te_new", now=1.0, make=sleeping, unique_id="u")
        with pytest.raises(DuplicateSleepingTaskUniqueIdError):
            await storage.commit_runs([finish(a, S.COMPLETED, 1.0), spawn(b, [duplicate], 1.0)], 1.0)
        twins = [child(b, "te_t1", now=1.0, make=sleeping, unique_id="t"),
                 child(b, "te_t2", now=1.0, index=1, make=sleeping, unique_id="t")]
        with pytest.raises(DuplicateSleepingTaskUniqueIdError):
            await storage.commit_runs([spawn(b, twins, 1.0)], 1.0)
        assert await storage.get_executions(["te_a", "te_b"]) == [a, b]
        assert await storage.get_executions(["te_new", "te_t1", "te_t2"]) == [None] * 3
        stale = spawn(b.copy(lease_token=0), [duplicate], 1.0)
        assert await storage.commit_runs([stale], 1.0) == []  # a commit whose lease ended inserts nothing

    async def test_find_revoked_leases_keeps_the_order_asked(self, storage: Storage) -> None:
        await storage.insert_executions([new("te_a"), new("te_b"), new("te_c")])
        a, b, c = await claim(storage, 0.0)
        await storage.cancel_executions(["te_b"], 1.0)
        asked = [Lease("te_x", 1), c.lease, b.lease, a.lease, Lease("te_a", 2)]
        assert await storage.find_revoked_leases(asked) == ["te_x", "te_b", "te_a"]
        assert await storage.find_revoked_leases([]) == []


# ---------------------------------------------------------------------------------------- closure and cascade


class ClosureChecks:
    """A finished child moves its parent along, in the same atomic step, however it finished."""

    async def test_finishing_the_last_child_makes_its_parent_claimable(self, storage: Storage) -> None:
        parent, (first, _) = await _parent_with_children(storage, 2)
        claimed = await claim(storage, 1.0)
        assert sorted(_ids(claimed)) == ["te_p_c0", "te_p_c1"]
        by_id = {r.execution_id: r for r in claimed}

        changes = await storage.commit_runs([finish(by_id["te_p_c0"], S.COMPLETED, 2.0)], 2.0)
        assert summarize(changes) == expected(change(first, S.RUNNING, S.COMPLETED), change(parent, W, W))
        waiting = await get_stored(storage, "te_p")
        assert (waiting.active_children_count, waiting.ready_at) == (1, None)
        assert await claim(storage, 2.0) == []

        await storage.commit_runs([finish(by_id["te_p_c1"], S.FAILED, 3.0)], 3.0)
        waiting = await get_stored(storage, "te_p")
        assert (waiting.active_children_count, waiting.ready_at, waiting.status) == (0, 3.0, W)
        again = await claim_one(storage, 3.0, "te_p")
        assert (again.status, again.lease_token) == (W, 2)

    async def test_finishing_the_finalize_child_makes_its_parent_claimable(self, storage: Storage) -> None:
        await storage.insert_executions([new("te_p")])
        parent = await claim_one(storage, 0.0, "te_p")
        finalize = child(parent, "te_f", now=1.0, is_finalize=True)
        await storage.commit_runs([spawn(parent, [finalize], 1.0, S.WAITING_FOR_FINALIZE)], 1.0)
        claimed = await claim_one(storage, 1.0, "te_f")
        await storage.commit_runs([finish(claimed, S.COMPLETED, 2.0)], 2.0)
        again = await claim_one(storage, 2.0, "te_p")
        assert (again.status, again.active_children_count) == (S.WAITING_FOR_FINALIZE, 0)

    async def test_every_way_a_child_finishes_moves_its_parent_along(self, storage: Storage) -> None:
        ways = ("commit", "cancel", "wake", "sleeping_timeout", "expired_too_often")
        for n, way in enumerate(ways):
            now = 100.0 * n
            await storage.insert_executions([new(f"te_{way}", now=now)])
            parent = await claim_one(storage, now, f"te_{way}")
            make = sleeping if way in ("wake", "sleeping_timeout") else new
            extra: dict[str, Any] = {"unique_id": f"u_{way}"} if make is sleeping else {}
            kid = child(parent, f"te_{way}_child", now=now, make=make, timeout=10.0, **extra)
            await storage.commit_runs([spawn(parent, [kid], now)], now)
            later = now + 50.0
            if way == "commit":
                changes = await storage.commit_runs([finish(await claim_one(storage, now, kid.execution_id),
                                                            S.FAILED, later)], later)
            elif way == "cancel":
                changes = await storage.cancel_executions([kid.execution_id], later)
            elif way == "wake":
                changes = await storage.wake_sleeping_executions(
                    [SleepingWakeup(kid.execution_id, S.COMPLETED, output=OUTPUT)], later)
            elif way == "sleeping_timeout":
                changes = await storage.expire_leases(later, 10, 10)
            else:
                await claim_one(storage, now, kid.execution_id)
                changes = await storage.expire_leases(later, 0, 10)
            assert summarize(changes)[parent.execution_id][1:] == (W, W), way
            assert kid.execution_id in summarize(changes), way
            stored = await get_stored(storage, parent.execution_id)
            assert (stored.active_children_count, stored.ready_at) == (0, later), way
            assert _ids(await claim(storage, later)) == [parent.execution_id], way
            await storage.cancel_executions([parent.execution_id], later)  # out of the next way's path


class CascadeChecks:
    """An execution ending in any status but completed cancels every unfinished descendant."""

    async def test_cancelling_a_root_cancels_every_unfinished_descendant(self, storage: Storage) -> None:
        await storage.insert_executions([new("te_r")])
        root = await claim_one(storage, 0.0, "te_r")
        middle, done = child(root, "te_m", now=1.0), child(root, "te_d", now=1.0, index=1)
        await storage.commit_runs([spawn(root, [middle, done], 1.0)], 1.0)
        claimed = {r.execution_id: r for r in await claim(storage, 1.0)}
        middle, done = claimed["te_m"], claimed["te_d"]
        await storage.commit_runs([finish(done, S.COMPLETED, 2.0)], 2.0)
        grandchild = child(middle, "te_g", now=2.0)
        asleep = child(middle, "te_s", now=2.0, index=1, make=sleeping, unique_id="u")
        await storage.commit_runs([spawn(middle, [grandchild, asleep], 2.0)], 2.0)
        grandchild = await claim_one(storage, 2.0, "te_g")

        changes = await storage.cancel_executions(["te_r"], 5.0)

        assert summarize(changes) == expected(
            change(grandchild, S.RUNNING, S.CANCELLED), change(middle, W, S.CANCELLED),
            change(root, W, S.CANCELLED), change(asleep, S.RUNNING, S.CANCELLED),
        )
        cancelled_root = await get(storage, "te_r")
        assert cancelled_root is not None
        assert (cancelled_root.error, cancelled_root.finished_at, cancelled_root.ready_at) == (CANCELLED_ERROR, 5.0, None)
        for execution_id in ("te_m", "te_g", "te_s"):
            record = await get(storage, execution_id)
            assert record is not None
            assert (record.status, record.error, record.finished_at, record.lease_expires_at, record.ready_at) == (
                S.CANCELLED, cascade_error(cancelled_root), 5.0, None, None
            ), execution_id
        assert (await get_stored(storage, "te_d")).status is S.COMPLETED
        assert await storage.find_revoked_leases([grandchild.lease]) == ["te_g"]
        assert await storage.commit_runs([finish(grandchild, S.COMPLETED, 6.0)], 6.0) == []
        assert await storage.expire_leases(1000.0, 10, 100) == []
        assert await claim(storage, 1000.0) == []
        assert await storage.get_executions_by_sleeping_unique_id(["u"]) == [await get(storage, "te_s")]

    @pytest.mark.parametrize("status", sorted(FINISHED_TASK_EXECUTION_STATUSES - {S.COMPLETED}))
    async def test_a_parent_ending_unsuccessfully_cancels_its_unfinished_children(
        self, storage: Storage, status: S
    ) -> None:
        parent = new("te_p", status=S.RUNNING, ready_at=None, lease_token=1, lease_expires_at=50.0, started_at=0.0)
        running = child(parent, "te_c", now=0.0, status=S.RUNNING, ready_at=None, lease_token=1,
                        lease_expires_at=50.0, started_at=0.0)
        finished = child(parent, "te_f", now=0.0, index=2, status=S.COMPLETED, ready_at=None, finished_at=0.5,
                         output=OUTPUT)
        await storage.insert_executions([parent, running, child(parent, "te_q", now=0.0, index=1), finished])
        changes = await storage.commit_runs([finish(parent, status, 3.0)], 3.0)
        assert set(summarize(changes)) == {"te_p", "te_c", "te_q"}
        ended = await get(storage, "te_p")
        assert ended is not None and ended.status is status
        cancelled = [await get_stored(storage, i) for i in ("te_c", "te_q")]
        assert [(r.status, r.error, r.finished_at) for r in cancelled] == [(S.CANCELLED, cascade_error(ended), 3.0)] * 2
        assert f"ended {status}" in cascade_error(ended).message
        assert await storage.find_revoked_leases([running.lease]) == ["te_c"]
        assert await get(storage, "te_f") == finished

    async def test_a_cascade_replaces_a_detailed_error_whole(self, storage: Storage) -> None:
        parent, (child_record,) = await _parent_with_children(storage, count=1)
        claimed = await claim_one(storage, 1.0, child_record.execution_id)
        detailed = ErrorInfo("generic", "boom", is_retryable=True, type_name="my_app.Boom", traceback="Traceback\n")
        await storage.commit_runs([retry(claimed, 2.0, 50.0, error=detailed)], 2.0)
        await storage.cancel_executions([parent.execution_id], 3.0)
        cancelled = await get_stored(storage, child_record.execution_id)
        assert cancelled.error == cascade_error(await get_stored(storage, parent.execution_id))

    async def test_a_completed_parent_cancels_nothing(self, storage: Storage) -> None:
        parent = new("te_p", status=S.RUNNING, ready_at=None, lease_token=1, lease_expires_at=50.0)
        await storage.insert_executions([parent, child(parent, "te_c", now=0.0)])
        changes = await storage.commit_runs([finish(parent, S.COMPLETED, 3.0)], 3.0)
        assert set(summarize(changes)) == {"te_p"}
        assert (await get_stored(storage, "te_c")).status is S.READY


# ---------------------------------------------------------------------------------------- leases from outside


class ExpiryChecks:
    """``expire_leases``: crash recovery in the time passed in, bounded restarts, sleeping timeouts."""

    async def test_an_expired_running_execution_is_handed_back(self, storage: Storage) -> None:
        await storage.insert_executions([new("te_1")])
        claimed = await claim_one(storage, 0.0, "te_1")  # lease until 0 + 10 + 5
        assert await storage.expire_leases(14.875, 10, 10) == []
        changes = await storage.expire_leases(15.0, 1, 10)  # one expiration is allowed
        assert summarize(changes) == expected(change(claimed, S.RUNNING, S.READY))
        assert await get(storage, "te_1") == claimed.copy(
            status=S.READY, error=EXPIRED_ERROR, ready_at=15.0, start_at=15.0, executor_id=None,
            lease_expires_at=None, lease_expirations=1, updated_at=15.0,
        )
        assert await storage.find_revoked_leases([claimed.lease]) == ["te_1"]
        again = await claim_one(storage, 15.0, "te_1")
        assert await storage.commit_runs([finish(claimed, S.COMPLETED, 16.0)], 16.0) == []
        assert await get(storage, "te_1") == again

    async def test_an_execution_expiring_too_often_fails_and_moves_its_parent_along(self, storage: Storage) -> None:
        await storage.insert_executions([new("te_p")])
        parent = await claim_one(storage, 0.0, "te_p")
        commit = spawn(parent, [child(parent, "te_c", now=1.0, lease_expirations=2)], 1.0)
        await storage.commit_runs([commit], 1.0)
        claimed = await claim_one(storage, 1.0, "te_c")
        changes = await storage.expire_leases(100.0, 2, 10)
        assert summarize(changes) == expected(change(claimed, S.RUNNING, S.FAILED), change(parent, W, W))
        failed = await get(storage, "te_c")
        assert failed is not None
        assert (failed.error, failed.lease_expirations, failed.finished_at, failed.ready_at,
                failed.lease_expires_at) == (EXPIRED_TOO_OFTEN_ERROR, 3, 100.0, None, None)
        assert (await get_stored(storage, "te_p")).ready_at == 100.0

    async def test_a_parent_expiring_too_often_cancels_its_children(self, storage: Storage) -> None:
        parent, (kid,) = await _parent_with_children(storage, 1)
        assert parent.lease_expirations == 0
        await storage.commit_runs([finish(await claim_one(storage, 1.0, kid.execution_id), S.COMPLETED, 2.0)], 2.0)
        await claim_one(storage, 2.0, "te_p")
        await storage.insert_executions([child(parent, "te_late", now=2.0, index=1)])
        changes = await storage.expire_leases(100.0, 0, 10)
        assert summarize(changes)["te_p"][1:] == (W, S.FAILED)
        failed = await get_stored(storage, "te_p")
        assert (await get_stored(storage, "te_late")).error == cascade_error(failed)

    async def test_an_expired_sleeping_execution_times_out(self, storage: Storage) -> None:
        await storage.insert_executions([new("te_p")])
        parent = await claim_one(storage, 0.0, "te_p")
        asleep = child(parent, "te_s", now=1.0, make=sleeping, unique_id="u")
        await storage.commit_runs([spawn(parent, [asleep], 1.0)], 1.0)
        assert await storage.expire_leases(10.875, 0, 10) == []
        changes = await storage.expire_leases(11.0, 0, 10)
        assert summarize(changes) == expected(change(asleep, S.RUNNING, S.TIMED_OUT), change(parent, W, W))
        timed_out = await get(storage, "te_s")
        assert timed_out is not None
        assert (timed_out.error, timed_out.lease_expirations, timed_out.finished_at, timed_out.lease_expires_at) == (
            SLEEPING_TIMED_OUT_ERROR, 0, 11.0, None)
        assert _ids(await claim(storage, 11.0)) == ["te_p"]

    async def test_a_waiting_parent_whose_lease_ends_is_claimable_again(self, storage: Storage) -> None:
        await storage.insert_executions([new("te_p")])
        parent = await claim_one(storage, 0.0, "te_p")
        await storage.commit_runs([spawn(parent, [child(parent, "te_c", now=1.0)], 1.0)], 1.0)
        await storage.commit_runs([finish(await claim_one(storage, 1.0, "te_c"), S.COMPLETED, 2.0)], 2.0)
        waiting = await claim_one(storage, 2.0, "te_p")
        handed_back = dict(executor_id=None, lease_expires_at=None)

        assert summarize(await storage.release_leases([waiting.lease], 3.0)) == expected(change(waiting, W, W))
        assert await get(storage, "te_p") == waiting.copy(ready_at=3.0, updated_at=3.0, **handed_back)

        waiting = await claim_one(storage, 3.0, "te_p")
        assert summarize(await storage.expire_leases(100.0, 10, 10)) == expected(change(waiting, W, W))
        assert await get(storage, "te_p") == waiting.copy(ready_at=100.0, updated_at=100.0, lease_expirations=1,
                                                          **handed_back)

    async def test_expiry_ends_the_earliest_leases_first_up_to_the_limit(self, storage: Storage) -> None:
        await storage.insert_executions([new("te_a", now=3.0), new("te_b", now=1.0), new("te_c", now=2.0),
                                         new("te_d", now=50.0)])
        for now, execution_id in [(1.0, "te_b"), (2.0, "te_c"), (3.0, "te_a")]:  # leases end in this order
            await claim_one(storage, now, execution_id)
        assert [c.execution_id for c in await storage.expire_leases(100.0, 10, 2)] == ["te_b", "te_c"]
        assert [c.execution_id for c in await storage.expire_leases(100.0, 10, 2)] == ["te_a"]
        assert await storage.expire_leases(100.0, 10, 2) == []


class RenewalChecks:
    """``renew_leases`` and ``list_executors``: heartbeats extend the leases that hold, never one
    that ended, and keep the registry of live executors."""

    async def test_a_heartbeat_extends_the_leases_that_hold_and_names_the_others(self, storage: Storage) -> None:
        await storage.insert_executions([new("te_a"), new("te_b"), new("te_c"), sleeping("te_s", "u")])
        a, b, c = await claim(storage, 1.0)
        await storage.cancel_executions(["te_c"], 2.0)
        sleeper = await get_stored(storage, "te_s")
        asked = [Lease("te_x", 1), b.lease, sleeper.lease, Lease("te_a", a.lease_token + 1), c.lease, a.lease]
        assert await storage.renew_leases(executor(now=3.0, running=3), asked, 3.0, 20.0) == [
            "te_x", "te_s", "te_a", "te_c"]
        assert await storage.get_executions(["te_a", "te_b", "te_s"]) == [
            a.copy(lease_expires_at=23.0), b.copy(lease_expires_at=23.0), sleeper]
        assert await storage.renew_leases(executor(now=4.0), [], 4.0, 20.0) == []

    async def test_a_renewed_lease_expires_only_once_its_new_end_has_passed(self, storage: Storage) -> None:
        await storage.insert_executions([new("te_1")])
        claimed = await claim_one(storage, 0.0, "te_1")  # lease until 15
        assert await storage.renew_leases(executor(now=10.0), [claimed.lease], 10.0, 15.0) == []
        assert await storage.expire_leases(24.9, 10, 10) == []
        assert summarize(await storage.expire_leases(25.0, 10, 10)) == expected(change(claimed, S.RUNNING, S.READY))
        assert await storage.renew_leases(executor(now=26.0), [claimed.lease], 26.0, 15.0) == ["te_1"]
        assert (await get_stored(storage, "te_1")).lease_expires_at is None

    async def test_heartbeats_keep_the_registry_of_live_executors(self, storage: Storage) -> None:
        old, a, b = executor("de_old", now=1.0), executor("de_a", now=5.0, running=2), executor("de_b", now=6.0)
        for heartbeat in (old, a, b):
            await storage.renew_leases(heartbeat, [], heartbeat.heartbeat_at, 10.0)
        assert await storage.list_executors(5.0) == [a, b]
        later = executor("de_a", now=9.0, running=0)
        await storage.renew_leases(later, [], 9.0, 10.0)
        assert await storage.list_executors(0.0) == [later, b, old]  # started together: by id
        assert await storage.list_executors(9.5) == []
        forgetting = executor("de_b", now=1.0 + EXECUTOR_RETENTION + 1)
        await storage.renew_leases(forgetting, [], forgetting.heartbeat_at, 10.0)
        assert await storage.list_executors(0.0) == [later, forgetting]

    async def test_executions_are_listed_by_the_executor_that_holds_or_held_them(self, storage: Storage) -> None:
        await storage.insert_executions([new("te_a"), new("te_b", now=1.0), new("te_c", now=2.0)])
        await claim_one(storage, 0.0, "te_a", executor_id="de_a")
        await claim_one(storage, 1.0, "te_b", executor_id="de_b")
        await claim_one(storage, 2.0, "te_c", executor_id="de_a")
        assert _ids(await storage.list_executions(executor_id="de_a")) == ["te_c", "te_a"]
        assert _ids(await storage.list_executions(executor_id="de_b", statuses=[S.RUNNING])) == ["te_b"]
        assert await storage.list_executions(executor_id="de_b", statuses=[S.READY]) == []
        assert await storage.list_executions(executor_id="de_x") == []


class ReleaseChecks:
    """``release_leases``: the graceful hand-back at shutdown, claimable again at once, not counted."""

    async def test_release_hands_a_running_execution_back_at_once(self, storage: Storage) -> None:
        await storage.insert_executions([new("te_1", retry_attempts=2, lease_expirations=1, error=BOOM)])
        claimed = await claim_one(storage, 0.0, "te_1")
        assert summarize(await storage.release_leases([claimed.lease], 4.0)) == expected(
            change(claimed, S.RUNNING, S.READY))
        assert await get(storage, "te_1") == claimed.copy(
            status=S.READY, ready_at=4.0, start_at=4.0, executor_id=None, lease_expires_at=None, updated_at=4.0)
        assert await storage.find_revoked_leases([claimed.lease]) == ["te_1"]
        again = await claim_one(storage, 4.0, "te_1")
        assert (again.lease_token, again.retry_attempts, again.lease_expirations) == (2, 2, 1)

    async def test_release_of_a_lease_that_ended_changes_nothing(self, storage: Storage) -> None:
        await storage.insert_executions([new("te_1"), new("te_2")])
        one, two = await claim(storage, 0.0)
        await storage.commit_runs([finish(one, S.COMPLETED, 1.0)], 1.0)
        assert await storage.release_leases([one.lease, Lease("te_2", 9), Lease("te_x", 1)], 2.0) == []
        assert await get(storage, "te_2") == two
        assert await storage.release_leases([], 2.0) == []


class WakeChecks:
    """``wake_sleeping_executions``: finishing sleeping executions from outside, once."""

    async def test_wake_completes_or_fails_a_sleeping_execution(self, storage: Storage) -> None:
        await storage.insert_executions([new("te_p")])
        parent = await claim_one(storage, 0.0, "te_p")
        kids = [child(parent, "te_yes", now=1.0, make=sleeping, unique_id="yes"),
                child(parent, "te_no", now=1.0, index=1, make=sleeping, unique_id="no")]
        await storage.commit_runs([spawn(parent, kids, 1.0)], 1.0)
        failure = ErrorInfo("generic", "declined", is_retryable=False)
        changes = await storage.wake_sleeping_executions(
            [SleepingWakeup("te_yes", S.COMPLETED, output=OUTPUT), SleepingWakeup("te_no", S.FAILED, error=failure)],
            2.0,
        )
        assert summarize(changes) == expected(
            change("te_yes", S.RUNNING, S.COMPLETED, "webhook"), change("te_no", S.RUNNING, S.FAILED, "webhook"),
            change(parent, W, W))
        yes, no = await storage.get_executions(["te_yes", "te_no"])
        assert yes is not None and no is not None
        assert (yes.status, yes.output, yes.error, yes.finished_at, yes.lease_expires_at) == (
            S.COMPLETED, OUTPUT, None, 2.0, None)
        assert (no.status, no.output, no.error, no.finished_at, no.lease_expires_at) == (
            S.FAILED, None, failure, 2.0, None)
        waiting = await get_stored(storage, "te_p")
        assert (waiting.active_children_count, waiting.ready_at) == (0, 2.0)

    async def test_wake_leaves_finished_unknown_and_non_sleeping_executions_alone(self, storage: Storage) -> None:
        await storage.insert_executions([sleeping("te_s", "u"), new("te_plain")])
        plain = await claim_one(storage, 0.0, "te_plain")
        await storage.wake_sleeping_executions([SleepingWakeup("te_s", S.COMPLETED, output=OUTPUT)], 1.0)
        woken = await get(storage, "te_s")
        wakeups = [SleepingWakeup(i, S.FAILED, error=BOOM) for i in ("te_s", "te_plain", "te_x")]
        assert await storage.wake_sleeping_executions(wakeups, 2.0) == []
        assert await storage.get_executions(["te_s", "te_plain"]) == [woken, plain]
        assert await storage.wake_sleeping_executions([], 2.0) == []


class CancelChecks:
    """``cancel_executions``: ends the lease, never touches what already finished."""

    async def test_cancel_ends_unfinished_executions_and_their_leases(self, storage: Storage) -> None:
        await storage.insert_executions([new("te_ready", ready_at=50.0, start_at=50.0), new("te_running")])
        running = await claim_one(storage, 0.0, "te_running")
        changes = await storage.cancel_executions(["te_ready", "te_running"], 2.0)
        assert summarize(changes) == expected(
            change("te_ready", S.READY, S.CANCELLED), change(running, S.RUNNING, S.CANCELLED))
        for record in await storage.get_executions(["te_ready", "te_running"]):
            assert record is not None
            assert (record.status, record.error, record.finished_at, record.ready_at, record.lease_expires_at,
                    record.updated_at) == (S.CANCELLED, CANCELLED_ERROR, 2.0, None, None, 2.0)
        assert await claim(storage, 100.0) == []
        assert await storage.expire_leases(1000.0, 10, 10) == []

    async def test_cancel_leaves_finished_and_unknown_executions_alone(self, storage: Storage) -> None:
        await storage.insert_executions([new("te_1"), new("te_2")])
        claimed = await claim_one(storage, 0.0, "te_1")
        await storage.commit_runs([finish(claimed, S.COMPLETED, 1.0)], 1.0)
        await storage.cancel_executions(["te_2"], 1.0)
        before = await storage.get_executions(["te_1", "te_2"])
        assert await storage.cancel_executions(["te_1", "te_2", "te_x"], 2.0) == []
        assert await storage.get_executions(["te_1", "te_2"]) == before
        assert await storage.cancel_executions([], 2.0) == []


class DeleteChecks:
    """``delete_finished_executions``: retention, whole finished trees only."""

    async def test_delete_removes_whole_finished_trees_only(self, storage: Storage) -> None:
        await storage.insert_executions([new("te_done"), new("te_active"), new("te_late", idempotency_key="k")])
        claimed = {r.execution_id: r for r in await claim(storage, 0.0)}
        done, active = claimed["te_done"], claimed["te_active"]
        done_child = child(done, "te_done_child", now=1.0, make=sleeping, unique_id="u")
        await storage.commit_runs([spawn(done, [done_child], 1.0)], 1.0)
        await storage.wake_sleeping_executions([SleepingWakeup("te_done_child", S.COMPLETED, output=OUTPUT)], 2.0)
        await storage.commit_runs([finish(await claim_one(storage, 2.0, "te_done"), S.COMPLETED, 3.0)], 3.0)
        finished_child, running_child = child(active, "te_finished", now=1.0), child(active, "te_running", now=1.0,
                                                                                      index=1)
        await storage.commit_runs([spawn(active, [finished_child, running_child], 1.0)], 1.0)
        await storage.cancel_executions(["te_finished"], 2.0)
        await storage.cancel_executions(["te_late"], 5.0)

        assert await storage.delete_finished_executions(5.0, 10) == 2  # te_late finished at 5.0, not before
        assert await storage.get_executions(["te_done", "te_done_child"]) == [None, None]
        assert None not in await storage.get_executions(["te_active", "te_finished", "te_running", "te_late"])

        # what the deleted records held is free again
        await storage.insert_executions([sleeping("te_s2", "u", now=6.0)])
        assert await storage.delete_finished_executions(6.0, 10) == 1
        (fresh,) = await storage.insert_executions([new("te_k2", idempotency_key="k", now=7.0)])
        assert fresh.execution_id == "te_k2"
        assert await storage.delete_finished_executions(1e12, 10) == 0  # the rest is active or just made

    async def test_delete_takes_at_most_limit_trees(self, storage: Storage) -> None:
        await storage.insert_executions([new("te_1"), new("te_2"), new("te_3")])
        for now, execution_id in ((3.0, "te_1"), (1.0, "te_2"), (2.0, "te_3")):
            await storage.cancel_executions([execution_id], now)
        assert await storage.delete_finished_executions(10.0, 0) == 0
        assert await storage.delete_finished_executions(10.0, 2) == 2
        assert len(await storage.list_executions()) == 1
        assert await storage.delete_finished_executions(10.0, 2) == 1
        assert await storage.list_executions() == []


class RetryChecks:
    """``retry_executions``: an errored top-level execution runs again, as a new attempt."""

    async def test_retry_makes_an_errored_execution_ready_again_keeping_its_error(self, storage: Storage) -> None:
        await _parent_with_children(storage, count=1)
        await storage.cancel_executions(["te_p"], 2.0)
        cancelled = await get_stored(storage, "te_p")
        changes = await storage.retry_executions(["te_p", "te_p_c0", "te_unknown"], 3.0)
        assert summarize(changes) == expected(change(cancelled, S.CANCELLED, S.READY))
        assert await get(storage, "te_p") == transitions.retry(cancelled, 3.0)
        claimed = await claim_one(storage, 3.0, "te_p")
        assert (claimed.status, claimed.retry_attempts, claimed.error, claimed.children, claimed.finished_at) == (
            S.RUNNING, 1, CANCELLED_ERROR, (), None)
        assert (await get_stored(storage, "te_p_c0")).status is S.CANCELLED  # its earlier children stay

    async def test_retry_leaves_active_completed_and_sleeping_executions_alone(self, storage: Storage) -> None:
        await storage.insert_executions([new("te_1"), new("te_2", status=S.COMPLETED, ready_at=None, finished_at=1.0),
                                         sleeping("te_3", "u", now=0.0)])
        await storage.expire_leases(100.0, 10, 10)  # the sleeping execution times out
        before = [await get(storage, i) for i in ("te_1", "te_2", "te_3")]
        assert before[2] is not None and before[2].status is S.TIMED_OUT
        assert await storage.retry_executions(["te_1", "te_2", "te_3"], 200.0) == []
        assert [await get(storage, i) for i in ("te_1", "te_2", "te_3")] == before


OPERATION_CHECKS: tuple[type, ...] = (
    InsertChecks, LookupChecks, ClaimChecks, CommitChecks, ClosureChecks, CascadeChecks, ExpiryChecks,
    RenewalChecks, ReleaseChecks, WakeChecks, CancelChecks, RetryChecks, DeleteChecks,
)
