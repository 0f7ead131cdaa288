"""The structured event emitted, through ``durable_task_execution_event``, for every state change."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .errors import ErrorInfo
from .status import TaskExecutionStatus


class EventKind(enum.StrEnum):
    """What made an execution change (docs/plugins.md lists them with their meaning).

    A change caused by another one is reported with the kind of its cause: a parent moved along
    by its last child's commit, or descendants cancelled with their ancestor, are ``committed``
    (or ``cancelled``, ``expired``...) like the change that caused them.
    """

    ENQUEUED = "enqueued"
    """A new execution was stored: enqueued, or created by its parent as a child or finalize."""
    CLAIMED = "claimed"
    """An executor took the execution to run it (``ready`` → ``running``)."""
    COMMITTED = "committed"
    """A run's outcome was stored: finished, retried, waiting for children or for finalize."""
    RELEASED = "released"
    """Handed back to ``ready`` by an executor shutting down."""
    EXPIRED = "expired"
    """Its lease expired: back to ``ready``, or failed after too many expiries."""
    CANCELLED = "cancelled"
    """Cancelled by ``handle.cancel()`` (or with a cancelled ancestor)."""
    WOKEN = "woken"
    """A sleeping task was woken up (``wakeup_sleeping_task_execution``)."""
    RETRIED = "retried"
    """An execution that ended with an error was made ``ready`` again (``durable executions retry``)."""


@dataclass(frozen=True, slots=True)
class TaskExecutionEvent:
    """One stored state change of one execution; ``kind`` says what made it (see ``EventKind``)."""

    kind: EventKind
    execution_id: str
    task_id: str
    previous_status: TaskExecutionStatus | None
    status: TaskExecutionStatus
    at: float
    executor_id: str
    error: ErrorInfo | None = None
