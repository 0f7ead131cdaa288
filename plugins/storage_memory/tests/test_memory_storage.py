"""Behaviour of MemoryStorage, operation by operation, with explicit times.

Checks taking the ``storage`` fixture also run on a naive ``SingleOperationStorage`` backend
wrapped in ``LockedStorage``, which tests those helpers; the rest need closure and cascades.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import Any, cast

import pytest
import trio
import trio.testing

from durable_conformance.records import BOOM, INPUT, LEASE_DURATION, OUTPUT, change, child, claim, claim_one, executor, get
from durable_conformance.records import new
from durable_core import open_storage
from durable_core.models import ExecutionRef, ParentRef, RetryOptions
from durable_core.status import TaskExecutionStatus as S
from durable_core.storage import CANCELLED_ERROR, EXPIRED_ERROR, EXPIRED_TOO_OFTEN_ERROR, SLEEPING_TIMED_OUT_ERROR
from durable_core.storage import STORAGE_API, STORAGE_METHODS, Capabilities, DuplicateSleepingTaskUniqueIdError
from durable_core.storage import ExecutionRecord, Lease, LockedStorage, Payload, RunCommit, SleepingWakeup
from durable_core.storage import Storage, StorageError, cascade_error
from durable_storage_memory import MemoryStorage
from durable_storage_memory.plugin import durable_register_storages


# Builders simpler than the conformance suite's namesakes: a sleeping execution of task ``task``, a
# spawn that sets no waiting time, a finish that adds no output or error.


def sleeping(execution_id: str, unique_id: str, *, now: float = 0.0, **fields: Any) -> ExecutionRecord:
    """A sleeping execution as the engine inserts it: running, never claimed, timing out."""
    return new(
        execution_id, now=now, status=S.RUNNING, is_sleeping=True, sleeping_unique_id=unique_id,
        started_at=now, ready_at=None, lease_expires_at=now + 10.0, **fields,
    )


def spawn(parent: ExecutionRecord, children: list[ExecutionRecord],
          status: S = S.WAITING_FOR_CHILDREN) -> RunCommit:
    """The commit of a claimed ``parent`` that waits for ``children``."""
    refs = tuple(ExecutionRef(c.task_id, c.execution_id) for c in children)
    return RunCommit(parent.copy(status=status, ready_at=None, active_children_count=len(children),
                                 children=refs), children)


def finish(claimed: ExecutionRecord, status: S, now: float, **fields: Any) -> RunCommit:
    return RunCommit(claimed.copy(status=status, finished_at=now, ready_at=None, **fields))


# ---------------------------------------------------------------------- every storage


async def test_inserted_record_round_trips_every_field(storage: Storage) -> None:
    record = ExecutionRecord(
        execution_id="te_1", task_id="task", status=S.WAITING_FOR_FINALIZE, input=INPUT,
        retry=RetryOptions(max_attempts=3, base_delay=1.0, delay_multiplier=2.0, max_delay=8.0),
        timeout=7.5, sleep_before_run=1.5, created_at=1.0, updated_at=2.0, start_at=3.0,
        root=ExecutionRef("root", "te_root"), parent=ParentRef("root", "te_root", 4, True),
        is_sleeping=True, sleeping_unique_id="unique", idempotency_key="key", output=OUTPUT,
        run_output=Payload("cbor", b"\x01"), error=BOOM, retry_attempts=2, lease_expirations=1,
        children=(ExecutionRef("c", "te_c1"), ExecutionRef("c", "te_c2")),
        finalize=ExecutionRef("f", "te_f"), active_children_count=1, started_at=4.0, finished_at=8.0,
        waiting_for_children_started_at=5.0, waiting_for_finalize_started_at=6.0, ready_at=9.0,
        executor_id="de_x", lease_token=3, lease_expires_at=20.0,
    )
    assert await storage.insert_executions([record]) == [record]
    assert await storage.get_executions(["te_1", "te_unknown"]) == [record, None]


async def test_idempotency_key_returns_the_stored_execution_and_inserts_nothing(storage: Storage) -> None:
    await storage.insert_executions([new("te_1", idempotency_key="k")])
    stored = await storage.insert_executions(
        [new("te_2", idempotency_key="k"), new("te_3", task_id="other", idempotency_key="k"),
         new("te_4", idempotency_key="j"), new("te_5", idempotency_key="j")]
    )
    assert [r.execution_id for r in stored] == ["te_1", "te_3", "te_4", "te_4"]
    assert await storage.get_executions(["te_2", "te_5"]) == [None, None]


async def test_duplicate_sleeping_unique_id_raises_and_inserts_nothing(storage: Storage) -> None:
    await storage.insert_executions([sleeping("te_1", "u")])
    with pytest.raises(DuplicateSleepingTaskUniqueIdError, match="'u'"):
        await storage.insert_executions([new("te_2"), sleeping("te_3", "u")])
    with pytest.raises(DuplicateSleepingTaskUniqueIdError, match="'v'"):
        await storage.insert_executions([sleeping("te_4", "v"), sleeping("te_5", "v")])
    assert await storage.get_executions(["te_2", "te_3", "te_4", "te_5"]) == [None] * 4


async def test_existing_execution_id_raises_and_inserts_nothing(storage: Storage) -> None:
    await storage.insert_executions([new("te_1")])
    with pytest.raises(StorageError, match="te_1 already exists"):
        await storage.insert_executions([new("te_2"), new("te_1", task_id="other")])
    assert await get(storage, "te_2") is None
    assert (await get(storage, "te_1")).task_id == "task"


async def test_sleeping_executions_are_found_by_unique_id(storage: Storage) -> None:
    record = sleeping("te_1", "u")
    await storage.insert_executions([record, new("te_2")])
    assert await storage.get_executions_by_sleeping_unique_id(["u", "te_2", "nope"]) == [record, None, None]


async def test_claim_takes_the_earliest_ready_first_up_to_the_limit(storage: Storage) -> None:
    await storage.insert_executions(
        [new("te_a", ready_at=3.0), new("te_b", ready_at=1.0), new("te_c", ready_at=2.0),
         new("te_d", ready_at=5.0), sleeping("te_s", "u")]
    )
    claimed = await storage.claim_executions("de_1", 3.0, 2, LEASE_DURATION)
    assert [r.execution_id for r in claimed] == ["te_b", "te_c"]
    assert claimed[0] == new("te_b", ready_at=None).copy(
        status=S.RUNNING, started_at=3.0, executor_id="de_1", lease_token=1,
        lease_expires_at=3.0 + LEASE_DURATION, updated_at=3.0,
    )
    assert await get(storage, "te_b") == claimed[0]
    assert [r.execution_id for r in await claim(storage, 3.0)] == ["te_a"]  # ready_at == now
    assert await claim(storage, 4.9) == []
    assert [r.execution_id for r in await claim(storage, 5.0)] == ["te_d"]


async def test_concurrent_claimers_never_claim_the_same_execution(storage: Storage) -> None:
    ids = [f"te_{i}" for i in range(60)]
    await storage.insert_executions([new(i) for i in ids])
    claimed: list[str] = []

    async def claimer(executor_id: str) -> None:
        while batch := await storage.claim_executions(executor_id, 0.0, 3, LEASE_DURATION):
            claimed.extend(r.execution_id for r in batch)

    async with trio.open_nursery() as nursery:
        for n in range(5):
            nursery.start_soon(claimer, f"de_{n}")
    assert sorted(claimed) == sorted(ids)


async def test_commit_stores_the_record_and_ends_the_lease(storage: Storage) -> None:
    await storage.insert_executions([new("te_1")])
    claimed = await claim_one(storage, 1.0, "te_1")
    commit = finish(claimed, S.COMPLETED, 2.0, output=OUTPUT)
    assert await storage.commit_runs([commit], 2.0) == [change(claimed, S.RUNNING, S.COMPLETED)]
    stored = commit.record.copy(lease_expires_at=None, updated_at=2.0)
    assert await get(storage, "te_1") == stored
    assert await storage.find_revoked_leases([claimed.lease]) == ["te_1"]
    assert await storage.commit_runs([finish(claimed, S.FAILED, 3.0, error=BOOM)], 3.0) == []
    assert await get(storage, "te_1") == stored


async def test_commit_with_the_token_of_an_older_claim_is_ignored(storage: Storage) -> None:
    await storage.insert_executions([new("te_1")])
    old = await claim_one(storage, 1.0, "te_1")
    await storage.release_leases([old.lease], 2.0)
    current = await storage.claim_executions("de_b", 2.0, 1, LEASE_DURATION)
    assert [r.lease for r in current] == [Lease("te_1", 2)]
    assert await storage.find_revoked_leases([old.lease, current[0].lease, Lease("te_x", 1)]) == ["te_1", "te_x"]
    assert await storage.commit_runs([finish(old, S.COMPLETED, 3.0, output=OUTPUT)], 3.0) == []
    assert await get(storage, "te_1") == current[0]
    assert await storage.commit_runs([finish(current[0], S.COMPLETED, 3.0)], 3.0) != []


async def test_commit_after_cancel_is_ignored(storage: Storage) -> None:
    await storage.insert_executions([new("te_1")])
    claimed = await claim_one(storage, 1.0, "te_1")
    assert await storage.cancel_executions(["te_1", "te_unknown"], 2.0) == [change(claimed, S.RUNNING, S.CANCELLED)]
    cancelled = claimed.copy(status=S.CANCELLED, error=CANCELLED_ERROR, finished_at=2.0, updated_at=2.0,
                             lease_expires_at=None)
    assert await get(storage, "te_1") == cancelled
    assert await storage.find_revoked_leases([claimed.lease]) == ["te_1"]
    assert await storage.commit_runs([finish(claimed, S.COMPLETED, 3.0, output=OUTPUT)], 3.0) == []
    assert await storage.cancel_executions(["te_1"], 4.0) == []
    assert await get(storage, "te_1") == cancelled


async def test_release_hands_a_running_execution_back_at_once(storage: Storage) -> None:
    await storage.insert_executions([new("te_1", retry_attempts=2)])
    claimed = await claim_one(storage, 1.0, "te_1")
    assert await storage.release_leases([claimed.lease, Lease("te_1", 7)], 2.0) == [
        change(claimed, S.RUNNING, S.READY)
    ]
    assert await get(storage, "te_1") == claimed.copy(
        status=S.READY, ready_at=2.0, start_at=2.0, executor_id=None, lease_expires_at=None, updated_at=2.0
    )
    assert await storage.release_leases([claimed.lease], 3.0) == []
    again = await claim_one(storage, 2.0, "te_1")
    assert (again.lease_token, again.retry_attempts, again.lease_expirations) == (2, 2, 0)


async def test_wake_finishes_only_a_running_sleeping_execution(storage: Storage) -> None:
    done, failed = sleeping("te_1", "u1"), sleeping("te_2", "u2")
    await storage.insert_executions([done, failed, new("te_3")])
    changes = await storage.wake_sleeping_executions(
        [SleepingWakeup("te_1", S.COMPLETED, output=OUTPUT), SleepingWakeup("te_2", S.FAILED, error=BOOM),
         SleepingWakeup("te_3", S.COMPLETED), SleepingWakeup("te_unknown", S.COMPLETED)],
        3.0,
    )
    assert changes == [change(done, S.RUNNING, S.COMPLETED), change(failed, S.RUNNING, S.FAILED)]
    finished = dict(finished_at=3.0, updated_at=3.0, lease_expires_at=None)
    assert await get(storage, "te_1") == done.copy(status=S.COMPLETED, output=OUTPUT, **finished)
    assert await get(storage, "te_2") == failed.copy(status=S.FAILED, error=BOOM, **finished)
    assert (await get(storage, "te_3")).status is S.READY
    assert await storage.wake_sleeping_executions([SleepingWakeup("te_1", S.FAILED, error=BOOM)], 4.0) == []


async def test_list_filters_and_puts_the_newest_first(storage: Storage) -> None:
    await storage.insert_executions(
        [new("te_a", created_at=1.0), new("te_b", created_at=3.0, task_id="other"), new("te_c", created_at=2.0)]
    )
    await storage.cancel_executions(["te_a"], 4.0)

    async def ids(**filters: Any) -> list[str]:
        return [r.execution_id for r in await storage.list_executions(**filters)]

    assert await ids() == ["te_b", "te_c", "te_a"]
    assert await ids(statuses=[S.READY]) == ["te_b", "te_c"]
    assert await ids(task_id="task", limit=1) == ["te_c"]
    assert await ids(statuses=[S.CANCELLED, S.RUNNING], task_id="task") == ["te_a"]
    assert await ids(statuses=[S.CANCELLED], task_id="other") == []


NOT_IN_DICT_STORAGE = ("renew_leases", "list_executors", "expire_leases", "delete_finished_executions")
"""The operations the naive ``DictStorage`` (in ``LockedStorage``) leaves out."""


def calls(storage: Storage) -> dict[str, Callable[[], Awaitable[object]]]:
    """One harmless call of each contract operation, by name."""
    return {
        "insert_executions": lambda: storage.insert_executions([new("te_1")]),
        "get_executions": lambda: storage.get_executions([]),
        "get_executions_by_sleeping_unique_id": lambda: storage.get_executions_by_sleeping_unique_id([]),
        "list_executions": lambda: storage.list_executions(),
        "claim_executions": lambda: storage.claim_executions("de_a", 0.0, 10, LEASE_DURATION),
        "commit_runs": lambda: storage.commit_runs([], 1.0),
        "release_leases": lambda: storage.release_leases([], 1.0),
        "find_revoked_leases": lambda: storage.find_revoked_leases([Lease("te_1", 1)]),
        "renew_leases": lambda: storage.renew_leases(executor(), [Lease("te_1", 1)], 1.0, LEASE_DURATION),
        "list_executors": lambda: storage.list_executors(0.0),
        "expire_leases": lambda: storage.expire_leases(0.0, 10, 10),
        "cancel_executions": lambda: storage.cancel_executions([], 1.0),
        "wake_sleeping_executions": lambda: storage.wake_sleeping_executions([], 1.0),
        "retry_executions": lambda: storage.retry_executions([], 1.0),
        "delete_finished_executions": lambda: storage.delete_finished_executions(0.0, 10),
        "aclose": storage.aclose,
    }


async def test_every_operation_is_a_checkpoint(storage: Storage) -> None:
    for name, call in calls(storage).items():
        if isinstance(storage, MemoryStorage) or name not in NOT_IN_DICT_STORAGE:
            with trio.testing.assert_checkpoints():
                await call()


async def test_a_call_cancelled_before_it_runs_does_nothing(storage: Storage) -> None:
    await storage.insert_executions([new("te_1")])
    with trio.CancelScope() as scope:
        scope.cancel()
        await storage.insert_executions([new("te_2")])
    with trio.CancelScope() as scope:
        scope.cancel()
        await storage.claim_executions("de_a", 0.0, 10, LEASE_DURATION)
    assert await get(storage, "te_2") is None
    assert (await get(storage, "te_1")).status is S.READY


# ---------------------------------------------------------------------- closure and cascades


async def test_finishing_the_last_child_makes_its_parent_claimable(memory: MemoryStorage) -> None:
    await memory.insert_executions([new("te_p")])
    parent = await claim_one(memory, 0.0, "te_p")
    first, second = child(parent, "te_c1", now=1.0), child(parent, "te_c2", now=1.0, index=1)
    assert await memory.commit_runs([spawn(parent, [first, second])], 1.0) == [
        change(parent, S.RUNNING, S.WAITING_FOR_CHILDREN), change(first, None, S.READY), change(second, None, S.READY)
    ]
    claimed = await claim(memory, 1.0)
    assert [r.execution_id for r in claimed] == ["te_c1", "te_c2"]

    assert await memory.commit_runs([finish(claimed[0], S.COMPLETED, 2.0)], 2.0) == [
        change(first, S.RUNNING, S.COMPLETED), change(parent, S.WAITING_FOR_CHILDREN, S.WAITING_FOR_CHILDREN)
    ]
    waiting = await get(memory, "te_p")
    assert (waiting.active_children_count, waiting.ready_at, waiting.updated_at) == (1, None, 2.0)
    assert await claim(memory, 2.0) == []

    await memory.commit_runs([finish(claimed[1], S.FAILED, 3.0, error=BOOM)], 3.0)
    waiting = await get(memory, "te_p")
    assert (waiting.active_children_count, waiting.ready_at) == (0, 3.0)
    (again,) = await claim(memory, 3.0)
    assert (again.execution_id, again.status, again.lease_token) == ("te_p", S.WAITING_FOR_CHILDREN, 2)


async def test_finishing_the_finalize_child_makes_its_parent_claimable(memory: MemoryStorage) -> None:
    await memory.insert_executions([new("te_p")])
    parent = await claim_one(memory, 0.0, "te_p")
    finalize = child(parent, "te_f", now=1.0, is_finalize=True)
    await memory.commit_runs([spawn(parent, [finalize], S.WAITING_FOR_FINALIZE)], 1.0)
    claimed = await claim_one(memory, 1.0, "te_f")
    await memory.commit_runs([finish(claimed, S.COMPLETED, 2.0, output=OUTPUT)], 2.0)
    (again,) = await claim(memory, 2.0)
    assert (again.execution_id, again.status) == ("te_p", S.WAITING_FOR_FINALIZE)


async def test_cancelling_a_root_cancels_every_unfinished_descendant(memory: MemoryStorage) -> None:
    await memory.insert_executions([new("te_r")])
    root = await claim_one(memory, 0.0, "te_r")
    middle, done = child(root, "te_m", now=1.0), child(root, "te_d", now=1.0, index=1)
    await memory.commit_runs([spawn(root, [middle, done])], 1.0)
    middle, done = await claim(memory, 1.0)
    await memory.commit_runs([finish(done, S.COMPLETED, 2.0)], 2.0)
    grandchild, asleep = child(middle, "te_g", now=2.0), child(middle, "te_s", now=2.0, index=1, make=sleeping,
                                                                unique_id="u")
    await memory.commit_runs([spawn(middle, [grandchild, asleep])], 2.0)
    grandchild = await claim_one(memory, 2.0, "te_g")

    changes = await memory.cancel_executions(["te_r"], 5.0)

    assert sorted(changes, key=lambda c: c.execution_id) == [
        change(grandchild, S.RUNNING, S.CANCELLED), change(middle, S.WAITING_FOR_CHILDREN, S.CANCELLED),
        change(root, S.WAITING_FOR_CHILDREN, S.CANCELLED), change(asleep, S.RUNNING, S.CANCELLED),
    ]
    cancelled_root = await get(memory, "te_r")
    assert cancelled_root.error == CANCELLED_ERROR
    for execution_id in ("te_m", "te_g", "te_s"):
        record = await get(memory, execution_id)
        assert (record.status, record.error, record.finished_at, record.lease_expires_at) == (
            S.CANCELLED, cascade_error(cancelled_root), 5.0, None
        )
    assert (await get(memory, "te_d")).status is S.COMPLETED
    assert await memory.find_revoked_leases([grandchild.lease]) == ["te_g"]
    assert await memory.commit_runs([finish(grandchild, S.COMPLETED, 6.0)], 6.0) == []
    assert await memory.expire_leases(1000.0, 10, 100) == []
    assert await claim(memory, 1000.0) == []


async def test_a_parent_ending_in_failure_cancels_its_unfinished_children(memory: MemoryStorage) -> None:
    parent = new("te_p", status=S.RUNNING, ready_at=None, lease_token=1, lease_expires_at=50.0)
    running = child(parent, "te_c", now=0.0, status=S.RUNNING, ready_at=None, lease_token=1, lease_expires_at=50.0)
    await memory.insert_executions([parent, running, child(parent, "te_q", now=0.0, index=1)])
    changes = await memory.commit_runs([finish(parent, S.FAILED, 3.0, error=BOOM)], 3.0)
    assert {c.execution_id for c in changes} == {"te_p", "te_c", "te_q"}
    failed = await get(memory, "te_p")
    assert [(r.status, r.error) for r in await memory.get_executions(["te_c", "te_q"])] == [
        (S.CANCELLED, cascade_error(failed))
    ] * 2
    assert "ended failed" in cascade_error(failed).message
    assert await memory.find_revoked_leases([running.lease]) == ["te_c"]


async def test_a_failing_commit_batch_applies_nothing(memory: MemoryStorage) -> None:
    await memory.insert_executions([new("te_a"), new("te_b"), sleeping("te_s", "u")])
    a, b = await claim(memory, 0.0)
    duplicate = child(b, "te_new", now=1.0, make=sleeping, unique_id="u")
    with pytest.raises(DuplicateSleepingTaskUniqueIdError):
        await memory.commit_runs([finish(a, S.COMPLETED, 1.0), spawn(b, [duplicate])], 1.0)
    assert await memory.get_executions(["te_a", "te_b"]) == [a, b]
    assert await get(memory, "te_new") is None
    stale = spawn(b.copy(lease_token=0), [duplicate])
    assert await memory.commit_runs([stale], 1.0) == []  # a commit whose lease ended inserts nothing


# ---------------------------------------------------------------------- expiry


async def test_an_expired_running_execution_is_handed_back(memory: MemoryStorage) -> None:
    await memory.insert_executions([new("te_1")])
    claimed = await claim_one(memory, 0.0, "te_1")  # lease until 0 + 15
    assert await memory.expire_leases(14.9, 10, 10) == []
    assert await memory.expire_leases(15.0, 1, 10) == [change(claimed, S.RUNNING, S.READY)]  # 1 is allowed
    assert await get(memory, "te_1") == claimed.copy(
        status=S.READY, error=EXPIRED_ERROR, ready_at=15.0, start_at=15.0, executor_id=None,
        lease_expires_at=None, lease_expirations=1, updated_at=15.0,
    )
    assert await memory.find_revoked_leases([claimed.lease]) == ["te_1"]
    again = await claim_one(memory, 15.0, "te_1")
    assert await memory.commit_runs([finish(claimed, S.COMPLETED, 16.0)], 16.0) == []
    assert await get(memory, "te_1") == again


async def test_an_execution_expiring_too_often_fails_and_moves_its_parent_along(memory: MemoryStorage) -> None:
    await memory.insert_executions([new("te_p")])
    parent = await claim_one(memory, 0.0, "te_p")
    await memory.commit_runs([spawn(parent, [child(parent, "te_c", now=1.0, lease_expirations=2)])], 1.0)
    claimed = await claim_one(memory, 1.0, "te_c")
    changes = await memory.expire_leases(100.0, 2, 10)
    waiting = S.WAITING_FOR_CHILDREN
    assert changes == [change(claimed, S.RUNNING, S.FAILED), change(parent, waiting, waiting)]
    failed = await get(memory, "te_c")
    assert (failed.error, failed.lease_expirations, failed.finished_at, failed.ready_at) == (
        EXPIRED_TOO_OFTEN_ERROR, 3, 100.0, None
    )
    assert (await get(memory, "te_p")).ready_at == 100.0


async def test_an_expired_sleeping_execution_times_out(memory: MemoryStorage) -> None:
    await memory.insert_executions([new("te_p")])
    parent = await claim_one(memory, 0.0, "te_p")
    await memory.commit_runs([spawn(parent, [child(parent, "te_s", now=1.0, make=sleeping, unique_id="u")])], 1.0)
    assert await memory.expire_leases(10.9, 0, 10) == []
    changes = await memory.expire_leases(11.0, 0, 10)
    assert [c.status for c in changes] == [S.TIMED_OUT, S.WAITING_FOR_CHILDREN]
    timed_out = await get(memory, "te_s")
    assert (timed_out.error, timed_out.lease_expirations, timed_out.finished_at) == (SLEEPING_TIMED_OUT_ERROR, 0, 11.0)
    assert [r.execution_id for r in await claim(memory, 11.0)] == ["te_p"]


async def test_a_waiting_parent_whose_lease_ends_is_claimable_again(memory: MemoryStorage) -> None:
    await memory.insert_executions([new("te_p")])
    parent = await claim_one(memory, 0.0, "te_p")
    await memory.commit_runs([spawn(parent, [child(parent, "te_c", now=1.0)])], 1.0)
    await memory.commit_runs([finish(await claim_one(memory, 1.0, "te_c"), S.COMPLETED, 2.0)], 2.0)
    waiting = await claim_one(memory, 2.0, "te_p")

    assert await memory.release_leases([waiting.lease], 3.0) == [
        change(waiting, S.WAITING_FOR_CHILDREN, S.WAITING_FOR_CHILDREN)
    ]
    handed_back = dict(executor_id=None, lease_expires_at=None)
    assert await get(memory, "te_p") == waiting.copy(ready_at=3.0, updated_at=3.0, **handed_back)

    waiting = await claim_one(memory, 3.0, "te_p")
    assert await memory.expire_leases(100.0, 10, 10) == [change(waiting, waiting.status, waiting.status)]
    assert await get(memory, "te_p") == waiting.copy(ready_at=100.0, updated_at=100.0, lease_expirations=1,
                                                     **handed_back)


async def test_expiry_ends_the_earliest_leases_first_up_to_the_limit(memory: MemoryStorage) -> None:
    await memory.insert_executions([new("te_a", now=3.0), new("te_b", now=1.0), new("te_c", now=2.0)])
    for now, execution_id in [(1.0, "te_b"), (2.0, "te_c"), (3.0, "te_a")]:  # leases end in this order
        await claim_one(memory, now, execution_id)
    assert [c.execution_id for c in await memory.expire_leases(100.0, 10, 2)] == ["te_b", "te_c"]
    assert [c.execution_id for c in await memory.expire_leases(100.0, 10, 2)] == ["te_a"]


# ---------------------------------------------------------------------- deletion


async def test_delete_removes_whole_finished_trees_only(memory: MemoryStorage) -> None:
    await memory.insert_executions([new("te_done"), new("te_active"), new("te_late", idempotency_key="k")])
    done, active, _ = await claim(memory, 0.0)
    await memory.commit_runs([spawn(done, [child(done, "te_done_child", now=1.0, make=sleeping, unique_id="u")])], 1.0)
    await memory.wake_sleeping_executions([SleepingWakeup("te_done_child", S.COMPLETED, output=OUTPUT)], 2.0)
    await memory.commit_runs([finish(await claim_one(memory, 2.0, "te_done"), S.COMPLETED, 3.0)], 3.0)
    finished_child, running_child = child(active, "te_finished", now=1.0), child(active, "te_running", now=1.0)
    await memory.commit_runs([spawn(active, [finished_child, running_child])], 1.0)
    await memory.cancel_executions(["te_finished"], 2.0)
    await memory.cancel_executions(["te_late"], 5.0)

    assert await memory.delete_finished_executions(5.0, 10) == 2  # te_late finished at 5.0, not before
    assert await memory.get_executions(["te_done", "te_done_child"]) == [None, None]
    assert None not in await memory.get_executions(["te_active", "te_finished", "te_running", "te_late"])

    # what the deleted records held is free again
    await memory.insert_executions([sleeping("te_s2", "u")])
    assert await memory.delete_finished_executions(6.0, 10) == 1
    assert [r.execution_id for r in await memory.insert_executions([new("te_k2", idempotency_key="k")])] == ["te_k2"]


async def test_delete_takes_the_earliest_finished_trees_first_up_to_the_limit(memory: MemoryStorage) -> None:
    await memory.insert_executions([new("te_1"), new("te_2"), new("te_3")])
    for now, execution_id in ((3.0, "te_1"), (1.0, "te_2"), (2.0, "te_3")):
        await memory.cancel_executions([execution_id], now)
    assert await memory.delete_finished_executions(10.0, 2) == 2
    assert [r.execution_id for r in await memory.list_executions()] == ["te_1"]


# ---------------------------------------------------------------------- sharing, closing, plugin


def test_executors_in_several_threads_share_one_storage(memory: MemoryStorage) -> None:
    ids = [f"te_{i}" for i in range(3000)]
    trio.run(memory.insert_executions, [new(i) for i in ids])
    claimed: dict[str, list[str]] = {}

    async def executor(executor_id: str) -> None:
        mine = claimed[executor_id] = []
        while batch := await memory.claim_executions(executor_id, 0.0, 7, LEASE_DURATION):
            mine.extend(r.execution_id for r in batch)
            assert await memory.commit_runs([finish(r, S.COMPLETED, 1.0) for r in batch], 1.0) != []

    threads = [threading.Thread(target=trio.run, args=(executor, f"de_{n}")) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(i for mine in claimed.values() for i in mine) == sorted(ids)
    finished = trio.run(lambda: memory.list_executions(statuses=[S.COMPLETED], limit=10_000))
    assert len(finished) == len(ids)


async def test_a_closed_storage_refuses_every_call(memory: MemoryStorage) -> None:
    await memory.aclose()
    assert set(calls(memory)) == {*STORAGE_METHODS, "aclose"}
    for name, call in calls(memory).items():
        if name != "aclose":
            with pytest.raises(StorageError, match="memory storage is closed"):
                await call()
    await memory.aclose()  # closing again is harmless


async def test_memory_is_installed_as_the_plugin_named_memory() -> None:
    registered: dict[str, Any] = {}
    durable_register_storages(register=lambda name, factory, options: registered.__setitem__(name, factory))
    assert registered == {"memory": MemoryStorage}
    async with open_storage("memory") as storage:
        assert isinstance(storage, MemoryStorage)
        assert isinstance(storage, Storage)
        assert (storage.storage_api, storage.capabilities) == (STORAGE_API, Capabilities(persistent=False, routing=True, concurrency_limits=True, rate_limits=True))
    with pytest.raises(StorageError, match="memory storage is closed"):
        await storage.get_executions([])


# ---------------------------------------------------------------------- the helpers themselves


async def test_a_naive_backend_double_claims_without_locked_storage(naive: Storage) -> None:
    """What LockedStorage prevents (the shared checks above pass on the same backend locked)."""
    await naive.insert_executions([new("te_1")])
    claims: list[list[ExecutionRecord]] = []

    async def claimer() -> None:
        claims.append(await naive.claim_executions("de_a", 0.0, 1, LEASE_DURATION))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(claimer)
        nursery.start_soon(claimer)
    assert [len(c) for c in claims] == [1, 1]


async def test_locked_storage_finishes_what_it_started_and_skips_what_waited() -> None:
    class Gated:
        storage_api, capabilities = STORAGE_API, Capabilities()

        def __init__(self) -> None:
            self.entered, self.proceed = trio.Event(), trio.Event()
            self.done: list[list[str]] = []

        async def get_executions(self, execution_ids: list[str]) -> list[None]:
            self.entered.set()
            await self.proceed.wait()
            self.done.append(execution_ids)
            return [None] * len(execution_ids)

    backend = Gated()
    storage = LockedStorage(cast(Storage, backend))  # a fake of the one operation called
    started, waiting = trio.CancelScope(), trio.CancelScope()

    async def call(scope: trio.CancelScope, execution_id: str) -> None:
        with scope:
            await storage.get_executions([execution_id])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, started, "te_started")
        await backend.entered.wait()
        nursery.start_soon(call, waiting, "te_waiting")
        await trio.testing.wait_all_tasks_blocked()
        started.cancel()
        waiting.cancel()
        backend.proceed.set()
    assert backend.done == [["te_started"]]
