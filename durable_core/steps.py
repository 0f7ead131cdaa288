"""What a claimed execution's work turns into: the next state of its record, as a fenced commit.

A run of a plain task completes, fails or is retried. A parent kind (parent, sequential, looping)
spawns children; once they have all finished the parent is claimed again and its *children-done
step* decides: spawn a finalize, the next element of a sequence or the next iteration of a loop,
or finish the parent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from .errors import DurableExecutionError, ErrorInfo, describe_exception, error_info_from_exception
from .models import ExecutionRef, FinalizeInput, FinishedChildTaskExecution, ParentRef
from .options import ExecutorOptions
from .payloads import PayloadCodec
from .records import new_record
from .status import TaskExecutionStatus as S
from .storage.contract import ExecutionRecord, Payload, RunCommit
from .tasks import ChildTask, ParentTaskResult, Task, TaskKind

_STATUS_OF_ERROR = {"timed_out": S.TIMED_OUT, "cancelled": S.CANCELLED}


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the user's run function returned."""

    value: Any


class StepEngine(Protocol):
    """What building a commit needs from the running executor (``Engine`` implements it)."""

    options: ExecutorOptions
    codec: PayloadCodec

    def now(self) -> float: ...

    def get_task(self, task: Task | str) -> Task:
        """The defined task; ``DurableExecutionNotFoundError`` if this executor has none."""
        ...

    async def get_executions(self, execution_ids: Sequence[str]) -> list[ExecutionRecord | None]: ...

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Call user code (a finalize function)."""
        ...

    def execution_context(self) -> dict[str, str] | None:
        """What plugins keep with a new execution created now (``durable_execution_context``)."""
        ...


class StepContext:
    """Builds the commits for one claimed record."""

    def __init__(self, engine: StepEngine, record: ExecutionRecord, task: Task | None):
        self.engine = engine
        self.record = record
        self.task = task
        self.now = engine.now()

    def _commit(self, new_executions: tuple[ExecutionRecord, ...] = (), **changes: Any) -> RunCommit:
        return RunCommit(self.record.copy(**changes), new_executions)

    def fail(self, error: ErrorInfo, *, retryable: bool = True,
             status: S | None = None) -> RunCommit:
        """Retry the run if the error allows and attempts remain, else finish it as errored."""
        record = self.record
        if status is None and retryable and error.is_retryable and record.status is S.RUNNING \
                and record.retry_attempts < record.retry.max_attempts:
            start_at = self.now + record.retry.delay_after_failure(record.retry_attempts)
            return self._commit(status=S.READY, error=error, retry_attempts=record.retry_attempts + 1,
                                start_at=start_at, ready_at=start_at, executor_id=None)
        if not retryable and error.is_retryable:
            error = replace(error, is_retryable=False)
        if status is None:
            status = _STATUS_OF_ERROR.get(error.error_type, S.FAILED)
        return self._commit(status=status, error=error, finished_at=self.now, ready_at=None)

    def finalize_failed(self, message: str) -> RunCommit:
        return self.fail(ErrorInfo("generic", message, is_retryable=False), status=S.FINALIZE_FAILED)

    def complete(self, output: Payload) -> RunCommit:
        return self._commit(status=S.COMPLETED, output=output, error=None, finished_at=self.now, ready_at=None)

    def encode_output(self, value: Any) -> Payload:
        return self.engine.codec.encode(value, self.record.task_id, "output")

    def child(self, task: Task, index: int, *, input: Any = None, payload: Payload | None = None,
              is_finalize: bool = False, **options: Any) -> ExecutionRecord:
        """A child (or finalize) of this run's record, at its task's priority or its parent's if
        higher: an urgent workflow's steps are urgent too."""
        record = self.record
        return new_record(
            task, input, self.now, self.engine.codec, payload=payload, priority=max(task.priority, record.priority),
            root=record.root or ExecutionRef(record.task_id, record.execution_id),
            parent=ParentRef(record.task_id, record.execution_id, index, is_finalize),
            context=self.engine.execution_context(), **options,
        )

    def spawn(self, children: list[ExecutionRecord], **changes: Any) -> RunCommit:
        """Wait for ``children`` (appended to those already spawned)."""
        refs = tuple(ExecutionRef(c.task_id, c.execution_id) for c in children)
        if changes.get("status") is not S.WAITING_FOR_FINALIZE:
            changes.setdefault("status", S.WAITING_FOR_CHILDREN)
            changes["children"] = self.record.children + refs
            if self.record.waiting_for_children_started_at is None:
                changes["waiting_for_children_started_at"] = self.now
        return self._commit(tuple(children), active_children_count=len(children), ready_at=None,
                            error=None, **changes)


async def run_step(step: StepContext, value: Any = None, outcome: Outcome | None = None) -> RunCommit:
    """The commit for ``step.record``'s work: a finished run (``outcome``) or a children-done step."""
    try:
        return await _next(step, value, outcome)
    except Exception as exc:  # anything unforeseen ends the execution: never a lease-expiry loop
        if isinstance(exc, UnusableChildrenError) or step.record.status is S.RUNNING:
            status = None
        else:
            status = S.FINALIZE_FAILED
        return step.fail(error_info_from_exception(exc), retryable=False, status=status)


async def _next(step: StepContext, value: Any, outcome: Outcome | None) -> RunCommit:
    record, task = step.record, step.task
    assert task is not None
    if record.status is S.WAITING_FOR_FINALIZE:
        return await _finalize_done(step)
    if record.status is S.WAITING_FOR_CHILDREN:
        return await _CHILDREN_DONE[task.kind](step)
    if task.kind is TaskKind.TASK:
        return step.complete(step.encode_output(outcome.value if outcome else None))
    if task.kind is TaskKind.PARENT:
        return await _parent_ran(step, outcome.value if outcome else None)
    # sequences and loops start with their first child, on the sequence's own input
    first = task.steps[0]
    options = {} if task.kind is TaskKind.SEQUENTIAL else _iteration_options(task, 0)
    return step.spawn([step.child(first, 0, payload=record.input, **options)])


async def _parent_ran(step: StepContext, result: Any) -> RunCommit:
    task = step.task
    assert task is not None
    if not isinstance(result, ParentTaskResult):
        return step.fail(ErrorInfo("generic", f"Parent task {task.id} must return ParentTaskResult, "
                                   f"got {type(result).__name__}", False))
    limit = step.engine.options.max_children_per_task_execution
    if len(result.children) > limit:
        return step.fail(ErrorInfo(
            "generic", f"Parent task {task.id} returned {len(result.children)} children, more than the "
            f"limit of {limit} (executor option max_children_per_task_execution)", False))
    run_output = step.encode_output(result.output)
    children = [_child_of(step, i, c) for i, c in enumerate(result.children)]
    if children:
        return step.spawn(children, run_output=run_output)
    step.record = step.record.copy(run_output=run_output)
    return await _parent_children_done(step, [])


def _child_of(step: StepContext, index: int, child: ChildTask) -> ExecutionRecord:
    if not isinstance(child, ChildTask):
        raise DurableExecutionError(f"Children of task {step.record.task_id} must be made with "
                                    f"child_task(...), got {type(child).__name__}", is_retryable=False)
    task = step.engine.get_task(child.task)
    return step.child(task, index, input=child.input, retry=child.retry,
                      sleep_before_run=child.sleep_before_run, timeout=child.timeout)


async def _children(step: StepContext, refs: tuple[ExecutionRef, ...]) -> list[ExecutionRecord]:
    records = await step.engine.get_executions([r.execution_id for r in refs])
    found = [record for record in records if record is not None]
    if len(found) < len(records):
        raise UnusableChildrenError("Some children task executions not found")
    return found


class UnusableChildrenError(DurableExecutionError):
    """Children the parent cannot go on with (missing, or an output that cannot be read): the
    parent itself fails, as no finalize ran."""

    def __init__(self, message: str) -> None:
        super().__init__(message, is_retryable=False)


def _finished_child(step: StepContext, child: ExecutionRecord) -> FinishedChildTaskExecution:
    if child.status is S.COMPLETED:
        output = None if child.output is None else _decode_output(step, child)
        return FinishedChildTaskExecution(child.task_id, child.execution_id, child.status, output=output)
    error = child.error or ErrorInfo(
        "generic", f"Unknown child task execution error [childTaskId={child.task_id}]", False)
    return FinishedChildTaskExecution(child.task_id, child.execution_id, child.status, error=error)


def _decode_output(step: StepContext, child: ExecutionRecord) -> Any:
    assert child.output is not None
    try:
        return step.engine.codec.decode(child.output)
    except Exception as exc:
        raise UnusableChildrenError(f"Cannot read the output of child task {child.task_id} "
                                f"[executionId={child.execution_id}]: {describe_exception(exc)}") from exc


def _error_message(child: ExecutionRecord) -> str:
    return child.error.message if child.error else "Unknown error"


async def _parent_children_done(step: StepContext, records: list[ExecutionRecord] | None = None) -> RunCommit:
    record, task, codec = step.record, step.task, step.engine.codec
    assert task is not None
    if records is None:
        records = await _children(step, record.children)
    children = [_finished_child(step, c) for c in records]
    output = codec.decode(record.run_output) if record.run_output is not None else None
    finalize = task.finalize
    if finalize is None:
        return step.complete(step.encode_output({"output": output, "children": children}))
    finalize_input = FinalizeInput(codec.decode(record.input), output, children)
    if isinstance(finalize, Task):
        child = step.child(step.engine.get_task(finalize), 0, input=finalize_input, is_finalize=True)
        return step.spawn([child], status=S.WAITING_FOR_FINALIZE, waiting_for_finalize_started_at=step.now,
                          finalize=ExecutionRef(child.task_id, child.execution_id))
    step.record = record.copy(waiting_for_finalize_started_at=step.now)
    try:
        result = await step.engine.call(finalize, finalize_input)
    except Exception as exc:
        return step.fail(error_info_from_exception(exc), retryable=False, status=S.FINALIZE_FAILED)
    return step.complete(step.encode_output(result))


async def _finalize_done(step: StepContext) -> RunCommit:
    record = step.record
    assert record.finalize is not None
    (child,) = await _children(step, (record.finalize,))
    if child.status is S.COMPLETED and child.output is not None:
        return step.complete(child.output)
    error = child.error or ErrorInfo("generic", f"Finalize task execution ended {child.status}", False)
    return step.fail(error, retryable=False, status=S.FINALIZE_FAILED)


async def _sequence_child_done(step: StepContext) -> RunCommit:
    record, task = step.record, step.task
    assert task is not None
    index = len(record.children) - 1
    (last,) = await _children(step, record.children[-1:])
    if last.status is not S.COMPLETED or last.output is None:
        return step.finalize_failed(
            f"Sequential task failed [parentTaskId={task.id}] [index={index}]: {_error_message(last)}")
    if index + 1 == len(task.steps):
        return step.complete(last.output)
    return step.spawn([step.child(task.steps[index + 1], index + 1, payload=last.output)])


async def _iteration_done(step: StepContext) -> RunCommit:
    record, task = step.record, step.task
    assert task is not None
    iteration = task.steps[0]
    (last,) = await _children(step, record.children[-1:])
    if last.status is not S.COMPLETED or last.output is None:
        return step.finalize_failed(f"Iteration task failed [taskId={iteration.id}]: {_error_message(last)}")
    result = _decode_output(step, last)
    if not isinstance(result, dict) or not isinstance(result.get("is_done"), bool):
        return step.finalize_failed(
            f"Iteration task {iteration.id} must return {{'is_done': bool, 'output': ...}}, got {result!r}")
    if result["is_done"]:
        return step.complete(step.encode_output({"is_success": True, "output": result.get("output")}))
    attempt = len(record.children)
    if attempt >= task.max_attempts:
        return step.complete(step.encode_output({"is_success": False}))
    child = step.child(iteration, attempt, payload=record.input, **_iteration_options(task, attempt))
    return step.spawn([child])


def _iteration_options(task: Task, attempt: int) -> dict[str, Any]:
    sleep = task.iteration_sleep
    if sleep is None:
        return {}
    return {"sleep_before_run": sleep(attempt) if callable(sleep) else sleep}


_CHILDREN_DONE = {
    TaskKind.PARENT: _parent_children_done,
    TaskKind.SEQUENTIAL: _sequence_child_done,
    TaskKind.LOOPING: _iteration_done,
}
