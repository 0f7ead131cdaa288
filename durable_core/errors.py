"""Errors raised to users and the ``ErrorInfo`` shape in which errors are stored."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ErrorType = Literal["generic", "not_found", "timed_out", "cancelled"]


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """An error as stored with an execution: no traceback, no cause, only what survives a restart."""

    error_type: ErrorType
    message: str
    is_retryable: bool
    is_internal: bool = False


class DurableExecutionError(Exception):
    """Base of every error the engine raises; task code may raise it to control retries."""

    error_type: ErrorType = "generic"

    def __init__(self, message: str, *, is_retryable: bool = True, is_internal: bool = False):
        super().__init__(message)
        self.message = message
        self.is_retryable = is_retryable
        self.is_internal = is_internal

    @classmethod
    def retryable(cls, message: str, *, is_internal: bool = False) -> DurableExecutionError:
        return DurableExecutionError(message, is_retryable=True, is_internal=is_internal)

    @classmethod
    def non_retryable(cls, message: str, *, is_internal: bool = False) -> DurableExecutionError:
        return DurableExecutionError(message, is_retryable=False, is_internal=is_internal)

    def to_info(self) -> ErrorInfo:
        return ErrorInfo(self.error_type, self.message, self.is_retryable, self.is_internal)


class DurableExecutionNotFoundError(DurableExecutionError):
    """A task, execution or plugin that does not exist; never retried."""

    error_type: ErrorType = "not_found"

    def __init__(self, message: str):
        super().__init__(message, is_retryable=False)


class DurableExecutionTimedOutError(DurableExecutionError):
    """A run that exceeded its timeout; retried while attempts remain."""

    error_type: ErrorType = "timed_out"

    def __init__(self, message: str = "Task execution timed out"):
        super().__init__(message, is_retryable=True)


class DurableExecutionCancelledError(DurableExecutionError):
    """A cancelled execution; never retried."""

    error_type: ErrorType = "cancelled"

    def __init__(self, message: str = "Task execution cancelled"):
        super().__init__(message, is_retryable=False)


def error_info_from_exception(exc: BaseException, *, prefix: str | None = None) -> ErrorInfo:
    """Convert anything user code raised into the stored shape.

    Durable errors keep their type and flags; any other exception is a retryable generic error.
    """
    if isinstance(exc, DurableExecutionError):
        info = exc.to_info()
    else:
        message = str(exc) or type(exc).__name__
        info = ErrorInfo("generic", message, is_retryable=True)
    if prefix:
        info = ErrorInfo(info.error_type, f"{prefix}: {info.message}", info.is_retryable, info.is_internal)
    return info


def execution_not_found(execution_id: str) -> DurableExecutionNotFoundError:
    """The error for an execution id that no storage record has."""
    return DurableExecutionNotFoundError(f"Task execution not found [executionId={execution_id}]")
