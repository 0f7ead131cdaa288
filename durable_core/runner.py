"""Claiming executions and running them: from a claimed record to its fenced commit.

The claimer takes up to a batch of due records whenever it is woken (something became ready
here or elsewhere) or its next deadline comes; each claimed record runs in a task of its own,
under one cancel scope that carries both the task's timeout and any revocation of its lease. What
the work produced is built by ``steps`` into a ``RunCommit``, and commits finishing in the same
tick go to the storage together.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Awaitable, Callable, Sequence

import trio

from .batching import Coalescer
from .engine import Engine, Run
from .errors import (
    DurableExecutionError,
    DurableExecutionNotFoundError,
    DurableExecutionTimedOutError,
    error_info_from_exception,
)
from .events import EventKind, ExecutionRun
from .heartbeat import heartbeat_loop
from .maintenance import change_loop, maintenance_loop, waiter_refresh_loop
from .metrics import unmetered
from .models import TaskRunContext
from .records import with_task_defaults
from .routing import Routes, claim_routed
from .status import ERRORED_TASK_EXECUTION_STATUSES
from .status import TaskExecutionStatus as S
from .steps import Outcome, StepContext, run_step
from .storage.contract import (
    ChangeNotifications,
    DuplicateSleepingTaskUniqueIdError,
    ExecutionRecord,
    RunCommit,
    StorageError,
)
from .tasks import TaskKind

log = logging.getLogger("durable.executor")


class Runner:
    """Claims due executions for one engine and runs each in ``run_nursery``.

    ``serve`` runs the claimer and the watchers until ``drain`` stops them; the runs themselves
    live in ``run_nursery``, so that they can finish (or be handed back) after claiming stopped.
    """

    def __init__(self, engine: Engine, run_nursery: trio.Nursery, routes: Routes,
                 worker_loops: Sequence[Callable[[], Awaitable[None]]] = ()):
        self._engine = engine
        self._routes = routes
        self._worker_loops = worker_loops
        """What a worker runs beside its claim loop until shutdown begins: retention, schedules."""
        self._run_nursery = run_nursery
        self._commits: Coalescer[RunCommit, None] = Coalescer(self._commit_batch)
        self._attempts: dict[str, int] = {}
        """The attempt of each run whose commit is under way, by execution id."""
        self._background = trio.CancelScope()
        self._grace = trio.CancelScope()
        self._heartbeats = trio.CancelScope()
        if engine.options.max_concurrent_task_executions > 0:
            engine.start_run = self._start_claimed_on_insert

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The maintenance loop (and the change feed's, if the storage has one), and for an
        executor that runs tasks the claim loop, its ``worker_loops`` (retention, schedules) and
        the heartbeats, which go on while ``drain`` waits.

        A permanent storage fault, noticed by any of them or by a run's commit, stops them all:
        the runs are handed back (as far as the storage still lets us) and the fault is raised,
        ending the executor.
        """
        engine = self._engine
        storage = engine.storage
        if engine.options.max_concurrent_task_executions > 0:
            self._run_nursery.start_soon(self._beat)
        with self._background:
            try:
                async with trio.open_nursery() as nursery:
                    if engine.options.max_concurrent_task_executions > 0:  # a client claims nothing
                        nursery.start_soon(self.claim_loop)
                        for loop in self._worker_loops:
                            nursery.start_soon(loop)
                    nursery.start_soon(maintenance_loop, engine)
                    feed = unmetered(storage)
                    if storage.capabilities.change_notifications and isinstance(feed, ChangeNotifications):
                        nursery.start_soon(change_loop, engine, feed)
                        nursery.start_soon(waiter_refresh_loop, engine)
                    nursery.start_soon(self._stop_on_permanent_fault, nursery.cancel_scope)
                    task_status.started()
            except* StorageError:
                if engine.faults.permanent is None:
                    raise
        if engine.faults.permanent is not None:
            self._hand_back_all()
            raise engine.faults.permanent

    async def _stop_on_permanent_fault(self, loops: trio.CancelScope) -> None:
        await self._engine.faults.stopped.wait()
        loops.cancel()

    async def _beat(self) -> None:
        with self._heartbeats:
            await heartbeat_loop(self._engine)

    async def drain(self, timeout: float) -> None:
        """Stop claiming, give running tasks ``timeout`` seconds (or until ``cut_grace_short``),
        then hand the rest back."""
        engine = self._engine
        self._background.cancel()
        self._grace.deadline = trio.current_time() + timeout
        try:
            with self._grace:
                while engine.runs or engine.claiming_on_insert:
                    engine.capacity_freed.clear()
                    await engine.capacity_freed.wait()
        finally:
            engine.start_run = None  # the run nursery closes next
            self._hand_back_all()
            self._heartbeats.cancel()

    def cut_grace_short(self) -> None:
        """End the grace period of ``drain`` now; called before it, ``drain`` gives none."""
        self._grace.cancel()

    def _hand_back_all(self) -> None:
        """Cut every run off: each hands its execution back to ``ready``."""
        for run in self._engine.runs.values():
            run.hand_back = True
            run.scope.cancel()

    async def claim_loop(self) -> None:
        engine, options = self._engine, self._engine.options
        while True:
            engine.claimer_looks()
            limit = min(engine.free_slots, options.max_task_executions_per_batch)
            claimed: list[ExecutionRecord] = []
            if engine.next_ready_at <= engine.now():  # due: claimed now, or when capacity frees
                engine.next_ready_at = math.inf
            if limit > 0:
                engine.claiming = limit
                try:
                    claimed = await engine.faults.call("claiming executions", lambda: claim_routed(
                        engine, self._routes, limit))
                finally:
                    engine.claiming = 0
                renew_until = trio.current_time() + options.expire_leeway
                for record in claimed:
                    if record.deferred_options:
                        record = self._with_task_defaults(record)
                    self._start(record, renew_until)
            engine.claimer_caught_up = len(claimed) < limit
            if limit > 0 and len(claimed) == limit:
                await trio.lowlevel.checkpoint()
                continue
            wake_at = min(trio.current_time() + options.poll_interval, engine.clock.to_trio(engine.next_ready_at))
            with trio.move_on_at(wake_at):
                await engine.wake_claimer.wait()

    def _start(self, record: ExecutionRecord, renew_until: float) -> None:
        run = Run(record, renew_until + record.timeout)
        self._engine.claimed(run)
        self._run_nursery.start_soon(self._execute, run)

    def _start_claimed_on_insert(self, record: ExecutionRecord) -> None:
        self._start(record, trio.current_time() + self._engine.options.expire_leeway)

    def _with_task_defaults(self, record: ExecutionRecord) -> ExecutionRecord:
        """A client's enqueue completed with the defaults of the task as defined here."""
        try:
            return with_task_defaults(record, self._engine.get_task(record.task_id))
        except DurableExecutionNotFoundError:
            return record  # _perform fails it: no such task here

    async def _execute(self, run: Run) -> None:
        """Run a claimed execution, inside the plugins' ``durable_wrap_run`` if any."""
        engine, record = self._engine, run.record
        if not engine.plugins.wraps_runs:
            await self._work(run, None)
            return
        outcome = ExecutionRun(
            record.task_id, record.execution_id, record.retry_attempts, record.root, record.parent,
            record.context, engine.executor_id, record.start_at if record.status is S.RUNNING else None,
            record.updated_at,
        )
        with engine.plugins.wrap_run(outcome):
            await self._work(run, outcome)

    async def _work(self, run: Run, outcome: ExecutionRun | None) -> None:
        """Do the claimed work and commit it, or hand the execution back; ``outcome`` gets the
        stored status and error."""
        engine, record = self._engine, run.record
        commit = None
        try:
            with run.scope:
                commit = await self._perform(run)
            if run.scope.cancelled_caught and not run.revoked and not run.hand_back:  # its deadline
                commit = StepContext(engine, record, engine.get_task(record.task_id)).fail(
                    DurableExecutionTimedOutError().to_info()
                )
            if commit is not None and not run.revoked and not run.hand_back:
                # once shutdown cut the run off, retrying its commit would hold up the shutdown
                run.committing = True
                await self._commit(commit, record.retry_attempts,
                                   lambda: trio.current_time() if run.hand_back else self._lease_ends(run))
                if outcome is not None:
                    outcome.status, outcome.error = commit.record.status, commit.record.error
                _log_failure(record, commit.record, engine.now())
        except StorageError as exc:
            if engine.faults.permanent is None:  # else the executor stops and says why
                log.warning("the outcome of %s %s could not be recorded before its lease ended (%s); it "
                            "will run again", record.task_id, record.execution_id, exc.message)
        except Exception:
            log.exception("internal error while running %s %s; its lease will expire and it will be "
                          "retried", record.task_id, record.execution_id)
        finally:
            if run.hand_back and not run.revoked:
                with trio.CancelScope(shield=True):
                    await self._hand_back(run)
            if engine.runs.get(record.execution_id) is run:  # a parent may be re-claimed already
                del engine.runs[record.execution_id]
            engine.capacity_freed.set()
            if not engine.claimer_caught_up:  # it may have left due records for want of a slot
                engine.wake_claimer.set()

    def _lease_ends(self, run: Run) -> float:
        """The trio time at which ``run``'s lease ends: retrying its writes is pointless after."""
        expires_at = run.lease_expires_at
        return math.inf if expires_at is None else self._engine.clock.to_trio(expires_at)

    async def _hand_back(self, run: Run) -> None:
        """Hand ``run``'s execution back to ``ready``, retrying a transient fault for at most
        ``shutdown_timeout`` (and while the lease holds); if that fails, its lease expires."""
        engine, record = self._engine, run.record
        give_up_at = min(trio.current_time() + engine.options.shutdown_timeout, self._lease_ends(run))
        try:
            changes = await engine.faults.call(
                "handing executions back", lambda: engine.storage.release_leases([record.lease], engine.now()),
                until=lambda: give_up_at)
        except StorageError as exc:
            log.log(logging.DEBUG if engine.faults.permanent else logging.WARNING,
                    "could not hand %s %s back (%s); its lease will expire and it will run again",
                    record.task_id, record.execution_id, exc.message)
            return
        engine.observe(EventKind.RELEASED, changes)

    async def _perform(self, run: Run) -> RunCommit | None:
        """Do the claimed work and return the commit that records it (None if it was cut off).

        A run's timeout is the deadline of ``run.scope`` while the user's function runs (one
        cancel scope per run, not two); each commit is built after the work, so that its
        ``finished_at`` is when the work finished.
        """
        engine, record = self._engine, run.record
        try:
            task = engine.get_task(record.task_id)
        except DurableExecutionNotFoundError as exc:
            return StepContext(engine, record, None).fail(exc.to_info())
        if record.status is not S.RUNNING:
            return await run_step(StepContext(engine, record, task))
        if record.start_at > engine.now():  # claimed before the task's own sleep_before_run, which
            # its enqueuer did not know (records.with_task_defaults): back to ready until then
            return RunCommit(record.copy(status=S.READY, ready_at=record.start_at, started_at=None,
                                             executor_id=None))
        if task.kind is TaskKind.SLEEPING and not record.is_sleeping:
            return StepContext(engine, record, task).fail(DurableExecutionError(
                f"Sleeping task {task.id} cannot be enqueued by a client without its definition; enqueue "
                "it from an executor that defines it, or as a child of a parent task", is_retryable=False,
            ).to_info())
        try:
            value = engine.codec.decode(record.input)
            if task.validator is not None:  # validators are quick: run inline, no thread hop
                value = task.validator(value)
                if inspect.isawaitable(value):
                    value = await value
        except Exception as exc:
            return StepContext(engine, record, task).fail(
                error_info_from_exception(exc, prefix=f"Invalid input to task {task.id}"), retryable=False)
        if task.kind not in (TaskKind.TASK, TaskKind.PARENT):
            return await run_step(StepContext(engine, record, task), value)
        ctx = TaskRunContext(
            task_id=task.id, execution_id=record.execution_id, attempt=record.retry_attempts,
            prev_error=record.error, root=record.root, parent=record.parent,
            shutdown_event=engine.shutdown_event,
        )
        assert task.run is not None
        run.scope.deadline = trio.current_time() + record.timeout  # see _execute: a timeout
        try:
            result = await engine.call(task.run, ctx, value)
        except Exception as exc:
            return StepContext(engine, record, task).fail(error_info_from_exception(exc))
        finally:
            run.scope.deadline = math.inf
        return await run_step(StepContext(engine, record, task), value, Outcome(result))

    async def _commit_batch(self, commits: Sequence[RunCommit]) -> list[None]:
        engine = self._engine
        now = engine.now()
        with engine.committing(commits):
            changes = await engine.storage.commit_runs(commits, now)
            # what the contract says a commit stores, for the handles waiting on it
            stored = {c.record.execution_id: c.record.copy(lease_expires_at=None, updated_at=now)
                      for c in commits if c.record.execution_id in engine.waiters}
            engine.observe(EventKind.COMMITTED, changes, stored,
                           {c.record.execution_id: c.record.error for c in commits}, self._attempts)
        return [None] * len(commits)

    async def _commit(self, commit: RunCommit, attempt: int, lease_ends: Callable[[], float]) -> None:
        """Commit with the other runs finishing in this tick; one inserting sleeping executions
        goes alone, as the contract asks (a taken unique id fails the whole call). A transient
        storage fault is retried until the lease ends (``lease_ends``, in trio time). ``attempt``
        is the run's, for its event (the execution may be claimed again before the commit returns)."""
        engine = self._engine
        self._attempts[commit.record.execution_id] = attempt
        try:
            await self._store(commit, lease_ends)
        finally:
            del self._attempts[commit.record.execution_id]
        for record in commit.new_executions:
            engine.note_ready_at(record.ready_at)
        if commit.record.ready_at is not None:
            engine.note_ready_at(commit.record.ready_at)

    async def _store(self, commit: RunCommit, lease_ends: Callable[[], float]) -> None:
        engine = self._engine
        if not any(record.is_sleeping for record in commit.new_executions):
            await engine.faults.call("recording outcomes", lambda: self._commits.submit(commit), until=lease_ends)
        else:
            try:
                await engine.faults.call("recording outcomes", lambda: self._commit_batch([commit]), until=lease_ends)
            except DuplicateSleepingTaskUniqueIdError as exc:  # a child's unique id is taken: the parent fails
                failed = commit.record.copy(status=S.FAILED, error=exc.to_info(), finished_at=engine.now(),
                                            ready_at=None)
                await engine.faults.call("recording outcomes", lambda: self._commit_batch([RunCommit(failed)]),
                                         until=lease_ends)


def _log_failure(claimed: ExecutionRecord, committed: ExecutionRecord, now: float) -> None:
    """One line for a run that ended in an error: retried (when, which retry) or not (its status)."""
    error = committed.error
    if error is None or committed.status not in (S.READY, *ERRORED_TASK_EXECUTION_STATUSES):
        return
    failed = (f"task {claimed.task_id} execution {claimed.execution_id} attempt {claimed.retry_attempts} "
              f"failed: {error.message}")
    fields = {"task_id": claimed.task_id, "execution_id": claimed.execution_id,
              "attempt": claimed.retry_attempts, "status": committed.status, "error": error}
    if committed.status is S.READY:
        log.info("%s; retrying in %g s (retry %d of %d)", failed, committed.start_at - now,
                 committed.retry_attempts, committed.retry.max_attempts, extra=fields)
    else:
        log.warning("%s; not retried (status %s)", failed, committed.status, extra=fields)
