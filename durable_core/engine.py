"""The state an executor keeps while it runs, and how it reacts to what the storage stored.

``Engine`` is made when an executor starts. The runner, the maintenance loops, the handles (as
``ExecutionAccess``) and the steps (as ``StepEngine``) all work through it: it owns the clock, the
storage, the payload codec, the runs in progress, the waiting handles and the signals that wake
the claimer. Everything that follows a stored change — events, woken handles, stopped runs,
earlier claims — goes through ``observe``.
"""

from __future__ import annotations

import contextlib
import logging
import math
from contextlib import AbstractContextManager
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any, Protocol

import trio

from .batching import Coalescer
from .clock import Clock
from .errors import DurableExecutionError, DurableExecutionNotFoundError, ErrorInfo, execution_not_found
from .events import EventKind, ExecutionRun, TaskExecutionEvent, kind_and_error
from .models import TaskExecution
from .options import ExecutorOptions
from .payloads import PayloadCodec
from .records import to_task_execution
from .retrying import StorageFaults
from .status import TaskExecutionStatus as S
from .storage.contract import CANCELLED_ERROR, ExecutionRecord, RunCommit, SleepingWakeup, StatusChange, Storage
from .storage.contract import StorageError
from .storage.transitions import claim
from .tasks import Task, call_user_code
from .waiters import Waiters

log = logging.getLogger("durable.executor")


class Observers(Protocol):
    """Where events go (the plugins' ``durable_task_execution_event``), and the other hooks of
    plugins that follow executions (``PluginRegistry`` implements it)."""

    def observing(self) -> bool:
        """Whether anyone listens now: no event is built for nobody."""
        ...

    def emit(self, event: TaskExecutionEvent) -> None: ...

    def execution_context(self) -> dict[str, str] | None:
        """What plugins keep with an execution created now (``durable_execution_context``)."""
        ...

    wraps_runs: bool
    """Whether ``wrap_run`` does anything: if not, a run builds no ``ExecutionRun``."""

    def wrap_run(self, run: ExecutionRun) -> AbstractContextManager[None]:
        """The plugins' ``durable_wrap_run`` around one run."""
        ...


class Signal:
    """A wake-up call that can be re-armed: ``clear`` before looking, then ``wait``."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = trio.Event()

    def set(self) -> None:
        self._event.set()

    def clear(self) -> None:
        if self._event.is_set():
            self._event = trio.Event()

    async def wait(self) -> None:
        await self._event.wait()


class Run:
    """One claimed record being worked on by this executor."""

    __slots__ = ("record", "renew_until", "lease_expires_at", "scope", "revoked", "hand_back", "committing")

    def __init__(self, record: ExecutionRecord, renew_until: float):
        self.record = record
        self.renew_until = renew_until
        """The trio time after which heartbeats no longer renew its lease (see ``heartbeat``)."""
        self.lease_expires_at = record.lease_expires_at
        """When its lease ends (engine time) unless renewed: the claim's, then the last renewal's."""
        self.scope = trio.CancelScope()
        self.revoked = False
        """Its lease ended elsewhere (cancelled, expired): it must not write."""
        self.hand_back = False
        """Shutdown cut it off: its execution goes back to ``ready``."""
        self.committing = False
        """Its work is done and its outcome on the way to the storage: nothing left to stop."""

    def revoke(self) -> None:
        self.revoked = True
        self.scope.cancel()


class Engine:
    """A running executor's state; see the module docstring."""

    def __init__(self, *, executor_id: str, options: ExecutorOptions, storage: Storage,
                 codec: PayloadCodec, get_task: Callable[[Task | str], Task], observers: Observers,
                 shutdown_event: trio.Event):
        self.executor_id = executor_id
        self.options = options
        self.storage = storage
        self.codec = codec
        self.get_task = get_task
        self.shutdown_event = shutdown_event
        self.clock = Clock()
        self.runs: dict[str, Run] = {}
        self.waiters = Waiters()
        self.wake_claimer = Signal()
        """Set when something may have become claimable here or elsewhere."""
        self.waiters_stale = Signal()
        """Set when another process changed the storage: waited executions may have finished."""
        self.capacity_freed = Signal()
        self.changed = Signal()
        """Set at every change this executor makes or observes (what an event is emitted for)."""
        self.start_run: Callable[[ExecutionRecord], None] | None = None
        """Set by an executor that runs tasks: runs a record it claimed as it inserted it."""
        self.claimer_caught_up = False
        """The claimer's last claim took fewer than it asked for: nothing else was due then."""
        self._due_since_claim = 0
        """Executions made due here since the claimer last looked (or a bound, when other processes'
        changes are seen): each will take a slot at its next claim."""
        self.claiming_on_insert = 0
        """Records claimed by ``claim_on_insert`` whose insert has not returned yet."""
        self.claiming = 0
        """The limit of the claimer's claim in flight: slots that its records may take."""
        self.next_ready_at = math.inf
        """The earliest ``ready_at`` this executor stored, for the claimer to wake at."""
        self.stopping = False
        self.faults = StorageFaults()
        """How the background's storage calls ride out faults (``retrying``)."""
        self.plugins = observers
        """Where events go, and the plugins' other hooks that follow executions."""
        self._inserting: dict[str, ExecutionRecord] = {}
        """The records of ``insert`` calls that have not returned yet."""
        self._committing: set[str] = set()
        """The executions of ``commit_runs`` calls that have not returned yet (``committing``)."""
        self._claims_after_commit: list[StatusChange] = []
        self._reads: Coalescer[str, ExecutionRecord | None] = Coalescer(storage.get_executions)

    def now(self) -> float:
        return self.clock.now()

    def check_accepting(self) -> None:
        if self.stopping:
            raise DurableExecutionError("Durable executor shutdown", is_retryable=False)

    # ----------------------------------------------------------------------------- reading

    async def get_record(self, execution_id: str) -> ExecutionRecord:
        """The stored record, read together with the others asked for in this tick."""
        record = await self._reads.submit(execution_id)
        if record is None:
            raise execution_not_found(execution_id)
        return record

    async def get_executions(self, execution_ids: Sequence[str]) -> list[ExecutionRecord | None]:
        return await self.storage.get_executions(execution_ids)

    def execution(self, record: ExecutionRecord) -> TaskExecution:
        return to_task_execution(record, self.codec.decode)

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await call_user_code(fn, *args)

    def execution_context(self) -> dict[str, str] | None:
        return self.plugins.execution_context()

    # ----------------------------------------------------------------------------- writing

    @property
    def free_slots(self) -> int:
        """How many more executions this executor may run now."""
        return (self.options.max_concurrent_task_executions - len(self.runs) - self.claiming_on_insert
                - self.claiming)

    def claim_on_insert(self, records: list[ExecutionRecord], queues: Collection[str]) -> list[ExecutionRecord]:
        """``records``, those this executor can run at once claimed by it as they will be stored
        (executions of its own tasks: those in the ``queues`` it claims from).

        Why: an executor with free slots that enqueues a task it defines would otherwise store it
        ``ready``, wake its claimer and claim it back in another storage call. It claims on insert
        only while its claimer has caught up (nothing due waits that it knows of, so nothing is
        overtaken) and the record is due now; the lease is a claim's, taken over like any other if
        this executor dies. Temporal calls this eager start.
        """
        if (self.stopping or self.start_run is None or not self.claimer_caught_up
                or self.next_ready_at <= self.now()):
            return records
        slots = self.free_slots - self._due_since_claim
        if slots <= 0:
            return records
        now = self.now()
        claimed = list(records)
        for index, record in enumerate(records):
            if slots == 0:
                break
            if (record.status is S.READY and record.ready_at is not None and record.ready_at <= now
                    and record.queue in queues):
                claimed[index] = claim(record, self.executor_id, now, self.options.lease_duration)
                slots -= 1
        return claimed

    async def insert(self, records: Sequence[ExecutionRecord]) -> list[ExecutionRecord]:
        """Store new executions (atomically) and return what is stored for each: the record, or
        the one stored earlier under the same idempotency key. Those ``claim_on_insert`` claimed
        start running here."""
        inserting = self._inserting
        for record in records:
            inserting[record.execution_id] = record
        claiming = sum(1 for r in records if r.executor_id == self.executor_id and not r.is_sleeping)
        self.claiming_on_insert += claiming
        try:
            stored = await self.storage.insert_executions(records)
        finally:
            self.claiming_on_insert -= claiming
            if claiming:
                self.capacity_freed.set()  # a shutdown waits for these
            emitted_by_claimer = {r.execution_id for r in records if inserting.pop(r.execution_id, None) is None}
        unstarted = []
        for record, kept in zip(records, stored):
            if kept.execution_id != record.execution_id:
                continue
            if kept.executor_id == self.executor_id and not kept.is_sleeping:  # claimed on insert
                self.emit(EventKind.ENQUEUED, StatusChange(kept.execution_id, kept.task_id, None, S.READY))
                if self.start_run is not None:  # emits its ``claimed``
                    self.start_run(kept)
                else:  # returned after a shutdown handed its runs back: this one goes back too
                    self.emit(EventKind.CLAIMED, StatusChange(kept.execution_id, kept.task_id, S.READY, kept.status))
                    unstarted.append(kept.lease)
                continue
            if record.execution_id not in emitted_by_claimer:
                self.emit_enqueued(kept)
            self.note_ready_at(kept.ready_at)
        if unstarted:
            try:
                self.observe(EventKind.RELEASED, await self.storage.release_leases(unstarted, self.now()))
            except StorageError as exc:  # stored all the same: its lease expires, and it runs elsewhere
                log.warning("could not hand back %d execution(s) enqueued during shutdown (%s); they run "
                            "once their lease expires", len(unstarted), exc.message)
        return stored

    def emit_enqueued(self, record: ExecutionRecord) -> None:
        self.emit(EventKind.ENQUEUED, StatusChange(record.execution_id, record.task_id, None, record.status))

    def claimed(self, run: Run) -> None:
        """Count ``run`` among this executor's runs and emit its ``claimed`` event, in its place: a
        storage whose calls run in a thread may hand trio a claim before the return of the call
        that made it claimable. After a new execution's insert, ``enqueued`` must come first:
        then it is emitted here, not by ``insert``. After a run's commit (a retry), the
        ``committed`` event must: then the claim waits for it (``committing``)."""
        record = run.record
        inserted = self._inserting.pop(record.execution_id, None)
        if inserted is not None:
            self.emit_enqueued(inserted)
        self.runs[record.execution_id] = run
        change = StatusChange(record.execution_id, record.task_id,
                              S.READY if record.status is S.RUNNING else record.status, record.status)
        if record.execution_id in self._committing:
            self._claims_after_commit.append(change)
        else:
            self.emit(EventKind.CLAIMED, change)

    @contextlib.contextmanager
    def committing(self, commits: Sequence[RunCommit]) -> Iterator[None]:
        """While a ``commit_runs`` call is under way, and its changes observed: claims of its
        executions made meanwhile are emitted after it (see ``claimed``)."""
        ids = [commit.record.execution_id for commit in commits]
        self._committing.update(ids)
        try:
            yield
        finally:
            self._committing.difference_update(ids)
            claims, self._claims_after_commit = self._claims_after_commit, []
            for change in claims:
                if change.execution_id in self._committing:
                    self._claims_after_commit.append(change)
                else:
                    self.emit(EventKind.CLAIMED, change)

    async def wake_sleeping(self, task_id: str, unique_id: str, *, status: str = "completed",
                            output: Any = None, error: str | None = None) -> TaskExecution:
        """Finish the sleeping execution of ``task_id`` found by ``unique_id`` (see
        ``DurableExecutor.wakeup_sleeping_task_execution``); returns it as finished."""
        (record,) = await self.storage.get_executions_by_sleeping_unique_id([unique_id])
        if record is None:
            raise DurableExecutionNotFoundError(
                f"Sleeping task execution not found [sleepingTaskUniqueId={unique_id}]"
            )
        if record.task_id != task_id:
            raise DurableExecutionNotFoundError(
                f"Sleeping task execution belongs to another task [providedTaskId={task_id}] "
                f"[sleepingTaskId={record.task_id}] [sleepingTaskUniqueId={unique_id}]"
            )
        if record.status.is_finished:
            return self.execution(record)
        if status == S.COMPLETED:
            wakeup = SleepingWakeup(record.execution_id, S.COMPLETED,
                                    output=self.codec.encode(output, task_id, "output"))
        elif status == S.FAILED:
            message = error if isinstance(error, str) and error else "Sleeping task execution failed"
            wakeup = SleepingWakeup(record.execution_id, S.FAILED,
                                    error=ErrorInfo("generic", message, is_retryable=False))
        else:
            raise DurableExecutionError(
                f"Invalid status for sleeping task execution [executionId={record.execution_id}] "
                f"[status={status}]; use 'completed' or 'failed'",
                is_retryable=False,
            )
        self.observe(EventKind.WOKEN, await self.storage.wake_sleeping_executions([wakeup], self.now()),
                     acted_on={wakeup.execution_id: wakeup.error})
        return await self.get_execution(record.execution_id)

    # ----------------------------------------------------------------------------- ExecutionAccess

    async def get_execution(self, execution_id: str) -> TaskExecution:
        return self.execution(await self.get_record(execution_id))

    async def wait_until_finished(self, execution_id: str) -> TaskExecution:
        while True:
            finish = self.waiters.watch(execution_id)
            record = await self.get_record(execution_id)
            if record.status.is_finished:
                self.waiters.forget(execution_id, finish)
                return self.execution(record)
            await finish.event.wait()
            if finish.record is not None:
                return self.execution(finish.record)

    async def cancel(self, execution_ids: Sequence[str]) -> None:
        self.check_accepting()
        self.observe(EventKind.CANCELLED, await self.storage.cancel_executions(execution_ids, self.now()),
                     acted_on=dict.fromkeys(execution_ids, CANCELLED_ERROR))

    # ----------------------------------------------------------------------------- observation

    def emit(self, kind: EventKind, change: StatusChange, error: ErrorInfo | None = None,
             attempt: int | None = None) -> None:
        """Tell the observers, if any listens; ``attempt`` defaults to that of the execution's run here."""
        self.changed.set()
        if not self.plugins.observing():  # an event costs ~3 µs: a tenth of a no-op task
            return
        if attempt is None and kind is not EventKind.ENQUEUED and (run := self.runs.get(change.execution_id)):
            attempt = run.record.retry_attempts
        self.plugins.emit(TaskExecutionEvent(
            kind, change.execution_id, change.task_id, change.previous_status, change.status,
            self.now(), self.executor_id, error, attempt,
        ))

    def observe(self, kind: EventKind, changes: Sequence[StatusChange],
                stored: Mapping[str, ExecutionRecord] | None = None,
                acted_on: Mapping[str, ErrorInfo | None] | None = None,
                attempts: Mapping[str, int] | None = None) -> None:
        """React to stored changes: events, local waiters (given the ``stored`` records where
        known), local runs that lost their lease, and parents that became claimable.

        ``acted_on`` maps the executions the storage call acted on to the error it stored for
        each (see ``kind_and_error``); the others it changed were closed by them. ``attempts``:
        the attempt of the runs it ended, where not that of the run of each execution here.
        """
        for change in changes:
            event_kind, error = kind_and_error(kind, change, acted_on)
            self.emit(event_kind, change, error, attempts.get(change.execution_id) if attempts else None)
            if change.status.is_finished:
                record = stored.get(change.execution_id) if stored else None
                if record is not None and (record.status is not change.status or record.status is S.CANCELLED):
                    record = None  # not its own commit's change: a cascade in the same batch cancelled it
                self.waiters.finished(change.execution_id, record)
                run = self.runs.get(change.execution_id)
                if run is not None and not run.committing:  # e.g. cancelled by a cascade: stop it now
                    run.revoke()
            elif change.status == change.previous_status or change.status is S.READY:
                self.work_due()

    def stop_revoked(self, runs: Sequence[Run], revoked_ids: Sequence[str]) -> None:
        """Stop those of ``runs`` whose lease the storage found revoked, unless they are being
        handed back. The runs checked, not whatever runs now: an execution may have been
        re-claimed since."""
        revoked = set(revoked_ids)
        for run in runs:
            if run.record.execution_id in revoked and not run.hand_back:
                run.revoke()

    def work_due(self, count: int = 1) -> None:
        """``count`` executions may have become due: the claimer looks, and ``claim_on_insert``
        leaves them the slots they need meanwhile."""
        self._due_since_claim += count
        self.wake_claimer.set()

    def others_changed(self) -> None:
        """Another process changed the storage: what became due there is not known here."""
        self.work_due(self.options.max_concurrent_task_executions)

    def claimer_looks(self) -> None:
        """The claimer is about to claim: whatever became due so far, it will see."""
        self.wake_claimer.clear()
        self._due_since_claim = 0

    def note_ready_at(self, ready_at: float | None) -> None:
        """Make the claimer look at ``ready_at`` (now, or as a deadline) for what was stored."""
        if ready_at is None:
            return
        if ready_at <= self.now():
            self.work_due()
        elif ready_at < self.next_ready_at:
            self.next_ready_at = ready_at
            self.wake_claimer.set()

    async def wake_finished_waiters(self, *, skip_running: bool = False) -> None:
        """Wake handles waiting for executions that finished (or vanished) elsewhere: one
        batched read however many handles wait; ``skip_running`` leaves out the executions this
        executor runs, whose end it sees itself."""
        waited = [i for i in self.waiters if not (skip_running and i in self.runs)]
        for start in range(0, len(waited), 500):
            batch = waited[start:start + 500]
            for execution_id, record in zip(batch, await self.storage.get_executions(batch)):
                if record is None or record.status.is_finished:
                    self.waiters.finished(execution_id, record)
