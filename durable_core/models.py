"""Value types users see: retry options, references, execution snapshots, finalize input."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .errors import ErrorInfo
from .status import TaskExecutionStatus

if TYPE_CHECKING:
    import trio


def _check_number(owner: str, name: str, value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ValueError(f"{owner}: {name} must be a number, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{owner}: {name} must be between {low:g} and {high:g}, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class RetryOptions:
    """How often and how late a failed run is retried.

    ``max_attempts`` counts retries (a task runs at most ``max_attempts + 1`` times). After failure
    ``k`` (0 for the first) the next attempt starts ``min(base_delay * delay_multiplier**k,
    max_delay)`` seconds later.
    """

    max_attempts: int = 0
    base_delay: float = 0.0
    delay_multiplier: float = 1.0
    max_delay: float | None = None

    def __post_init__(self) -> None:
        owner = "Invalid retry options"
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise ValueError(f"{owner}: max_attempts must be an integer, got {self.max_attempts!r}")
        _check_number(owner, "max_attempts", self.max_attempts, 0, 1000)
        _check_number(owner, "base_delay", self.base_delay, 0, 3600)
        _check_number(owner, "delay_multiplier", self.delay_multiplier, 0.1, 10)
        if self.max_delay is not None:
            _check_number(owner, "max_delay", self.max_delay, 0, 86400)
            if self.max_delay < self.base_delay:
                raise ValueError(
                    f"{owner}: max_delay ({self.max_delay!r}) must be at least base_delay "
                    f"({self.base_delay!r})"
                )

    def delay_after_failure(self, k: int) -> float:
        """Seconds to wait before the retry that follows failure ``k`` (0 for the first)."""
        delay = self.base_delay * self.delay_multiplier**k
        return delay if self.max_delay is None else min(delay, self.max_delay)


@dataclass(frozen=True, slots=True)
class ExecutionRef:
    """Identifies one execution: the task it runs and its id."""

    task_id: str
    execution_id: str


@dataclass(frozen=True, slots=True)
class ParentRef:
    """Where an execution sits in its parent: which child it is, or whether it is the finalize."""

    task_id: str
    execution_id: str
    index_in_parent_children: int
    is_finalize_of_parent: bool = False


@dataclass(frozen=True, slots=True)
class TaskExecution:
    """A snapshot of one execution as stored. Fields that do not apply to its status are None."""

    task_id: str
    execution_id: str
    status: TaskExecutionStatus
    input: Any
    output: Any
    error: ErrorInfo | None
    retry_attempts: int
    root: ExecutionRef | None
    parent: ParentRef | None
    children: tuple[ExecutionRef, ...]
    finalize: ExecutionRef | None
    created_at: datetime
    updated_at: datetime
    start_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    expires_at: datetime | None
    waiting_for_children_started_at: datetime | None = None
    waiting_for_finalize_started_at: datetime | None = None
    sleeping_task_unique_id: str | None = None


@dataclass(frozen=True, slots=True)
class TaskRunContext:
    """What a run function knows about the execution it runs."""

    task_id: str
    execution_id: str
    attempt: int
    prev_error: ErrorInfo | None
    root: ExecutionRef | None
    parent: ParentRef | None
    shutdown_event: trio.Event


@dataclass(frozen=True, slots=True)
class FinishedChildTaskExecution:
    """One child's outcome as seen by finalize; ``error`` is set unless ``status`` is completed."""

    task_id: str
    execution_id: str
    status: TaskExecutionStatus
    output: Any = None
    error: ErrorInfo | None = None


@dataclass(frozen=True, slots=True)
class FinalizeInput:
    """What finalize receives: the parent's input and output, and every child's outcome in order."""

    input: Any
    output: Any
    children: list[FinishedChildTaskExecution]
