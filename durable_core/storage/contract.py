"""The storage contract: what every backend implements, and the records it stores.

A backend stores execution records and performs a handful of *domain operations* on them. Each
operation is atomic (it happens wholly or not at all, also when the calling trio task is
cancelled), is a trio checkpoint, and takes the current time from the engine: a storage never
reads the wall clock, so lease expiry and backoff work under ``trio.testing.MockClock``.

Scheduling is expressed by two internal fields of a record:

* ``ready_at``: the record can be claimed at or after this time (None: nothing to do now). A
  ``ready`` execution is claimable at its ``start_at``; a parent waiting for children becomes
  claimable when its last active child (or its finalize) finishes, so that the engine can process
  the children's results.
* ``lease_token``/``lease_expires_at``: claiming increments ``lease_token`` and sets a short
  ``lease_expires_at``, which the claimer's heartbeats push forward while it runs the execution;
  every write by the claimer is *fenced* by that token. A lease ends when the claimer commits,
  releases it, or it expires, or when the execution is cancelled; after that the old token can
  never write again, nor renew the lease.

Closure (a child finishing moves its parent along) and cascading cancellation (a parent ending in
any status other than completed cancels every unfinished descendant) happen inside the operation
that finished the child or the parent, in the same atomic step.

The rules of every transition (which records an operation accepts, which fields it sets) are
written once, as pure functions, in ``durable_core.storage.transitions``.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ..errors import DurableExecutionError, ErrorInfo
from ..models import ExecutionRef, ParentRef, RetryOptions
from ..status import TaskExecutionStatus

STORAGE_API = 7
"""Version of this contract. Backends declare the version they implement as ``storage_api``; 7
added ``ExecutionRecord.priority``, claimed highest first (a backend written for 6, 5 or 4 drops it
and claims first-in first-out: the engine works with it, ignoring priorities); 6
added ``ExecutionRecord.queue``, ``queues`` to ``claim_executions`` and ``queue`` to
``list_executions`` (a backend written for 5 or 4 would drop the queue: on one, the engine
enqueues only on the default queue); 5 added ``task_ids`` to ``claim_executions``, honoured by a backend with ``Capabilities.routing`` (a
backend written for 4 lacks it and still works: see ``COMPATIBLE_STORAGE_APIS``); 4
added the cursor ``before`` of ``list_executions`` (a backend written for 3 would ignore it and
list the first page again); 3 added ``ExecutionRecord.deferred_options`` (a backend written for 2
would drop it)."""

COMPATIBLE_STORAGE_APIS = frozenset({4, 5, 6, STORAGE_API})
"""The versions this core opens. A backend written for 4 has no ``task_ids`` in its claims: the
engine claims from it as before and hands back at once what it does not define (slower, but
correct; see ``Capabilities.routing``). One written for 4 or 5 stores no queue: the engine
refuses to enqueue on any queue but ``DEFAULT_QUEUE`` there. One written for 4, 5 or 6 stores no
priority: it claims first-in first-out, whatever the priorities."""

QUEUES_STORAGE_API = 6
"""The first storage API whose records keep their queue."""

DEFAULT_QUEUE = "default"
"""The queue of an execution enqueued without one, of a task defined without one."""

MAX_PRIORITY = 1_000_000
"""The highest priority: an execution's priority is an integer from 0 (the default) to this."""

ListCursor = tuple[float, str]
"""Where a page of ``list_executions`` ended: the ``(created_at, execution_id)`` of its last record."""


@dataclass(frozen=True, slots=True)
class Capabilities:
    """Optional features a backend has; the engine and the conformance suite consult them."""

    persistent: bool = False
    """Records survive closing and reopening the storage."""
    multi_process: bool = False
    """Executors in several processes may share the storage."""
    change_notifications: bool = False
    """The storage has ``wait_for_changes`` (see ``ChangeNotifications``): executors are woken as
    soon as another process makes work claimable, instead of at their next poll."""
    routing: bool = False
    """``claim_executions`` honours ``task_ids`` and ``queues``, from an index on the task id and
    queue, so that executions of tasks (or queues) a worker does not serve cost its claims nothing. Without it the engine claims
    without ``task_ids`` and hands back at once (``ready`` again, for a worker that defines it)
    what it does not define: correct, but each such execution costs claims and writes."""
    concurrency_limits: bool = False
    """``claim_executions`` honours ``limits`` (with ``routing``): tasks with a ``max_concurrency``
    are claimed only up to it, counted atomically with the claim across every executor. The
    engine refuses to start an executor that defines such a task on a storage without it."""
    rate_limits: bool = False
    """``claim_executions`` honours ``rates`` (with ``routing``): tasks with a ``rate_limit`` are
    claimed only as often as it allows per sliding period, counted atomically with the claim across
    every executor. The engine refuses to start an executor that defines such a task on a storage without it."""


@dataclass(frozen=True, slots=True)
class Payload:
    """A serialized value and the name of the serializer that wrote it."""

    serializer: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Lease:
    """Proof of a claim: the execution and the token its claim received."""

    execution_id: str
    token: int


@dataclass(frozen=True, slots=True)
class ExecutorInfo:
    """A running executor as its last heartbeat described it (``durable workers`` lists them)."""

    executor_id: str
    host: str
    pid: int
    started_at: float
    heartbeat_at: float
    running: int
    """Executions it was running (or moving along) at that heartbeat."""


EXECUTOR_RETENTION = 3600.0
"""Seconds after its last heartbeat an executor is forgotten by the storage (see ``renew_leases``)."""


@dataclass(frozen=True, slots=True)
class StatusChange:
    """One execution an operation wrote: its status before and after (equal if only data changed)."""

    execution_id: str
    task_id: str
    previous_status: TaskExecutionStatus | None
    status: TaskExecutionStatus


@dataclass(slots=True)
class ExecutionRecord:
    """Everything stored about one execution. Times are seconds since the epoch (floats).

    A value: once made, a record is never changed (``copy`` makes a changed one), so a storage
    may keep the records it is given and hand out the ones it keeps (the memory storage does)."""

    execution_id: str
    task_id: str
    status: TaskExecutionStatus
    input: Payload
    retry: RetryOptions
    timeout: float
    sleep_before_run: float
    created_at: float
    updated_at: float
    start_at: float
    root: ExecutionRef | None = None
    parent: ParentRef | None = None
    is_sleeping: bool = False
    sleeping_unique_id: str | None = None
    idempotency_key: str | None = None
    output: Payload | None = None
    run_output: Payload | None = None
    """A parent's own run output, kept for its finalize step."""
    error: ErrorInfo | None = None
    retry_attempts: int = 0
    lease_expirations: int = 0
    children: tuple[ExecutionRef, ...] = ()
    finalize: ExecutionRef | None = None
    active_children_count: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    waiting_for_children_started_at: float | None = None
    waiting_for_finalize_started_at: float | None = None
    ready_at: float | None = None
    executor_id: str | None = None
    lease_token: int = 0
    lease_expires_at: float | None = None
    deferred_options: frozenset[str] = frozenset()
    """Options the enqueuer did not know (some of ``retry``, ``timeout``, ``sleep_before_run``): a
    client without the task's definition stored placeholders for them, and the first executor that
    claims the execution replaces them by the task's defaults (and commits it with this empty).
    While ``sleep_before_run`` is deferred, it holds the enqueue's delay (``delay=``, ``at=``)."""
    context: Mapping[str, str] | None = None
    """What plugins keep with the execution from the code that created it (``durable_execution_context``,
    e.g. the trace it belongs to): a few short strings, never changed after the insert, handed back
    to them when it runs. None when no plugin gave any."""
    queue: str = DEFAULT_QUEUE
    """The named queue it waits in: workers claim only from their queues (``durable worker --queue``)."""
    priority: int = 0
    """0 to ``MAX_PRIORITY``: of the due executions a claim may take, the higher
    priorities first, then the earliest ``ready_at``. Never changed after the insert."""

    def copy(self, **changes: object) -> ExecutionRecord:
        """A copy with ``changes`` applied (5x faster than ``dataclasses.replace``: a hot path)."""
        new = ExecutionRecord(*_record_values(self))
        for name, value in changes.items():
            setattr(new, name, value)
        return new

    @property
    def lease(self) -> Lease:
        return Lease(self.execution_id, self.lease_token)


def list_key(record: ExecutionRecord) -> ListCursor:
    """The key ``list_executions`` orders by (descending), and the cursor after ``record``."""
    return record.created_at, record.execution_id


_record_values = operator.attrgetter(*(f.name for f in dataclasses.fields(ExecutionRecord)))


@dataclass(frozen=True, slots=True)
class RunCommit:
    """A claimer's fenced write: the new state of the claimed record, plus records to insert.

    ``record.lease_token`` must be the token of the claim. The backend stores every field of
    ``record`` except ``lease_token`` (kept) and ``lease_expires_at`` (cleared: committing ends the
    lease) and ``updated_at`` (set to now), then inserts ``new_executions`` (children or the
    finalize child of ``record``).
    """

    record: ExecutionRecord
    new_executions: Sequence[ExecutionRecord] = ()


@dataclass(frozen=True, slots=True)
class SleepingWakeup:
    """Finish a sleeping execution from outside: ``completed`` with output or ``failed`` with error."""

    execution_id: str
    status: TaskExecutionStatus
    output: Payload | None = None
    error: ErrorInfo | None = None


class DuplicateSleepingTaskUniqueIdError(DurableExecutionError):
    """Inserting a sleeping execution whose unique id is already taken in this storage."""

    def __init__(self, unique_id: str):
        super().__init__(
            f"A sleeping task execution with unique id {unique_id!r} already exists; "
            "sleeping task unique ids must be unique across the storage",
            is_retryable=False,
        )


class StorageError(DurableExecutionError):
    """A backend failed (I/O, corrupt file, incompatible schema); the message says how to fix it."""

    def __init__(self, message: str, *, is_retryable: bool = True):
        super().__init__(message, is_retryable=is_retryable)


EXPIRED_ERROR = ErrorInfo("generic", "Task execution expired", is_retryable=True)
"""The error of a running execution whose lease expired (its executor is presumed dead)."""
EXPIRED_TOO_OFTEN_ERROR = ErrorInfo("generic", "Task execution expired too many times", is_retryable=False)
"""The error of an execution whose lease expired more than ``max_lease_expirations`` times."""
SLEEPING_TIMED_OUT_ERROR = ErrorInfo("timed_out", "Task execution timed out", is_retryable=True)
"""The error of a sleeping execution nobody woke before its timeout."""
CANCELLED_ERROR = ErrorInfo("cancelled", "Task execution cancelled", is_retryable=False)
"""The error of an execution cancelled from outside."""


def cascade_error(ancestor: ExecutionRecord | StatusChange) -> ErrorInfo:
    """The error of a descendant cancelled because ``ancestor`` ended without completing."""
    return ErrorInfo(
        "cancelled",
        f"Parent task execution ended {ancestor.status} "
        f"[taskId={ancestor.task_id}] [executionId={ancestor.execution_id}]",
        is_retryable=False,
    )


@runtime_checkable
class Storage(Protocol):
    """The storage contract (``STORAGE_API`` 7). All methods are async, atomic and checkpoints.

    Batch methods take and return sequences; each element is handled as if alone (one failing
    fence does not stop the others), unless the method says the whole batch is atomic.
    """

    storage_api: int
    capabilities: Capabilities

    async def insert_executions(
        self, records: Sequence[ExecutionRecord]
    ) -> list[ExecutionRecord]:
        """Insert new executions atomically (all or none) and return the stored record of each.

        A record whose ``(task_id, idempotency_key)`` is already stored is not inserted: the
        stored record is returned in its place. A ``sleeping_unique_id`` already stored raises
        ``DuplicateSleepingTaskUniqueIdError`` and inserts nothing. An existing ``execution_id``
        raises ``StorageError``.
        """
        ...

    async def get_executions(self, execution_ids: Sequence[str]) -> list[ExecutionRecord | None]:
        """The records with these ids, in order; None for an unknown id."""
        ...

    async def get_executions_by_sleeping_unique_id(
        self, unique_ids: Sequence[str]
    ) -> list[ExecutionRecord | None]:
        """The sleeping executions with these unique ids, in order; None where there is none."""
        ...

    async def list_executions(
        self,
        *,
        statuses: Sequence[TaskExecutionStatus] | None = None,
        task_id: str | None = None,
        executor_id: str | None = None,
        limit: int = 100,
        before: ListCursor | None = None,
        queue: str | None = None,
    ) -> list[ExecutionRecord]:
        """Executions matching the filters (``queue``: in that queue), newest first, at most ``limit``: ordered by
        ``(created_at, execution_id)`` descending (ids made in the same millisecond sort by time).

        ``executor_id`` selects the records whose ``executor_id`` is that one (who holds, or last
        held, their lease). ``before`` pages: only records whose ``(created_at, execution_id)`` is
        smaller than it, so passing the key of the last record listed gives the next page, and a
        record inserted meanwhile never shifts one into or out of it. A backend lists a page from
        an index on those keys (after the filter's column), as the first page."""
        ...

    async def claim_executions(
        self, executor_id: str, now: float, limit: int, lease_duration: float, *,
        task_ids: Collection[str] | None = None, queues: Collection[str] | None = None,
        limits: Mapping[str, int] | None = None, rates: Mapping[str, tuple[int, float]] | None = None,
    ) -> list[ExecutionRecord]:
        """Claim up to ``limit`` records whose ``ready_at <= now``: the highest ``priority`` first,
        and of one priority the earliest ``ready_at`` first (ties in insertion order, where the
        backend knows it). Records not yet due, or of lower priorities than those claimed, must
        not slow the claim: a backend reads each priority level it has from an index on
        ``(task_id, queue, priority, ready_at)`` (a claim per level, highest first, until it has
        ``limit``), never a scan past the due entries.

        With ``task_ids`` (a backend with ``Capabilities.routing``), only records of those tasks,
        and with ``queues`` only records in those queues, found through an index on the task id
        and queue: other records are never claimed, and however many are due they do not slow
        the claim. None claims records of any task (in any queue); the engine passes both only
        to a backend with ``routing``, and neither to one without, which need not take them.

        With ``limits`` (only with ``task_ids``, and only to a backend with
        ``Capabilities.concurrency_limits``), a task it names is claimed at most ``limits[task] -
        running`` times, where running counts that task's records with status ``running`` and a
        lease (not sleeping), counted in the claim's own atomic step so that concurrent claimers
        never exceed the limit together (``claim_within_limits`` helps).

        With ``rates`` (task id -> (count, period in seconds); only with ``task_ids``, and only to
        a backend with ``Capabilities.rate_limits``), a task it names is claimed at most ``count -
        started`` times, where started counts that task's records with ``started_at >= now -
        period``, in the same atomic step.

        Each claimed record gets ``ready_at=None``, ``executor_id``, ``lease_token + 1``,
        ``lease_expires_at = now + lease_duration`` and ``updated_at = now``; a ``ready`` one
        becomes ``running`` with ``started_at = now``. Returns the records as claimed. No record
        is ever claimed by two callers at once.
        """
        ...

    async def commit_runs(self, commits: Sequence[RunCommit], now: float) -> list[StatusChange]:
        """Apply each commit whose lease still holds, each atomically with its closure.

        A lease holds when the stored ``lease_token`` equals ``commit.record.lease_token`` and
        ``lease_expires_at`` is set. A commit whose lease does not hold changes nothing. After
        storing a commit: if the record is finished and has a parent, the parent's
        ``active_children_count`` drops by one (never below zero) and, when it reaches zero while
        the parent is ``waiting_for_children`` or ``waiting_for_finalize``, the parent gets
        ``ready_at = now``; if the record finished in any status but ``completed``, every
        unfinished descendant becomes ``cancelled`` with ``cascade_error(record)`` and its lease
        ends. Returns a change for every record written (an applied commit's own record included,
        and each execution it inserts, with ``previous_status`` None). If a commit whose lease
        holds inserts a ``sleeping_unique_id`` that is already stored, the call raises
        ``DuplicateSleepingTaskUniqueIdError`` and applies nothing at all (the engine sends
        commits that insert sleeping executions alone).
        """
        ...

    async def release_leases(self, leases: Sequence[Lease], now: float) -> list[StatusChange]:
        """Hand claimed records back at once (graceful shutdown), where the lease still holds.

        A ``running`` record becomes ``ready`` with ``ready_at = start_at = now``; a waiting parent
        gets ``ready_at = now``; neither keeps its executor. Attempts and expirations are not
        counted.
        """
        ...

    async def find_revoked_leases(self, leases: Sequence[Lease]) -> list[str]:
        """Execution ids (in input order) of the leases that no longer hold (or unknown records)."""
        ...

    async def renew_leases(
        self, executor: ExecutorInfo, leases: Sequence[Lease], now: float, lease_duration: float
    ) -> list[str]:
        """An executor's heartbeat: extend its leases and record that it is alive, atomically.

        Each lease that still holds on a record that is not sleeping gets ``lease_expires_at =
        now + lease_duration`` (nothing else changes, ``updated_at`` included). ``executor``
        replaces the stored entry with its ``executor_id``, and entries whose ``heartbeat_at`` is
        more than ``EXECUTOR_RETENTION`` seconds before ``now`` are deleted. Returns the execution
        ids (in input order) of the leases that were not renewed, as ``find_revoked_leases``.
        """
        ...

    async def list_executors(self, heartbeat_after: float) -> list[ExecutorInfo]:
        """The stored executors whose ``heartbeat_at >= heartbeat_after``, earliest
        ``started_at`` first (then by ``executor_id``)."""
        ...

    async def expire_leases(
        self, now: float, max_lease_expirations: int, limit: int
    ) -> list[StatusChange]:
        """End up to ``limit`` leases with ``lease_expires_at <= now``, earliest first.

        A sleeping execution becomes ``timed_out`` (``SLEEPING_TIMED_OUT_ERROR``, closure as in
        ``commit_runs``). Any other record counts one more ``lease_expirations``; past
        ``max_lease_expirations`` it becomes ``failed`` with ``EXPIRED_TOO_OFTEN_ERROR`` (closure
        and cascade as in ``commit_runs``); otherwise a ``running`` one becomes ``ready`` with
        ``EXPIRED_ERROR`` and ``ready_at = start_at = now``, and a waiting parent gets
        ``ready_at = now``; neither keeps its executor.
        """
        ...

    async def cancel_executions(self, execution_ids: Sequence[str], now: float) -> list[StatusChange]:
        """Cancel each unfinished execution (``CANCELLED_ERROR``), ending its lease, with closure
        and cascade as in ``commit_runs``. Finished or unknown ids are left alone."""
        ...

    async def wake_sleeping_executions(
        self, wakeups: Sequence[SleepingWakeup], now: float
    ) -> list[StatusChange]:
        """Finish each sleeping execution that is still ``running``, with closure as in
        ``commit_runs``. Finished, unknown or non-sleeping ids are left alone."""
        ...

    async def retry_executions(self, execution_ids: Sequence[str], now: float) -> list[StatusChange]:
        """Run each errored top-level execution again (``transitions.accepts_retry``): it becomes
        ``ready`` at ``now`` as a new attempt, keeping its error (``transitions.retry``). Any other
        id (active, completed, a child, sleeping, unknown) is left alone."""
        ...

    async def delete_finished_executions(self, finished_before: float, limit: int) -> int:
        """Delete up to ``limit`` whole trees whose top-level execution finished before
        ``finished_before``; a finished child whose tree is still active is never deleted.
        Returns how many records were deleted."""
        ...

    async def aclose(self) -> None:
        """Release connections and threads; the storage is not used afterwards."""
        ...


@runtime_checkable
class ChangeNotifications(Protocol):
    """The optional change feed of a storage whose ``Capabilities.change_notifications`` is True."""

    async def wait_for_changes(self, seen: int | None) -> int:
        """Return a change counter once it differs from ``seen`` (at once when ``seen`` is None).

        The counter moves when *another* storage object — another process, another machine, or
        another object on the same database — commits a write that may make an execution
        claimable (an insert, a finished child, an expired or released lease). A moved counter
        is a hint, never a promise: spurious moves are fine, the engine then claims nothing.
        Passing back the last value returned loses no change made after it was returned.
        Cancellable at any time; the engine never relies on it for correctness, only latency.
        """
        ...


@runtime_checkable
class StatusCounts(Protocol):
    """Optional: how many executions there are in each status, from an index (a dashboard's
    counts); a storage without it simply shows none."""

    async def count_executions(self) -> dict[TaskExecutionStatus, int]:
        """The number of stored executions of each status; statuses with none may be left out."""
        ...


@runtime_checkable
class TransactionalInserts(Protocol):
    """Optional: insert executions inside a transaction the caller holds on its own connection
    to the storage's database, so they exist if and only if the caller commits (the outbox pattern).

    Called on the caller's thread or asyncio event loop, never in the storage's trio run: an
    implementation uses only the connection given and the storage's immutable configuration (its
    path, database identity, schema, channel), never its own connections or threads. Semantics
    are ``insert_executions``'s: all or none, idempotency-key twins return the stored record, a
    taken sleeping unique id raises ``DuplicateSleepingTaskUniqueIdError`` and inserts nothing."""

    def insert_executions_on(self, connection: Any, records: Sequence[ExecutionRecord]) -> list[ExecutionRecord]:
        """``insert_executions`` on the caller's sync ``connection``, in its open transaction,
        on the caller's thread. Never commits or rolls back the caller's transaction; if it
        fails, it undoes only its own writes (a savepoint) and the caller's transaction stays
        usable. A connection of the wrong kind, or on another database, is refused with a
        ``StorageError`` that says what to pass instead."""
        ...

    async def insert_executions_on_async(
        self, connection: Any, records: Sequence[ExecutionRecord]
    ) -> list[ExecutionRecord]:
        """The same for an asyncio connection (e.g. psycopg's ``AsyncConnection``)."""
        ...

    def connect(self) -> Any:
        """A new sync connection to the storage's database, set up as the storage's own, usable
        from any one thread at a time, for ``insert_executions_on`` then ``commit()``: how
        ``Client.enqueue`` stores an execution on the caller's thread, with no hop to the
        storage's. The caller closes it."""
        ...


@runtime_checkable
class NonBlockingInserts(Protocol):
    """Optional, beside ``TransactionalInserts``: commit new executions on a connection from its
    ``connect()`` only when that takes no longer than a write itself — it waits at most a fraction
    of a millisecond for another connection's lock, and never for a disk flush.
    Why: ``AsyncClient.enqueue`` then writes on its event loop's own thread, where a hop to a worker
    thread and back would cost more than the write; when the write would wait, it hops after all."""

    def try_insert_executions_on(self, connection: Any, records: Sequence[ExecutionRecord]
                                 ) -> list[ExecutionRecord] | None:
        """``insert_executions_on`` then commit, on ``connection`` (from ``connect()``, with no
        transaction open); None, and nothing written, if either would have to wait longer."""
        ...


STORAGE_METHODS: tuple[str, ...] = (
    "insert_executions",
    "get_executions",
    "get_executions_by_sleeping_unique_id",
    "list_executions",
    "claim_executions",
    "commit_runs",
    "release_leases",
    "find_revoked_leases",
    "renew_leases",
    "list_executors",
    "expire_leases",
    "cancel_executions",
    "wake_sleeping_executions",
    "retry_executions",
    "delete_finished_executions",
)
"""The domain operations of the contract (``aclose`` aside), in the order documented above."""
