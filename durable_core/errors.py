"""Errors raised to users and the ``ErrorInfo`` shape in which errors are stored."""

from __future__ import annotations

import traceback as tb
from dataclasses import dataclass, replace
from typing import Literal

ErrorType = Literal["generic", "not_found", "timed_out", "cancelled"]

MESSAGE_LIMIT = 4096
"""Characters of an exception's message kept in its ``ErrorInfo`` (the start is kept)."""
TRACEBACK_LIMIT = 16384
"""Characters of a traceback kept in its ``ErrorInfo`` (the end, where the error is, is kept)."""


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """An error as stored with an execution: only what survives a restart, as plain text.

    ``type_name`` and ``traceback`` are set when an exception caused the error (None for the
    engine's own errors, such as an expired lease): the exception type's qualified name, e.g.
    ``builtins.KeyError``, and its formatted traceback, at most ``TRACEBACK_LIMIT`` characters.
    """

    error_type: ErrorType
    message: str
    is_retryable: bool
    is_internal: bool = False
    type_name: str | None = None
    traceback: str | None = None


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
    """Convert anything user code raised into the stored shape, never failing itself.

    Durable errors keep their type and flags; any other exception is a retryable generic error.
    Every one keeps its type's qualified name and its traceback; the text is made storable (an
    exception whose ``__str__`` raises, or whose message holds a lone surrogate or a NUL, is
    still recorded).
    """
    if isinstance(exc, DurableExecutionError):
        info = replace(exc.to_info(), message=_storable(str(exc.message))[:MESSAGE_LIMIT])
    else:
        info = ErrorInfo("generic", describe_exception(exc), is_retryable=True)
    if prefix:
        info = replace(info, message=f"{prefix}: {info.message}")
    return replace(info, type_name=qualified_type_name(exc), traceback=_traceback(exc))


def qualified_type_name(exc: BaseException) -> str:
    """``module.QualName`` of the exception's type, e.g. ``builtins.KeyError``."""
    kind = type(exc)
    return f"{kind.__module__}.{kind.__qualname__}"


def describe_exception(exc: BaseException) -> str:
    """A one-line message for any exception: its text, with its type where the text alone says
    little (empty, or only the key of a ``KeyError``), or why there is no text."""
    name = type(exc).__name__
    try:
        text = str(exc)
    except Exception as str_error:
        return f"{name} (its str() raised {type(str_error).__name__})"
    if not text:
        return name
    if isinstance(exc, KeyError):
        text = f"{name}: {text}"
    return _storable(text)[:MESSAGE_LIMIT]


def _traceback(exc: BaseException) -> str:
    """The formatted traceback, its end kept within ``TRACEBACK_LIMIT`` characters."""
    text = _storable("".join(tb.format_exception(exc)))
    if len(text) <= TRACEBACK_LIMIT:
        return text
    marker = f"[traceback truncated to its last {TRACEBACK_LIMIT} characters]\n"
    return marker + text[-(TRACEBACK_LIMIT - len(marker)):]


def _storable(text: str) -> str:
    """``text`` as every storage can keep it: valid UTF-8 (lone surrogates escaped), no NUL."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def execution_not_found(execution_id: str) -> DurableExecutionNotFoundError:
    """The error for an execution id that no storage record has."""
    return DurableExecutionNotFoundError(f"Task execution not found [executionId={execution_id}]")
