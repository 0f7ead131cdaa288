"""The rules of every state transition of the storage contract, written once.

Pure functions: a stored record (and ``now``, passed in) in, the record as the contract says it is
stored after the transition out. None reads a clock, does I/O or changes its argument. Backends
written in Python call them; backends whose operations are SQL statements implement the same
rules in those statements, and the conformance suite checks them against these functions. The
errors the rules store are defined with the contract and importable from here too.

An operation of the contract is made of these steps: it picks the records the operation applies
to (``lease_holds``, ``is_due``, ``lease_is_due``, ``accepts_renewal``, ``accepts_cancel``,
``accepts_wake``, ``accepts_retry``, ``is_deletable_root``), writes each one's next state (``claim``,
``renew``, ``commit``, ``release``, ``expire``, ``cancel``, ``wake``, ``retry``) and, in the same
atomic step, follows a finished record with
the closure of its parent (``parent_to_close``, ``close``) and the cancellation of its
unfinished descendants (``cancels_descendants``, ``cancel_by_cascade``).
"""

from __future__ import annotations

from ..errors import ErrorInfo
from ..status import ERRORED_TASK_EXECUTION_STATUSES
from ..status import TaskExecutionStatus as S
from .contract import CANCELLED_ERROR as CANCELLED_ERROR
from .contract import EXPIRED_ERROR as EXPIRED_ERROR
from .contract import EXPIRED_TOO_OFTEN_ERROR as EXPIRED_TOO_OFTEN_ERROR
from .contract import SLEEPING_TIMED_OUT_ERROR as SLEEPING_TIMED_OUT_ERROR
from .contract import ExecutionRecord, Lease, SleepingWakeup
from .contract import cascade_error as cascade_error

WAITING_STATUSES = frozenset({S.WAITING_FOR_CHILDREN, S.WAITING_FOR_FINALIZE})
"""A parent in these statuses is moved along when its last active child finishes."""


# ---------------------------------------------------------------------------------------- which records


def lease_holds(record: ExecutionRecord | None, lease: Lease) -> bool:
    """A lease holds while the stored token is the lease's and ``lease_expires_at`` is set."""
    return record is not None and record.lease_token == lease.token and record.lease_expires_at is not None


def is_due(record: ExecutionRecord, now: float) -> bool:
    """A record is claimable once its ``ready_at`` is set and not after ``now``."""
    return record.ready_at is not None and record.ready_at <= now


def lease_is_due(record: ExecutionRecord, now: float) -> bool:
    """A lease (or a sleeping execution's deadline) expires once ``lease_expires_at <= now``."""
    return record.lease_expires_at is not None and record.lease_expires_at <= now


def accepts_renewal(record: ExecutionRecord | None, lease: Lease) -> bool:
    """A heartbeat renews a lease that holds, except a sleeping execution's (its deadline)."""
    return lease_holds(record, lease) and record is not None and not record.is_sleeping


def accepts_cancel(record: ExecutionRecord) -> bool:
    """Any unfinished execution can be cancelled (directly or by a cascade); a finished one never."""
    return not record.status.is_finished


def accepts_wake(record: ExecutionRecord) -> bool:
    """Only a sleeping execution that is still ``running`` can be woken."""
    return record.is_sleeping and record.status is S.RUNNING


def accepts_retry(record: ExecutionRecord) -> bool:
    """A top-level execution that finished with an error (failed, timed out, cancelled or finalize
    failed) can be run again; a child (its parent decides), a sleeping execution (nothing of ours
    runs) or one still active or completed never."""
    return (record.parent is None and not record.is_sleeping
            and record.status in ERRORED_TASK_EXECUTION_STATUSES)


def finished_root_at(record: ExecutionRecord) -> float | None:
    """When a finished top-level execution finished; None for any other record.

    Retention deletes whole trees by this time: a finished child of an active tree has none.
    """
    if record.parent is not None or not record.status.is_finished:
        return None
    return record.finished_at


def is_deletable_root(record: ExecutionRecord, finished_before: float) -> bool:
    """A finished top-level execution that finished strictly before ``finished_before``."""
    finished_at = finished_root_at(record)
    return finished_at is not None and finished_at < finished_before


# ---------------------------------------------------------------------------------------- next states


def claim(record: ExecutionRecord, executor_id: str, now: float, lease_duration: float) -> ExecutionRecord:
    """A due record claimed by ``executor_id``: a new lease, for ``lease_duration`` seconds, with
    the next fencing token.

    A ``ready`` record becomes ``running`` with ``started_at = now``; a waiting parent keeps its
    status (and its ``started_at``).
    """
    new = record.copy()
    if record.status is S.READY:
        new.status = S.RUNNING
        new.started_at = now
    new.ready_at = None
    new.executor_id = executor_id
    new.lease_token = record.lease_token + 1
    new.lease_expires_at = now + lease_duration
    new.updated_at = now
    return new


def renew(record: ExecutionRecord, now: float, lease_duration: float) -> ExecutionRecord:
    """A record whose lease a heartbeat renewed (``accepts_renewal``): only the lease's end moves."""
    return record.copy(lease_expires_at=now + lease_duration)


def commit(record: ExecutionRecord, now: float) -> ExecutionRecord:
    """The record a claimer commits (``RunCommit.record``, whose lease holds), as stored.

    Every field as sent, but the lease ends (``lease_expires_at`` None) and ``updated_at = now``;
    ``lease_token`` is the stored one, which a holding lease equals.
    """
    new = record.copy()
    new.lease_expires_at = None
    new.updated_at = now
    return new


def release(record: ExecutionRecord, now: float) -> ExecutionRecord:
    """A claimed record handed back, to be claimed again at once (``ready_at = now``).

    A ``running`` record becomes ``ready`` with ``start_at = now``; a waiting parent keeps its
    status. The lease ends and the record keeps no executor. Nothing is counted.
    """
    new = record.copy()
    if record.status is S.RUNNING:
        new.status = S.READY
        new.start_at = now
    new.ready_at = now
    new.executor_id = None
    new.lease_expires_at = None
    new.updated_at = now
    return new


def expire(record: ExecutionRecord, now: float, max_lease_expirations: int) -> ExecutionRecord:
    """A record whose lease is due (``lease_is_due``), after its lease ended.

    A sleeping execution times out (``SLEEPING_TIMED_OUT_ERROR``, not counted as an expiration).
    Any other counts one more ``lease_expirations``; past ``max_lease_expirations`` it fails with
    ``EXPIRED_TOO_OFTEN_ERROR``; otherwise it is released, and a ``running`` one gets
    ``EXPIRED_ERROR`` (a waiting parent keeps its error). A finished result moves its parent
    along and may cancel its descendants, as any finish does.
    """
    if record.is_sleeping:
        return finish(record, now, S.TIMED_OUT, SLEEPING_TIMED_OUT_ERROR)
    expirations = record.lease_expirations + 1
    if expirations > max_lease_expirations:
        new = finish(record, now, S.FAILED, EXPIRED_TOO_OFTEN_ERROR)
    else:
        new = release(record, now)
        if record.status is S.RUNNING:
            new.error = EXPIRED_ERROR
    new.lease_expirations = expirations
    return new


def cancel(record: ExecutionRecord, now: float) -> ExecutionRecord:
    """An unfinished execution (``accepts_cancel``) cancelled from outside, with ``CANCELLED_ERROR``."""
    return finish(record, now, S.CANCELLED, CANCELLED_ERROR)


def wake(record: ExecutionRecord, wakeup: SleepingWakeup, now: float) -> ExecutionRecord:
    """A sleeping execution (``accepts_wake``) finished from outside with the wake-up's status,
    output and error (each replaces the stored one, None included)."""
    new = finish(record, now, S(wakeup.status), wakeup.error)
    new.output = wakeup.output
    return new


def retry(record: ExecutionRecord, now: float) -> ExecutionRecord:
    """An errored top-level execution (``accepts_retry``) run again from the start, as a new attempt.

    It becomes ``ready`` at ``now`` (``start_at = ready_at = now``) with one more ``retry_attempts``;
    its error is kept (the new run's ``prev_error``) until the new attempt ends. What the last
    attempt built is cleared (output, run output, children, finalize, the waiting times, the
    finish time), as are its executor and lease expirations; its earlier children stay stored.
    """
    new = record.copy()
    new.status = S.READY
    new.start_at = new.ready_at = new.updated_at = now
    new.retry_attempts = record.retry_attempts + 1
    new.lease_expirations = 0
    new.output = new.run_output = new.finalize = None
    new.children = ()
    new.active_children_count = 0
    new.finished_at = new.waiting_for_children_started_at = new.waiting_for_finalize_started_at = None
    new.executor_id = new.lease_expires_at = None
    return new


def finish(record: ExecutionRecord, now: float, status: S, error: ErrorInfo | None) -> ExecutionRecord:
    """``record`` finished in ``status`` with ``error``: ``finished_at = now``, nothing more to
    claim (``ready_at`` None) and its lease ended. Its executor and fencing token are kept."""
    new = record.copy()
    new.status = status
    new.error = error
    new.finished_at = now
    new.ready_at = None
    new.lease_expires_at = None
    new.updated_at = now
    return new


# ---------------------------------------------------------------------------------------- what a finish causes


def parent_to_close(record: ExecutionRecord) -> str | None:
    """The id of the parent that ``record`` moves along (see ``close``): a child, or finalize,
    that finished closes one active child of its parent. None if it has no parent or is active."""
    return None if record.parent is None or not record.status.is_finished else record.parent.execution_id


def close(parent: ExecutionRecord, now: float) -> ExecutionRecord:
    """``parent`` after one of its active children finished.

    ``active_children_count`` drops by one, never below zero; when it reaches zero while the
    parent is ``waiting_for_children`` or ``waiting_for_finalize``, the parent becomes claimable
    (``ready_at = now``) so that the engine processes the children's results. Status and lease
    are kept.
    """
    new = parent.copy()
    if parent.active_children_count == 1 and parent.status in WAITING_STATUSES:
        new.ready_at = now
    new.active_children_count = max(parent.active_children_count - 1, 0)
    new.updated_at = now
    return new


def cancels_descendants(record: ExecutionRecord) -> bool:
    """A record finished in any status but ``completed`` cancels its unfinished descendants."""
    return record.status.is_finished and record.status is not S.COMPLETED


def cancel_by_cascade(descendant: ExecutionRecord, ancestor: ExecutionRecord, now: float) -> ExecutionRecord:
    """An unfinished descendant (``accepts_cancel``) of ``ancestor``, which ended without
    completing: cancelled with ``cascade_error(ancestor)``, its lease ended."""
    return finish(descendant, now, S.CANCELLED, cascade_error(ancestor))
