"""The structured event emitted, through ``durable_task_execution_event``, for every state change."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ErrorInfo
from .status import TaskExecutionStatus


@dataclass(frozen=True, slots=True)
class TaskExecutionEvent:
    """One stored state change of one execution.

    ``kind`` says what happened: ``enqueued``, ``claimed``, ``committed`` (a run's outcome),
    ``released`` (handed back at shutdown), ``expired``, ``cancelled``, ``woken`` or ``closed``
    (moved along by a child finishing or an ancestor ending).
    """

    kind: str
    execution_id: str
    task_id: str
    previous_status: TaskExecutionStatus | None
    status: TaskExecutionStatus
    at: float
    executor_id: str
    error: ErrorInfo | None = None
