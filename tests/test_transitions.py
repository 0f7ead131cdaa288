"""The rules of the storage contract's transitions, checked on records alone (no storage)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

import durable_core.storage as storage_package
from durable_core.errors import ErrorInfo
from durable_core.models import ExecutionRef, ParentRef, RetryOptions
from durable_core.status import (
    ACTIVE_TASK_EXECUTION_STATUSES,
    ALL_TASK_EXECUTION_STATUSES,
    ERRORED_TASK_EXECUTION_STATUSES,
    FINISHED_TASK_EXECUTION_STATUSES,
)
from durable_core.status import TaskExecutionStatus as S
from durable_core.storage import contract, transitions
from durable_core.storage.contract import ExecutionRecord, Lease, Payload, SleepingWakeup

W, F = S.WAITING_FOR_CHILDREN, S.WAITING_FOR_FINALIZE
NOW = 100.0
BOOM = ErrorInfo("generic", "boom", is_retryable=True)
OUTPUT = Payload("json", b'"done"')


def record(**fields: Any) -> ExecutionRecord:
    """A ready execution, claimable since 10; ``fields`` override."""
    defaults: dict[str, Any] = dict(
        execution_id="te_1", task_id="task", status=S.READY, input=Payload("json", b"{}"),
        retry=RetryOptions(), timeout=30.0, sleep_before_run=0.0, created_at=10.0, updated_at=10.0,
        start_at=10.0, ready_at=10.0,
    )
    return ExecutionRecord(**{**defaults, **fields})


def leased(**fields: Any) -> ExecutionRecord:
    """A running execution claimed by ``de_a`` with token 3, its lease due at 50."""
    defaults: dict[str, Any] = dict(status=S.RUNNING, started_at=20.0, ready_at=None, executor_id="de_a",
                                    lease_token=3, lease_expires_at=50.0, updated_at=20.0)
    return record(**{**defaults, **fields})


def sleeping(**fields: Any) -> ExecutionRecord:
    """A sleeping execution as inserted: running, never claimed, timing out at 40."""
    defaults: dict[str, Any] = dict(status=S.RUNNING, is_sleeping=True, sleeping_unique_id="u", started_at=10.0,
                                    ready_at=None, lease_expires_at=40.0)
    return record(**{**defaults, **fields})


def waiting(status: S = W, **fields: Any) -> ExecutionRecord:
    """A parent waiting for two children, not claimed."""
    defaults: dict[str, Any] = dict(
        execution_id="te_p", status=status, started_at=10.0, ready_at=None, active_children_count=2,
        children=(ExecutionRef("task", "te_c1"), ExecutionRef("task", "te_c2")), lease_token=1,
        waiting_for_children_started_at=15.0,
    )
    return record(**{**defaults, **fields})


def child_of(parent: ExecutionRecord, **fields: Any) -> ExecutionRecord:
    return record(execution_id="te_c1", parent=ParentRef(parent.task_id, parent.execution_id, 0, False),
                  root=ExecutionRef(parent.task_id, parent.execution_id), **fields)


def changed(before: ExecutionRecord, after: ExecutionRecord) -> dict[str, object]:
    """The fields ``after`` changed, with their new values: everything else was left alone."""
    return {f.name: getattr(after, f.name) for f in dataclasses.fields(ExecutionRecord)
            if getattr(before, f.name) != getattr(after, f.name)}


# ---------------------------------------------------------------------------------------- errors


def test_the_errors_stored_by_the_rules_are_the_contracts() -> None:
    names = ("EXPIRED_ERROR", "EXPIRED_TOO_OFTEN_ERROR", "SLEEPING_TIMED_OUT_ERROR", "CANCELLED_ERROR",
             "cascade_error")
    for name in names:
        assert getattr(contract, name) is getattr(transitions, name) is getattr(storage_package, name), name
    assert transitions.EXPIRED_ERROR.is_retryable and transitions.SLEEPING_TIMED_OUT_ERROR.is_retryable
    assert not transitions.EXPIRED_TOO_OFTEN_ERROR.is_retryable and not transitions.CANCELLED_ERROR.is_retryable
    assert transitions.SLEEPING_TIMED_OUT_ERROR.error_type == "timed_out"
    assert transitions.CANCELLED_ERROR.error_type == "cancelled"


def test_the_cascade_error_names_the_ancestor_and_how_it_ended() -> None:
    ancestor = leased(execution_id="te_p", task_id="parent", status=S.FINALIZE_FAILED)
    expected = ErrorInfo("cancelled", "Parent task execution ended finalize_failed [taskId=parent] "
                         "[executionId=te_p]", is_retryable=False)
    assert transitions.cascade_error(ancestor) == expected


# ---------------------------------------------------------------------------------------- which records


def test_a_lease_holds_while_its_token_is_stored_and_a_lease_is_set() -> None:
    claimed = leased()
    assert transitions.lease_holds(claimed, Lease("te_1", 3))
    assert not transitions.lease_holds(claimed, Lease("te_1", 2))
    assert not transitions.lease_holds(claimed, Lease("te_1", 4))
    assert not transitions.lease_holds(claimed.copy(lease_expires_at=None), Lease("te_1", 3))
    assert not transitions.lease_holds(None, Lease("te_1", 3))


def test_a_record_is_due_from_its_ready_at_on() -> None:
    assert transitions.is_due(record(ready_at=NOW), NOW)
    assert transitions.is_due(record(ready_at=NOW - 1), NOW)
    assert not transitions.is_due(record(ready_at=NOW + 0.5), NOW)
    assert not transitions.is_due(record(ready_at=None), 1e12)


def test_a_lease_is_due_from_its_expiry_on() -> None:
    assert transitions.lease_is_due(leased(lease_expires_at=NOW), NOW)
    assert transitions.lease_is_due(sleeping(lease_expires_at=NOW - 1), NOW)
    assert not transitions.lease_is_due(leased(lease_expires_at=NOW + 0.5), NOW)
    assert not transitions.lease_is_due(leased(lease_expires_at=None), 1e12)


@pytest.mark.parametrize("status", ALL_TASK_EXECUTION_STATUSES)
def test_every_unfinished_execution_and_no_finished_one_accepts_a_cancel(status: S) -> None:
    assert transitions.accepts_cancel(record(status=status)) is (status in ACTIVE_TASK_EXECUTION_STATUSES)


@pytest.mark.parametrize("status", ALL_TASK_EXECUTION_STATUSES)
def test_only_a_running_sleeping_execution_accepts_a_wake(status: S) -> None:
    assert transitions.accepts_wake(sleeping(status=status)) is (status is S.RUNNING)
    assert not transitions.accepts_wake(record(status=status))


@pytest.mark.parametrize("status", ALL_TASK_EXECUTION_STATUSES)
def test_only_an_errored_top_level_execution_that_is_not_sleeping_accepts_a_retry(status: S) -> None:
    top = record(status=status)
    assert transitions.accepts_retry(top) is (status in ERRORED_TASK_EXECUTION_STATUSES)
    assert not transitions.accepts_retry(child_of(top, status=status))
    assert not transitions.accepts_retry(sleeping(status=status))


def test_only_finished_top_level_executions_are_deleted_and_by_when_they_finished() -> None:
    root = record(status=S.COMPLETED, finished_at=50.0, ready_at=None)
    assert transitions.finished_root_at(root) == 50.0
    assert transitions.is_deletable_root(root, 50.5)
    assert not transitions.is_deletable_root(root, 50.0)  # strictly before
    finished_child = child_of(root, status=S.FAILED, finished_at=40.0, ready_at=None)
    assert transitions.finished_root_at(finished_child) is None
    assert not transitions.is_deletable_root(finished_child, 1e12)
    for status in ACTIVE_TASK_EXECUTION_STATUSES:
        assert transitions.finished_root_at(record(status=status)) is None


# ---------------------------------------------------------------------------------------- next states


@pytest.mark.parametrize("transition", [
    lambda r: transitions.claim(r, "de_b", NOW, 5.0), lambda r: transitions.commit(r, NOW),
    lambda r: transitions.release(r, NOW), lambda r: transitions.expire(r, NOW, 0),
    lambda r: transitions.cancel(r, NOW), lambda r: transitions.close(r, NOW),
    lambda r: transitions.wake(r, SleepingWakeup("te_1", S.COMPLETED, output=OUTPUT), NOW),
    lambda r: transitions.cancel_by_cascade(r, r, NOW), lambda r: transitions.retry(r, NOW),
])
def test_a_transition_returns_a_new_record_and_leaves_its_argument_alone(transition: Any) -> None:
    for before in (leased(), sleeping(), waiting()):
        kept = before.copy()
        assert transition(before) is not before
        assert before == kept


def test_claiming_a_ready_record_starts_it_under_a_new_lease() -> None:
    before = record(retry_attempts=2, lease_expirations=1, lease_token=4, error=BOOM)
    after = transitions.claim(before, "de_b", NOW, 5.0)
    assert changed(before, after) == dict(
        status=S.RUNNING, started_at=NOW, ready_at=None, executor_id="de_b", lease_token=5,
        lease_expires_at=NOW + 5.0, updated_at=NOW,
    )


@pytest.mark.parametrize("status", [W, F])
def test_claiming_a_waiting_parent_keeps_its_status_and_start(status: S) -> None:
    before = waiting(status, active_children_count=0, ready_at=NOW - 1, executor_id="de_a")
    after = transitions.claim(before, "de_b", NOW, 10.0)
    assert changed(before, after) == dict(ready_at=None, executor_id="de_b", lease_token=2,
                                          lease_expires_at=NOW + 10.0, updated_at=NOW)


def test_a_heartbeat_moves_only_the_end_of_a_lease_that_holds() -> None:
    before = leased()
    assert transitions.accepts_renewal(before, before.lease)
    assert changed(before, transitions.renew(before, NOW, 10.0)) == dict(lease_expires_at=NOW + 10.0)


@pytest.mark.parametrize("stored", [
    leased(lease_token=4),  # claimed again since: another token
    leased(lease_expires_at=None),  # cancelled, expired or released: the lease ended
    sleeping(lease_token=3),  # a sleeping execution's deadline is not a lease to renew
    None,  # deleted
])
def test_a_heartbeat_never_renews_a_lease_that_ended(stored: ExecutionRecord | None) -> None:
    assert not transitions.accepts_renewal(stored, Lease("te_1", 3))


def test_a_commit_stores_every_field_sent_and_ends_the_lease() -> None:
    claimed = leased()
    sent = claimed.copy(status=S.COMPLETED, output=OUTPUT, finished_at=NOW - 1, retry_attempts=7,
                        executor_id="de_x", created_at=1.0, updated_at=2.0, lease_expires_at=99.0)
    after = transitions.commit(sent, NOW)
    assert changed(sent, after) == dict(lease_expires_at=None, updated_at=NOW)
    assert after.lease_token == claimed.lease_token


def test_a_released_running_execution_is_ready_at_once_and_nothing_is_counted() -> None:
    before = leased(retry_attempts=2, lease_expirations=1, error=BOOM)
    after = transitions.release(before, NOW)
    assert changed(before, after) == dict(status=S.READY, start_at=NOW, ready_at=NOW, executor_id=None,
                                          lease_expires_at=None, updated_at=NOW)


@pytest.mark.parametrize("status", [W, F])
def test_a_released_waiting_parent_keeps_its_status(status: S) -> None:
    before = waiting(status, executor_id="de_a", lease_expires_at=50.0, active_children_count=0)
    after = transitions.release(before, NOW)
    assert changed(before, after) == dict(ready_at=NOW, executor_id=None, lease_expires_at=None, updated_at=NOW)


def test_an_expired_sleeping_execution_times_out_without_counting_an_expiration() -> None:
    before = sleeping(lease_expirations=0, executor_id=None)
    after = transitions.expire(before, NOW, 0)
    assert changed(before, after) == dict(status=S.TIMED_OUT, error=transitions.SLEEPING_TIMED_OUT_ERROR,
                                          finished_at=NOW, lease_expires_at=None, updated_at=NOW)


def test_an_expired_running_execution_is_released_with_the_expired_error() -> None:
    before = leased(lease_expirations=1, error=BOOM)
    after = transitions.expire(before, NOW, 2)  # the second expiration of two allowed
    assert changed(before, after) == dict(
        status=S.READY, error=transitions.EXPIRED_ERROR, lease_expirations=2, start_at=NOW, ready_at=NOW,
        executor_id=None, lease_expires_at=None, updated_at=NOW,
    )


def test_an_expired_waiting_parent_keeps_its_status_and_error() -> None:
    before = waiting(F, executor_id="de_a", lease_expires_at=50.0, active_children_count=0, error=BOOM)
    after = transitions.expire(before, NOW, 10)
    assert changed(before, after) == dict(lease_expirations=1, ready_at=NOW, executor_id=None,
                                          lease_expires_at=None, updated_at=NOW)


@pytest.mark.parametrize("make", [leased, waiting])
def test_an_execution_expiring_too_often_fails(make: Any) -> None:
    before = make(lease_expirations=2, executor_id="de_a", lease_expires_at=50.0, error=BOOM)
    after = transitions.expire(before, NOW, 2)
    assert changed(before, after) == dict(
        status=S.FAILED, error=transitions.EXPIRED_TOO_OFTEN_ERROR, lease_expirations=3, finished_at=NOW,
        lease_expires_at=None, updated_at=NOW,
    )


@pytest.mark.parametrize("status", sorted(ACTIVE_TASK_EXECUTION_STATUSES))
def test_a_cancelled_execution_finishes_with_the_cancelled_error(status: S) -> None:
    before = leased(status=status, ready_at=NOW - 1, output=OUTPUT)
    after = transitions.cancel(before, NOW)
    assert changed(before, after) == dict(status=S.CANCELLED, error=transitions.CANCELLED_ERROR, finished_at=NOW,
                                          ready_at=None, lease_expires_at=None, updated_at=NOW)


def test_a_woken_sleeping_execution_takes_the_wakeups_status_output_and_error() -> None:
    before = sleeping(error=BOOM)
    completed = transitions.wake(before, SleepingWakeup("te_1", S.COMPLETED, output=OUTPUT), NOW)
    assert changed(before, completed) == dict(status=S.COMPLETED, output=OUTPUT, error=None, finished_at=NOW,
                                              lease_expires_at=None, updated_at=NOW)
    declined = ErrorInfo("generic", "declined", is_retryable=False)
    failed = transitions.wake(before.copy(output=OUTPUT), SleepingWakeup("te_1", S.FAILED, error=declined), NOW)
    assert (failed.status, failed.output, failed.error) == (S.FAILED, None, declined)


def test_a_retried_execution_is_a_new_attempt_ready_now_that_keeps_its_error() -> None:
    before = waiting(status=S.FINALIZE_FAILED, error=BOOM, finished_at=60.0, retry_attempts=2, lease_expirations=4,
                     output=OUTPUT, run_output=OUTPUT, finalize=ExecutionRef("fin", "te_f"), active_children_count=1,
                     waiting_for_finalize_started_at=50.0, executor_id="de_a")
    after = transitions.retry(before, NOW)
    assert changed(before, after) == dict(
        status=S.READY, start_at=NOW, ready_at=NOW, updated_at=NOW, retry_attempts=3, lease_expirations=0,
        output=None, run_output=None, finalize=None, children=(), active_children_count=0, finished_at=None,
        waiting_for_children_started_at=None, waiting_for_finalize_started_at=None, executor_id=None,
    )
    assert after.error == BOOM and after.lease_token == before.lease_token


def test_finishing_keeps_the_executor_and_the_token() -> None:
    before = leased()
    after = transitions.finish(before, NOW, S.TIMED_OUT, BOOM)
    assert changed(before, after) == dict(status=S.TIMED_OUT, error=BOOM, finished_at=NOW, lease_expires_at=None,
                                          updated_at=NOW)


# ---------------------------------------------------------------------------------------- what a finish causes


@pytest.mark.parametrize("status", ALL_TASK_EXECUTION_STATUSES)
def test_a_child_moves_its_parent_along_once_it_finished(status: S) -> None:
    parent = waiting()
    expected = "te_p" if status in FINISHED_TASK_EXECUTION_STATUSES else None
    assert transitions.parent_to_close(child_of(parent, status=status)) == expected
    assert transitions.parent_to_close(record(status=status)) is None  # top level: no parent


@pytest.mark.parametrize("status", [W, F])
def test_closing_the_last_active_child_makes_a_waiting_parent_claimable(status: S) -> None:
    two = waiting(status, ready_at=None)
    one = transitions.close(two, NOW)
    assert changed(two, one) == dict(active_children_count=1, updated_at=NOW)
    none = transitions.close(one, NOW + 1)
    assert changed(one, none) == dict(active_children_count=0, ready_at=NOW + 1, updated_at=NOW + 1)


def test_closing_never_goes_below_zero_and_moves_only_a_waiting_parent() -> None:
    empty = waiting(active_children_count=0, ready_at=None)
    assert changed(empty, transitions.close(empty, NOW)) == dict(updated_at=NOW)
    for status in set(ALL_TASK_EXECUTION_STATUSES) - {W, F}:
        parent = waiting(status, active_children_count=1, ready_at=None)
        assert changed(parent, transitions.close(parent, NOW)) == dict(active_children_count=0, updated_at=NOW)


@pytest.mark.parametrize("status", ALL_TASK_EXECUTION_STATUSES)
def test_only_an_execution_that_ended_without_completing_cancels_its_descendants(status: S) -> None:
    ended = status in FINISHED_TASK_EXECUTION_STATUSES and status is not S.COMPLETED
    assert transitions.cancels_descendants(record(status=status)) is ended


def test_a_descendant_cancelled_by_a_cascade_names_its_ancestor() -> None:
    ancestor = waiting(status=S.FAILED, finished_at=NOW)
    before = child_of(ancestor, status=S.RUNNING, ready_at=None, executor_id="de_a", lease_token=1,
                      lease_expires_at=90.0)
    after = transitions.cancel_by_cascade(before, ancestor, NOW)
    assert changed(before, after) == dict(status=S.CANCELLED, error=transitions.cascade_error(ancestor),
                                          finished_at=NOW, lease_expires_at=None, updated_at=NOW)
