"""Execution statuses and the sets users filter by."""

from enum import StrEnum


class TaskExecutionStatus(StrEnum):
    READY = "ready"
    RUNNING = "running"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    WAITING_FOR_CHILDREN = "waiting_for_children"
    WAITING_FOR_FINALIZE = "waiting_for_finalize"
    FINALIZE_FAILED = "finalize_failed"
    COMPLETED = "completed"
    CANCELLED = "cancelled"

    @property
    def is_finished(self) -> bool:
        return self in FINISHED_TASK_EXECUTION_STATUSES


ALL_TASK_EXECUTION_STATUSES: tuple[TaskExecutionStatus, ...] = tuple(TaskExecutionStatus)
ACTIVE_TASK_EXECUTION_STATUSES: frozenset[TaskExecutionStatus] = frozenset(
    {
        TaskExecutionStatus.READY,
        TaskExecutionStatus.RUNNING,
        TaskExecutionStatus.WAITING_FOR_CHILDREN,
        TaskExecutionStatus.WAITING_FOR_FINALIZE,
    }
)
FINISHED_TASK_EXECUTION_STATUSES: frozenset[TaskExecutionStatus] = frozenset(
    {
        TaskExecutionStatus.FAILED,
        TaskExecutionStatus.TIMED_OUT,
        TaskExecutionStatus.FINALIZE_FAILED,
        TaskExecutionStatus.COMPLETED,
        TaskExecutionStatus.CANCELLED,
    }
)
ERRORED_TASK_EXECUTION_STATUSES: frozenset[TaskExecutionStatus] = (
    FINISHED_TASK_EXECUTION_STATUSES - {TaskExecutionStatus.COMPLETED}
)
