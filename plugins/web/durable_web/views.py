"""What the API answers: records and executors as JSON-ready dicts, and the list's cursor.

Pure functions of the stored records, so the handlers stay short and the dashboard, the API and
the server-sent events all show an execution the same way.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import json
import math
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from durable_core.errors import DurableExecutionError, ErrorInfo
from durable_core.models import ExecutionRef, ParentRef
from durable_core.storage import ExecutionRecord, ExecutorInfo, ListCursor, Payload, list_key


def iso(seconds: float | None) -> str | None:
    """A stored time as ISO 8601 UTC text (what JSON clients parse), None when not set."""
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC).isoformat()


def ref(reference: ExecutionRef | ParentRef | None) -> dict[str, str] | None:
    return None if reference is None else {"task_id": reference.task_id, "execution_id": reference.execution_id}


def error_json(error: ErrorInfo | None) -> dict[str, Any] | None:
    if error is None:
        return None
    return {"error_type": error.error_type, "message": error.message, "is_retryable": error.is_retryable,
            "is_internal": error.is_internal, "type_name": error.type_name, "traceback": error.traceback}


def summary(record: ExecutionRecord) -> dict[str, Any]:
    """A row of the list: no payloads (they may be large), what the table shows."""
    return {
        "execution_id": record.execution_id, "task_id": record.task_id, "status": str(record.status),
        "retry_attempts": record.retry_attempts, "created_at": iso(record.created_at),
        "updated_at": iso(record.updated_at), "finished_at": iso(record.finished_at),
        "parent": ref(record.parent), "executor_id": record.executor_id,
        "error": None if record.error is None else record.error.message,
    }


def detail(record: ExecutionRecord, decode: Callable[[Payload], Any]) -> dict[str, Any]:
    """One execution in full: payloads decoded (one that cannot be is shown as such), the error
    with its traceback, the attempts, every timestamp, the relatives."""
    completed = record.status == "completed"
    parent = None if record.parent is None else {
        **(ref(record.parent) or {}), "index_in_parent_children": record.parent.index_in_parent_children,
        "is_finalize_of_parent": record.parent.is_finalize_of_parent}
    return {
        **summary(record),
        "input": _decoded(decode, record.input),
        "output": _decoded(decode, record.output) if completed and record.output is not None else None,
        "error": None if completed else error_json(record.error),
        "attempts": record.retry_attempts + 1,
        "max_attempts": record.retry.max_attempts + 1,
        "timeout": record.timeout,
        "root": ref(record.root), "parent": parent,
        "children": [ref(child) for child in record.children], "finalize": ref(record.finalize),
        "is_sleeping": record.is_sleeping, "sleeping_unique_id": record.sleeping_unique_id,
        "idempotency_key": record.idempotency_key,
        "start_at": iso(record.start_at), "started_at": iso(record.started_at),
        "expires_at": iso(record.lease_expires_at) if record.status == "running" else None,
        "waiting_for_children_started_at": iso(record.waiting_for_children_started_at),
        "waiting_for_finalize_started_at": iso(record.waiting_for_finalize_started_at),
    }


def _decoded(decode: Callable[[Payload], Any], payload: Payload | None) -> Any:
    if payload is None:
        return None
    try:
        return decode(payload)
    except DurableExecutionError as exc:  # e.g. its serializer is not installed here
        return {"undecodable": exc.message, "serializer": payload.serializer}


def worker(executor: ExecutorInfo) -> dict[str, Any]:
    return {"executor_id": executor.executor_id, "host": executor.host, "pid": executor.pid,
            "started_at": iso(executor.started_at), "heartbeat_at": iso(executor.heartbeat_at),
            "running": executor.running}


def to_json(value: Any) -> bytes:
    """Compact UTF-8 JSON of a decoded payload too: dataclasses (a parent's
    ``FinishedChildTaskExecution``s) as objects, enums as their values, sets as lists, times as
    ISO text; anything else JSON cannot hold (bytes, say) as its ``str``."""
    return json.dumps(value, default=_jsonable, ensure_ascii=False, separators=(",", ":")).encode()


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


# ----------------------------------------------------------------------------- cursor


def encode_cursor(record: ExecutionRecord) -> str:
    """The opaque ``next_cursor`` after ``record``: its list key, URL-safe."""
    return base64.urlsafe_b64encode(json.dumps(list_key(record)).encode()).decode().rstrip("=")


def decode_cursor(text: str) -> ListCursor:
    """The list key in a ``cursor`` parameter; ValueError names what is wrong."""
    try:
        created_at, execution_id = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, TypeError, binascii.Error):
        raise ValueError(f"cursor {text!r} is not one this API returned; pass next_cursor as it came") from None
    if not (isinstance(created_at, int | float) and not isinstance(created_at, bool) and math.isfinite(created_at)
            and isinstance(execution_id, str)):
        raise ValueError(f"cursor {text!r} is not one this API returned; pass next_cursor as it came")
    return float(created_at), execution_id
