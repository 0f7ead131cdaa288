"""Converting between ``ExecutionRecord`` and rows of the ``executions`` table."""

from __future__ import annotations

import functools
import itertools
import json
from typing import Any

from durable_core.errors import ErrorInfo
from durable_core.models import ExecutionRef, ParentRef, RetryOptions
from durable_core.status import TaskExecutionStatus
from durable_core.storage.contract import ExecutionRecord, Payload
from durable_core.storage.helpers import decode_context, decode_names, encode_context, encode_names

COLUMNS = (
    "execution_id", "task_id", "status", "input_serializer", "input", "retry_max_attempts",
    "retry_base_delay", "retry_delay_multiplier", "retry_max_delay", "timeout", "sleep_before_run",
    "created_at", "start_at", "root_task_id", "root_execution_id", "parent_task_id",
    "parent_execution_id", "index_in_parent_children", "is_finalize_of_parent", "is_sleeping",
    "sleeping_unique_id", "idempotency_key", "output_serializer", "output", "run_output_serializer",
    "run_output", "error_type", "error_message", "error_is_retryable", "error_is_internal",
    "error_type_name", "error_traceback", "retry_attempts", "lease_expirations", "children", "finalize_task_id", "finalize_execution_id",
    "active_children_count", "started_at", "finished_at", "waiting_for_children_started_at",
    "waiting_for_finalize_started_at", "ready_at", "executor_id", "deferred_options", "context",
    "queue", "priority", "updated_at", "lease_token", "lease_expires_at",
)  # fmt: skip
"""Every column, in the order of ``to_row`` and ``from_row``: the fields of ``ExecutionRecord``,
except that the three a write does not take from the record come last: ``updated_at`` (the
write's time) and the lease (``lease_token`` is kept, ``lease_expires_at`` cleared)."""

SELECT_COLUMNS = ", ".join(COLUMNS)

STATUSES = {status.value: status for status in TaskExecutionStatus}


@functools.lru_cache(maxsize=256)
def _retry(max_attempts: int, base_delay: float, multiplier: float, max_delay: float | None) -> RetryOptions:
    """Shared instances: executions of one task repeat the same options, and validating is slow."""
    return RetryOptions(max_attempts, base_delay, multiplier, max_delay)


def _encode_refs(refs: tuple[ExecutionRef, ...]) -> str | None:
    """Children as runs of one task id (``[[task, id, id, ...], ...]``), compact for 1000 children."""
    if not refs:
        return None
    runs = [[task_id, *(r.execution_id for r in group)] for task_id, group in itertools.groupby(refs, lambda r: r.task_id)]
    return json.dumps(runs, separators=(",", ":"))


def _decode_refs(text: str | None) -> tuple[ExecutionRef, ...]:
    if text is None:
        return ()
    return tuple(ExecutionRef(run[0], execution_id) for run in json.loads(text) for execution_id in run[1:])


def to_row(r: ExecutionRecord) -> tuple[Any, ...]:
    """The row of ``r``, in ``COLUMNS`` order (positional parameters bind twice as fast as named)."""
    root, parent, error, finalize = r.root, r.parent, r.error, r.finalize
    output, run_output, retry, input = r.output, r.run_output, r.retry, r.input
    return (
        r.execution_id, r.task_id, r.status.value, input.serializer, input.data, retry.max_attempts,
        retry.base_delay, retry.delay_multiplier, retry.max_delay, r.timeout, r.sleep_before_run,
        r.created_at, r.start_at,
        root and root.task_id, root and root.execution_id,
        parent and parent.task_id, parent and parent.execution_id,
        parent and parent.index_in_parent_children, parent and parent.is_finalize_of_parent,
        r.is_sleeping, r.sleeping_unique_id, r.idempotency_key,
        output and output.serializer, output and output.data,
        run_output and run_output.serializer, run_output and run_output.data,
        error and error.error_type, error and error.message, error and error.is_retryable,
        error and error.is_internal, error and error.type_name, error and error.traceback,
        r.retry_attempts, r.lease_expirations, _encode_refs(r.children),
        finalize and finalize.task_id, finalize and finalize.execution_id,
        r.active_children_count, r.started_at, r.finished_at, r.waiting_for_children_started_at,
        r.waiting_for_finalize_started_at, r.ready_at, r.executor_id, encode_names(r.deferred_options),
        encode_context(r.context),
        r.queue, r.priority, r.updated_at, r.lease_token, r.lease_expires_at,
    )  # fmt: skip


def from_row(row: tuple[Any, ...]) -> ExecutionRecord:
    """The record of a row selected as ``SELECT_COLUMNS``."""
    (
        execution_id, task_id, status, input_serializer, input, retry_max_attempts,
        retry_base_delay, retry_delay_multiplier, retry_max_delay, timeout, sleep_before_run,
        created_at, start_at, root_task_id, root_execution_id, parent_task_id,
        parent_execution_id, index_in_parent_children, is_finalize_of_parent, is_sleeping,
        sleeping_unique_id, idempotency_key, output_serializer, output, run_output_serializer,
        run_output, error_type, error_message, error_is_retryable, error_is_internal,
        error_type_name, error_traceback, retry_attempts, lease_expirations, children, finalize_task_id, finalize_execution_id,
        active_children_count, started_at, finished_at, waiting_for_children_started_at,
        waiting_for_finalize_started_at, ready_at, executor_id, deferred_options, context, queue, priority, updated_at,
        lease_token,
        lease_expires_at,
    ) = row  # fmt: skip
    return ExecutionRecord(
        execution_id=execution_id,
        task_id=task_id,
        status=STATUSES[status],
        input=Payload(input_serializer, input),
        retry=_retry(retry_max_attempts, retry_base_delay, retry_delay_multiplier, retry_max_delay),
        timeout=timeout,
        sleep_before_run=sleep_before_run,
        created_at=created_at,
        updated_at=updated_at,
        start_at=start_at,
        root=None if root_execution_id is None else ExecutionRef(root_task_id, root_execution_id),
        parent=None if parent_execution_id is None else ParentRef(
            parent_task_id, parent_execution_id, index_in_parent_children, bool(is_finalize_of_parent)
        ),
        is_sleeping=bool(is_sleeping),
        sleeping_unique_id=sleeping_unique_id,
        idempotency_key=idempotency_key,
        output=None if output_serializer is None else Payload(output_serializer, output),
        run_output=None if run_output_serializer is None else Payload(run_output_serializer, run_output),
        error=None if error_type is None else ErrorInfo(
            error_type, error_message, bool(error_is_retryable), bool(error_is_internal), error_type_name,
            error_traceback,
        ),
        retry_attempts=retry_attempts,
        lease_expirations=lease_expirations,
        children=_decode_refs(children),
        finalize=None if finalize_execution_id is None else ExecutionRef(finalize_task_id, finalize_execution_id),
        active_children_count=active_children_count,
        started_at=started_at,
        finished_at=finished_at,
        waiting_for_children_started_at=waiting_for_children_started_at,
        waiting_for_finalize_started_at=waiting_for_finalize_started_at,
        ready_at=ready_at,
        executor_id=executor_id,
        lease_token=lease_token,
        lease_expires_at=lease_expires_at,
        deferred_options=decode_names(deferred_options),
        context=decode_context(context),
        queue=queue,
        priority=priority,
    )
