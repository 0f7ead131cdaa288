"""The structured event emitted, through ``durable_task_execution_event``, for every state change."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import ErrorInfo
from .models import ExecutionRef, ParentRef
from .status import TaskExecutionStatus

if TYPE_CHECKING:
    from .storage.contract import StatusChange


class EventKind(enum.StrEnum):
    """What made an execution change (docs/plugins.md lists them with their meaning).

    A change that the storage made because another execution finished in the same call — its
    parent moved along, its unfinished descendants cancelled — is ``closed``.
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
    CLOSED = "closed"
    """Changed because another execution finished: a parent that one of its children (or its
    finalize) moved along, or a descendant cancelled with an ancestor that ended without completing."""


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
    """The error the change stored for the execution it acted on (docs/plugins.md says which)."""
    attempt: int | None = None
    """The attempt (0 the first) of the run of this executor that the change started, ended or
    cut off; None when this executor was not running the execution."""


@dataclass(slots=True)
class ExecutionRun:
    """One run of an execution by this executor, as ``durable_wrap_run`` sees it."""

    task_id: str
    execution_id: str
    attempt: int
    """0 for the first run; a parent's visit after its children keeps the attempt of its run."""
    root: ExecutionRef | None
    parent: ParentRef | None
    context: Mapping[str, str] | None
    """What ``durable_execution_context`` gave when the execution was created."""
    executor_id: str
    due_at: float | None
    """When it became due to run (engine time): its enqueue, or the end of its retry delay or
    ``sleep_before_run``; None for a parent's visit after its children (not stored)."""
    claimed_at: float
    """When this executor claimed it (engine time)."""
    status: TaskExecutionStatus | None = None
    """The status its outcome was stored with; None until then, and if the run was cut off
    (handed back at shutdown, its lease lost, or cancelled)."""
    error: ErrorInfo | None = None
    """The error stored with that outcome."""


def kind_and_error(kind: EventKind, change: StatusChange,
                   acted_on: Mapping[str, ErrorInfo | None] | None) -> tuple[EventKind, ErrorInfo | None]:
    """The kind and error of the event for ``change``, one of the changes of a storage call made
    for ``kind``. ``acted_on`` maps each execution the call acted on to the error it stored (None
    when the call acts on every execution it changes): any other execution it changed was closed."""
    if change.previous_status is None:
        return EventKind.ENQUEUED, None
    if acted_on is None:
        return kind, None
    if change.execution_id in acted_on:
        return kind, acted_on[change.execution_id]
    return EventKind.CLOSED, None
