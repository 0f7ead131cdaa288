"""Converting between ``ExecutionRecord`` and rows of the ``executions`` table (native types:
booleans, ``bytea`` payloads, children as a ``text[]``)."""

from __future__ import annotations

import functools
import itertools
from typing import Any

from durable_core.errors import ErrorInfo
from durable_core.models import ExecutionRef, ParentRef, RetryOptions
from durable_core.status import TaskExecutionStatus
from durable_core.storage.contract import ExecutionRecord, Payload
from durable_core.storage.helpers import decode_context, decode_names, encode_context, encode_names

COLUMNS = (
    "execution_id", "task_id", "status", "ready_at", "lease_token", "lease_expires_at", "executor_id",
    "active_children_count", "retry_attempts", "lease_expirations", "created_at", "updated_at",
    "start_at", "started_at", "finished_at", "waiting_for_children_started_at",
    "waiting_for_finalize_started_at", "timeout", "sleep_before_run", "retry_max_attempts",
    "retry_base_delay", "retry_delay_multiplier", "retry_max_delay", "root_task_id",
    "root_execution_id", "parent_task_id", "parent_execution_id", "index_in_parent_children",
    "is_finalize_of_parent", "finalize_task_id", "finalize_execution_id", "is_sleeping",
    "sleeping_unique_id", "idempotency_key", "error_type", "error_message", "error_is_retryable",
    "error_is_internal", "error_type_name", "error_traceback", "children", "input_serializer", "input", "run_output_serializer",
    "run_output", "output_serializer", "output", "deferred_options", "context", "queue",
    "priority",
)  # fmt: skip
"""Every column, in the order of ``to_row`` and ``from_row`` (the table's, but for the columns
added by later migrations, which the table has last)."""

KEPT = frozenset({"execution_id", "lease_token", "lease_expires_at", "updated_at"})
"""Columns a commit does not take from the record: the key, the lease and the write's time."""

STATUSES = {status.value: status for status in TaskExecutionStatus}

_RUN_END = ""
"""Ends a run of one task's children in the ``children`` array (ids are never empty)."""


@functools.lru_cache(maxsize=256)
def _retry(max_attempts: int, base_delay: float, multiplier: float, max_delay: float | None) -> RetryOptions:
    """Shared instances: executions of one task repeat the same options, and validating is slow."""
    return RetryOptions(max_attempts, base_delay, multiplier, max_delay)


def encode_children(refs: tuple[ExecutionRef, ...]) -> list[str] | None:
    """``[task, id, id, '', task, id, '']``: 1000 children of one task store its id once."""
    if not refs:
        return None
    flat: list[str] = []
    for task_id, group in itertools.groupby(refs, lambda r: r.task_id):
        flat += [task_id, *(r.execution_id for r in group), _RUN_END]
    return flat


def decode_children(flat: list[str] | None) -> tuple[ExecutionRef, ...]:
    refs: list[ExecutionRef] = []
    task_id = None
    for item in flat or ():
        if task_id is None:
            task_id = item
        elif item == _RUN_END:
            task_id = None
        else:
            refs.append(ExecutionRef(task_id, item))
    return tuple(refs)


def to_row(r: ExecutionRecord) -> tuple[Any, ...]:
    """The row of ``r``, in ``COLUMNS`` order."""
    retry, root, parent, finalize, error = r.retry, r.root, r.parent, r.finalize, r.error
    run_output, output = r.run_output, r.output
    return (
        r.execution_id, r.task_id, r.status.value, r.ready_at, r.lease_token, r.lease_expires_at,
        r.executor_id, r.active_children_count, r.retry_attempts, r.lease_expirations, r.created_at,
        r.updated_at, r.start_at, r.started_at, r.finished_at, r.waiting_for_children_started_at,
        r.waiting_for_finalize_started_at, r.timeout, r.sleep_before_run, retry.max_attempts,
        retry.base_delay, retry.delay_multiplier, retry.max_delay,
        root and root.task_id, root and root.execution_id,
        parent and parent.task_id, parent and parent.execution_id,
        parent and parent.index_in_parent_children, parent and parent.is_finalize_of_parent,
        finalize and finalize.task_id, finalize and finalize.execution_id,
        r.is_sleeping, r.sleeping_unique_id, r.idempotency_key,
        error and error.error_type, error and error.message, error and error.is_retryable,
        error and error.is_internal, error and error.type_name, error and error.traceback,
        encode_children(r.children), r.input.serializer, r.input.data,
        run_output and run_output.serializer, run_output and run_output.data,
        output and output.serializer, output and output.data, encode_names(r.deferred_options),
        encode_context(r.context), r.queue, r.priority,
    )  # fmt: skip


def _payload(serializer: str | None, data: bytes | None) -> Payload | None:
    """The payload of two columns, both set or both NULL."""
    return None if serializer is None or data is None else Payload(serializer, data)


def from_row(row: tuple[Any, ...]) -> ExecutionRecord:
    """The record of a row selected as ``COLUMNS``."""
    (
        execution_id, task_id, status, ready_at, lease_token, lease_expires_at, executor_id,
        active_children_count, retry_attempts, lease_expirations, created_at, updated_at, start_at,
        started_at, finished_at, waiting_for_children_started_at, waiting_for_finalize_started_at,
        timeout, sleep_before_run, retry_max_attempts, retry_base_delay, retry_delay_multiplier,
        retry_max_delay, root_task_id, root_execution_id, parent_task_id, parent_execution_id,
        index_in_parent_children, is_finalize_of_parent, finalize_task_id, finalize_execution_id,
        is_sleeping, sleeping_unique_id, idempotency_key, error_type, error_message,
        error_is_retryable, error_is_internal, error_type_name, error_traceback, children, input_serializer, input,
        run_output_serializer, run_output, output_serializer, output, deferred_options, context, queue,
        priority,
    ) = row  # fmt: skip
    return ExecutionRecord(
        execution_id, task_id, STATUSES[status], Payload(input_serializer, input),
        _retry(retry_max_attempts, retry_base_delay, retry_delay_multiplier, retry_max_delay),
        timeout, sleep_before_run, created_at, updated_at, start_at,
        None if root_execution_id is None else ExecutionRef(root_task_id, root_execution_id),
        None if parent_execution_id is None
        else ParentRef(parent_task_id, parent_execution_id, index_in_parent_children, is_finalize_of_parent),
        is_sleeping, sleeping_unique_id, idempotency_key,
        _payload(output_serializer, output), _payload(run_output_serializer, run_output),
        None if error_type is None else ErrorInfo(error_type, error_message, error_is_retryable, error_is_internal,
                                                  error_type_name, error_traceback),
        retry_attempts, lease_expirations, decode_children(children),
        None if finalize_execution_id is None else ExecutionRef(finalize_task_id, finalize_execution_id),
        active_children_count, started_at, finished_at, waiting_for_children_started_at,
        waiting_for_finalize_started_at, ready_at, executor_id, lease_token, lease_expires_at,
        decode_names(deferred_options), decode_context(context), queue, priority,
    )  # fmt: skip
