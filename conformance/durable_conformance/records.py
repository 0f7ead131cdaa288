"""Builders for records and commits as the engine makes them, and small storage helpers.

The checks use them; a backend author may use them in tests of their own. Every time is an
explicit float: a storage never reads the clock, so no check sleeps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from durable_core.errors import ErrorInfo
from durable_core.models import ExecutionRef, ParentRef, RetryOptions
from durable_core.status import TaskExecutionStatus as S
from durable_core.storage import ExecutionRecord, ExecutorInfo, Payload, RunCommit, StatusChange, Storage

INPUT = Payload("json", b'{"n": 1}')
OUTPUT = Payload("json", b'"done"')
RUN_OUTPUT = Payload("cbor", b"\x82\x01\x02")
BOOM = ErrorInfo("generic", "boom", is_retryable=False)
LEASE_DURATION = 15.0
"""The ``lease_duration`` the checks claim with."""
DEFERRABLE = ("retry", "sleep_before_run", "timeout")
"""The options an enqueuer without the task's definition may leave to the executor
(``ExecutionRecord.deferred_options``)."""


def executor(executor_id: str = "de_a", now: float = 0.0, running: int = 0) -> ExecutorInfo:
    """An executor as its heartbeat at ``now`` describes it."""
    return ExecutorInfo(executor_id, "host", 1234, 0.0, now, running)


def new(execution_id: str, *, now: float = 0.0, **fields: Any) -> ExecutionRecord:
    """A ``ready`` execution of task ``task`` as ``enqueue_task`` stores it, claimable from ``now``."""
    defaults: dict[str, Any] = dict(
        task_id="task", status=S.READY, input=INPUT, retry=RetryOptions(), timeout=10.0,
        sleep_before_run=0.0, created_at=now, updated_at=now, start_at=now, ready_at=now,
    )
    return ExecutionRecord(execution_id=execution_id, **{**defaults, **fields})


def sleeping(execution_id: str, unique_id: str, *, now: float = 0.0, timeout: float = 10.0,
             **fields: Any) -> ExecutionRecord:
    """A sleeping execution as the engine inserts it: running, never claimed, timing out."""
    defaults: dict[str, Any] = dict(
        task_id="webhook", status=S.RUNNING, is_sleeping=True, sleeping_unique_id=unique_id,
        started_at=now, ready_at=None, lease_expires_at=now + timeout, timeout=timeout,
    )
    return new(execution_id, now=now, **{**defaults, **fields})


def child(parent: ExecutionRecord, execution_id: str, *, now: float, index: int = 0,
          is_finalize: bool = False, make: Callable[..., ExecutionRecord] = new, **fields: Any) -> ExecutionRecord:
    """A child (or the finalize) of ``parent``, made with ``make`` (``new`` or ``sleeping``)."""
    return make(
        execution_id, now=now, parent=ParentRef(parent.task_id, parent.execution_id, index, is_finalize),
        root=parent.root or ExecutionRef(parent.task_id, parent.execution_id), **fields,
    )


def spawn(parent: ExecutionRecord, children: Sequence[ExecutionRecord], now: float,
          status: S = S.WAITING_FOR_CHILDREN, **fields: Any) -> RunCommit:
    """The commit of a claimed ``parent`` that waits for ``children`` (or for its finalize)."""
    refs = tuple(ExecutionRef(c.task_id, c.execution_id) for c in children)
    if status is S.WAITING_FOR_FINALIZE:
        fields = dict(finalize=refs[0], waiting_for_finalize_started_at=now, **fields)
    else:
        fields = dict(children=parent.children + refs, waiting_for_children_started_at=now, **fields)
    record = parent.copy(status=status, ready_at=None, active_children_count=len(children), error=None, **fields)
    return RunCommit(record, tuple(children))


def finish(claimed: ExecutionRecord, status: S, now: float, **fields: Any) -> RunCommit:
    """The commit that ends a claimed record in ``status``."""
    if status is S.COMPLETED:
        fields.setdefault("output", OUTPUT)
    else:
        fields.setdefault("error", BOOM)
    return RunCommit(claimed.copy(status=status, finished_at=now, ready_at=None, **fields))


def retry(claimed: ExecutionRecord, now: float, delay: float, error: ErrorInfo = BOOM) -> RunCommit:
    """The commit that schedules another attempt of a failed run ``delay`` seconds from ``now``."""
    return RunCommit(claimed.copy(
        status=S.READY, error=error, retry_attempts=claimed.retry_attempts + 1, start_at=now + delay,
        ready_at=now + delay, executor_id=None,
    ))


def change(record: ExecutionRecord | str, previous: S | None, status: S, task_id: str | None = None) -> StatusChange:
    if isinstance(record, ExecutionRecord):
        return StatusChange(record.execution_id, record.task_id, previous, status)
    return StatusChange(record, task_id or "task", previous, status)


def summarize(changes: Iterable[StatusChange]) -> dict[str, tuple[str, S | None, S]]:
    """Per execution written: task id, status before the operation, status after it.

    The contract asks for a change for every record written, in no particular order; a backend
    may report a record written twice in one operation once or twice. This is what must agree.
    """
    summary: dict[str, tuple[str, S | None, S]] = {}
    for c in changes:
        first = summary.get(c.execution_id)
        summary[c.execution_id] = (c.task_id, c.previous_status if first is None else first[1], c.status)
    return summary


def expected(*changes: StatusChange) -> dict[str, tuple[str, S | None, S]]:
    return summarize(changes)


async def get(storage: Storage, execution_id: str) -> ExecutionRecord | None:
    (record,) = await storage.get_executions([execution_id])
    return record


async def get_stored(storage: Storage, execution_id: str) -> ExecutionRecord:
    """The record of ``execution_id``, which the storage must hold."""
    record = await get(storage, execution_id)
    assert record is not None, f"{execution_id} is not stored"
    return record


async def claim(storage: Storage, now: float, limit: int = 100, executor_id: str = "de_a") -> list[ExecutionRecord]:
    return await storage.claim_executions(executor_id, now, limit, LEASE_DURATION)


async def claim_one(storage: Storage, now: float, execution_id: str, executor_id: str = "de_a") -> ExecutionRecord:
    claimed = await claim(storage, now, 1, executor_id)
    assert [r.execution_id for r in claimed] == [execution_id], (
        f"expected to claim {execution_id} at {now}, claimed {[r.execution_id for r in claimed]}"
    )
    return claimed[0]


def claimed_copy(record: ExecutionRecord, now: float, executor_id: str = "de_a",
                 lease_duration: float = LEASE_DURATION) -> ExecutionRecord:
    """``record`` as ``claim_executions`` must return (and store) it."""
    fields: dict[str, Any] = dict(
        ready_at=None, executor_id=executor_id, lease_token=record.lease_token + 1,
        lease_expires_at=now + lease_duration, updated_at=now,
    )
    if record.status is S.READY:
        fields.update(status=S.RUNNING, started_at=now)
    return record.copy(**fields)


def committed_copy(commit: RunCommit, now: float) -> ExecutionRecord:
    """The record as stored after ``commit`` was applied (before any closure touched it)."""
    return commit.record.copy(lease_expires_at=None, updated_at=now)
