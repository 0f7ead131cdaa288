"""Handles to executions and the conversion of stored records into what users see."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .errors import DurableExecutionNotFoundError
from .models import TaskExecution
from .status import TaskExecutionStatus
from .storage.contract import ExecutionRecord, Payload

if TYPE_CHECKING:
    from .executor import DurableExecutor


def _datetime(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def to_task_execution(record: ExecutionRecord, decode: Callable[[Payload], Any]) -> TaskExecution:
    """The user's view of a record: payloads decoded, times as aware UTC datetimes."""
    completed = record.status is TaskExecutionStatus.COMPLETED
    return TaskExecution(
        task_id=record.task_id,
        execution_id=record.execution_id,
        status=record.status,
        input=decode(record.input),
        output=decode(record.output) if completed and record.output is not None else None,
        error=None if completed else record.error,
        retry_attempts=record.retry_attempts,
        root=record.root,
        parent=record.parent,
        children=record.children,
        finalize=record.finalize,
        created_at=_datetime(record.created_at),
        updated_at=_datetime(record.updated_at),
        start_at=_datetime(record.start_at),
        started_at=_datetime(record.started_at),
        finished_at=_datetime(record.finished_at),
        expires_at=_datetime(record.lease_expires_at)
        if record.status is TaskExecutionStatus.RUNNING
        else None,
        waiting_for_children_started_at=_datetime(record.waiting_for_children_started_at),
        waiting_for_finalize_started_at=_datetime(record.waiting_for_finalize_started_at),
        sleeping_task_unique_id=record.sleeping_unique_id,
    )


class TaskExecutionHandle:
    """A reference to one execution, usable from any executor sharing the storage."""

    def __init__(self, executor: DurableExecutor, task_id: str, execution_id: str):
        self._executor = executor
        self.task_id = task_id
        self.execution_id = execution_id

    def __repr__(self) -> str:
        return f"<TaskExecutionHandle {self.task_id} {self.execution_id}>"

    async def get_execution(self) -> TaskExecution:
        """The execution as stored now."""
        record = await self._executor._get_record(self.execution_id)
        return self._executor._to_task_execution(record)

    async def wait_and_get_finished_execution(self) -> TaskExecution:
        """Wait until the execution is finished and return it.

        Wakes at once when this executor finishes it; executions finished elsewhere are noticed
        by the executor's watcher, which reads every awaited execution in one batch per
        ``poll_interval`` (or at once, with a storage that has a change feed). Bound the wait
        with a trio cancel scope.
        """
        executor = self._executor
        while True:
            finish = executor._finish(self.execution_id)
            record = await executor._get_record(self.execution_id)
            if record.status.is_finished:
                executor._forget_finish(self.execution_id, finish)
                return executor._to_task_execution(record)
            await finish.event.wait()
            if finish.record is not None:
                return executor._to_task_execution(finish.record)

    async def cancel(self) -> None:
        """Cancel the execution and every unfinished descendant; no-op if already finished."""
        await self._executor._cancel([self.execution_id])


def execution_not_found(execution_id: str) -> DurableExecutionNotFoundError:
    return DurableExecutionNotFoundError(f"Task execution not found [executionId={execution_id}]")
