"""``durable executions list|show|tree|cancel|retry|wakeup|gc``: operate executions from any process.

All but ``wakeup`` need only the storage the configuration selects, not the user's modules.
"""

from __future__ import annotations

import collections
import dataclasses
import textwrap
import time
from collections.abc import Sequence
from typing import Any

import click

from ..config import DurableConfig
from ..durations import MAX_DAYS, MAX_SECONDS
from ..errors import ErrorInfo
from ..events import EventKind, TaskExecutionEvent, kind_and_error
from ..records import to_task_execution
from ..plugins.manager import default_registry
from ..status import (
    ACTIVE_TASK_EXECUTION_STATUSES,
    ERRORED_TASK_EXECUTION_STATUSES,
    FINISHED_TASK_EXECUTION_STATUSES,
    TaskExecutionStatus,
)
from ..storage.contract import CANCELLED_ERROR, ExecutionRecord, Payload, StatusChange, Storage, list_key
from .common import (
    UserError,
    client,
    configured_storage,
    describe_storage,
    duration,
    iso_timestamp,
    json_value,
    load_task,
    run,
    styled,
    table,
    task_id,
    timestamp,
    to_json,
)

STATUS_GROUPS = {
    "active": ACTIVE_TASK_EXECUTION_STATUSES,
    "finished": FINISHED_TASK_EXECUTION_STATUSES,
    "errored": ERRORED_TASK_EXECUTION_STATUSES,
}
MAX_LIMIT = 1_000_000
"""The most executions ``list --limit`` reads at once."""


@click.group("executions")
def executions() -> None:
    """List, inspect, cancel, retry, wake up and delete executions in the configured storage."""


async def _get(storage: Storage, execution_id: str, config: DurableConfig) -> ExecutionRecord:
    (record,) = await storage.get_executions([execution_id])
    if record is None:
        where = describe_storage(config.storage.name, config.storage.options, config.source)
        raise UserError(f"execution {execution_id!r} not found in {where}; list them with: durable executions list")
    return record


class Undecodable:
    """A stored payload that cannot be read (corrupt, crafted, or of a serializer not installed):
    ``show`` marks it, as this text (in JSON too), and shows the rest of the execution."""

    def __init__(self, serializer: str, reason: str):
        self.text = f"<undecodable {serializer!r} payload: {reason}>"

    def __str__(self) -> str:
        return self.text


def _decode(payload: Payload) -> Any:
    try:
        return default_registry().serializer(payload.serializer).deserialize(payload.data)
    except Exception as exc:  # whatever the stored bytes make a serializer raise, show the row
        return Undecodable(payload.serializer, getattr(exc, "message", None) or str(exc) or type(exc).__name__)


def _summary(record: ExecutionRecord) -> dict[str, Any]:
    return {
        "execution_id": record.execution_id,
        "task_id": record.task_id,
        "queue": record.queue,
        "priority": record.priority,
        "status": str(record.status),
        "retry_attempts": record.retry_attempts,
        "created_at": iso_timestamp(record.created_at),
        "finished_at": iso_timestamp(record.finished_at),
        "parent_execution_id": record.parent.execution_id if record.parent else None,
        "error": record.error.message if record.error else None,
    }


@executions.command("list")
@click.option("--status", "statuses", multiple=True,
              type=click.Choice([*map(str, TaskExecutionStatus), *STATUS_GROUPS]),
              help="Only these statuses (repeatable); active, finished and errored name groups.")
@click.option("--task", "task", metavar="TASK", help="Only executions of this task: its id, or MODULE:TASK as for enqueue.")
@click.option("--executor", "executor_id", help="Only executions this executor runs or last ran (see: durable workers).")
@click.option("--queue", help="Only executions in this queue.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1, max=MAX_LIMIT))
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines, one object per execution.")
def list_(statuses: tuple[str, ...], task: str | None, executor_id: str | None, queue: str | None, limit: int,
          as_json: bool) -> None:
    """List executions, newest first."""
    wanted = {status for name in statuses for status in STATUS_GROUPS.get(name) or {TaskExecutionStatus(name)}}
    selected_task = task_id(task) if task is not None else None

    by_queue: dict[str, Any] = {} if queue is None else {"queue": queue}  # a storage before API 6 takes none

    async def main() -> list[ExecutionRecord]:
        async with configured_storage() as (storage, _):
            return await storage.list_executions(statuses=sorted(wanted) or None, task_id=selected_task,
                                                 executor_id=executor_id, limit=limit, **by_queue)

    records = run(main)
    if as_json:
        for record in records:
            click.echo(to_json(_summary(record)))
    elif records:
        click.echo(table(
            ["execution", "task", "status", "retries", "created (UTC)", "finished (UTC)", "parent"],
            [[r.execution_id, r.task_id, styled(r.status), r.retry_attempts, timestamp(r.created_at),
              timestamp(r.finished_at), r.parent.execution_id if r.parent else "-"] for r in records],
        ))
    else:
        click.echo("no executions found")


@executions.command("show")
@click.argument("execution_id")
@click.option("--json", "as_json", is_flag=True, help="Print the execution as JSON.")
def show(execution_id: str, as_json: bool) -> None:
    """One execution: status, input, output, error, relatives, times and the executor running it."""

    async def main() -> ExecutionRecord:
        async with configured_storage() as (storage, config):
            return await _get(storage, execution_id, config)

    record = run(main)
    execution = to_task_execution(record, _decode)
    shown = {**dataclasses.asdict(execution), "executor_id": record.executor_id}
    if as_json:
        click.echo(to_json(shown))
        return
    fields = {name: value for name, value in shown.items() if value is not None and value != ()}
    fields["status"] = styled(execution.status)
    error = execution.error
    traceback = None
    if error is not None:  # one line each, the traceback last: it is long
        fields["error"] = error.message
        fields["error_type"] = error.error_type + ("" if error.is_retryable else ", not retryable")
        if error.type_name is not None:
            fields["error_type_name"] = error.type_name
        traceback = error.traceback
    width = max(map(len, fields)) + 2
    for name, value in fields.items():
        text = to_json(value) if isinstance(value, dict | list | tuple) or name in ("input", "output") else value
        text = value if isinstance(value, Undecodable) else text
        click.echo(f"{name + ':':<{width}}{text}")
    if traceback is not None:
        click.echo("traceback:\n" + textwrap.indent(traceback.rstrip("\n"), "  "))


@executions.command("tree")
@click.argument("execution_id")
@click.option("--json", "as_json", is_flag=True,
              help="Print the tree as one JSON object: each node's task_id, execution_id, status, children and finalize.")
def tree(execution_id: str, as_json: bool) -> None:
    """The whole tree the execution belongs to (children, finalize) with statuses; it is marked <."""

    async def main() -> dict[str, Any]:
        async with configured_storage() as (storage, config):
            record = await _get(storage, execution_id, config)
            if record.root is not None:
                record = await _get(storage, record.root.execution_id, config)
            return await _node(storage, record)

    root = run(main)
    click.echo(to_json(root) if as_json else "\n".join(_drawn(root, execution_id, "", "")))


async def _node(storage: Storage, record: ExecutionRecord) -> dict[str, Any]:
    """``record`` and, below it, its children and finalize (each level in one read), as JSON; a
    deleted one has status None."""
    refs = [*record.children, *([record.finalize] if record.finalize else [])]
    found = await storage.get_executions([ref.execution_id for ref in refs])
    below = [await _node(storage, child) if child is not None else
             {"task_id": ref.task_id, "execution_id": ref.execution_id, "status": None, "children": [], "finalize": None}
             for ref, child in zip(refs, found)]
    return {"task_id": record.task_id, "execution_id": record.execution_id, "status": str(record.status),
            "children": below[:len(record.children)], "finalize": below[-1] if record.finalize else None}


def _drawn(node: dict[str, Any], marked: str, indent: str, branch: str, label: str = "") -> list[str]:
    """The lines of ``node`` and everything below it, drawn as a tree."""
    status = styled(node["status"]) if node["status"] else "(deleted)"
    mark = "  <" if node["execution_id"] == marked else ""
    lines = [f"{indent}{branch}{label}{node['task_id']} {node['execution_id']} {status}{mark}"]
    below = [(child, "") for child in node["children"]] + ([(node["finalize"], "finalize: ")] if node["finalize"] else [])
    indent += "" if not branch else "    " if branch == "└── " else "│   "
    for index, (child, child_label) in enumerate(below):
        lines += _drawn(child, marked, indent, "└── " if index == len(below) - 1 else "├── ", child_label)
    return lines


@executions.command("cancel")
@click.argument("execution_id")
def cancel(execution_id: str) -> None:
    """Cancel an execution and every unfinished descendant; a worker running one stops it."""

    async def main() -> str:
        async with configured_storage() as (storage, config):
            record = await _get(storage, execution_id, config)
            if record.status.is_finished:
                return f"{record.task_id} {execution_id} already finished ({record.status}); nothing to cancel"
            now = time.time()
            changes = await storage.cancel_executions([execution_id], now)
        _emit(EventKind.CANCELLED, changes, now, {execution_id: CANCELLED_ERROR})
        cancelled = sum(c.status is TaskExecutionStatus.CANCELLED and c.previous_status != c.status for c in changes)
        more = f" and {cancelled - 1} unfinished descendants" if cancelled > 1 else ""
        return f"cancelled {record.task_id} {execution_id}{more}"

    click.echo(run(main))


@executions.command("retry")
@click.argument("execution_id")
def retry(execution_id: str) -> None:
    """Run an execution that ended with an error again: a new attempt, same id.

    Only a top-level execution that failed, timed out, was cancelled or whose finalize failed;
    its last error stays visible (the new attempt's prev_error) until the new attempt ends.
    """

    async def main() -> str:
        async with configured_storage() as (storage, config):
            record = await _get(storage, execution_id, config)
            _check_retryable(record)
            now = time.time()
            changes = await storage.retry_executions([execution_id], now)
        if not changes:
            raise UserError(f"{record.task_id} {execution_id} changed while it was being retried; look again "
                            f"with: durable executions show {execution_id}")
        _emit(EventKind.RETRIED, changes, now, {execution_id: None})
        return (f"retried {record.task_id} {execution_id}: ready, attempt {record.retry_attempts + 1} "
                f"(was {record.status})")

    click.echo(run(main))


def _emit(kind: EventKind, changes: Sequence[StatusChange], now: float,
          acted_on: dict[str, ErrorInfo | None]) -> None:
    """Observers see every change, also those made without an executor."""
    registry = default_registry()
    for change in changes:
        event_kind, error = kind_and_error(kind, change, acted_on)
        registry.emit(TaskExecutionEvent(event_kind, change.execution_id, change.task_id,
                                         change.previous_status, change.status, now, "cli", error))


def _check_retryable(record: ExecutionRecord) -> None:
    """Refuse, in one line, what ``retry_executions`` would leave alone."""
    what = f"{record.task_id} {record.execution_id}"
    if record.parent is not None:
        root = record.root or record.parent
        raise UserError(f"{what} is a child of {record.parent.task_id} {record.parent.execution_id}; only a "
                        f"top-level execution can be retried: retry its root, {root.task_id} {root.execution_id}")
    if record.is_sleeping:
        raise UserError(f"{what} is a sleeping execution, which runs no code of its own; enqueue a new one instead")
    if record.status not in ERRORED_TASK_EXECUTION_STATUSES:
        raise UserError(f"{what} is {record.status}; only an execution that ended failed, timed_out, cancelled "
                        "or finalize_failed can be retried")


@executions.command("wakeup")
@click.argument("target", metavar="MODULE:TASK")
@click.argument("unique_id")
@click.option("--output", callback=json_value, metavar="JSON", help="Complete it with this output (JSON).")
@click.option("--error", help="Fail it with this error message instead.")
def wakeup(target: str, unique_id: str, output: Any, error: str | None) -> None:
    """Finish the sleeping execution of MODULE:TASK whose unique id is UNIQUE_ID."""
    if output is not None and error is not None:
        raise UserError("give --output or --error, not both")
    executor, task = load_task(target)

    async def main() -> str:
        async with client(executor):
            execution = await executor.wakeup_sleeping_task_execution(
                task, unique_id, status="failed" if error is not None else "completed", output=output, error=error
            )
        return f"{task.id} {execution.execution_id}: {styled(execution.status)}"

    click.echo(run(main))


def _duration(ctx: click.Context, param: click.Parameter, value: str) -> float:
    seconds = duration(value)
    if seconds > MAX_SECONDS:
        raise click.BadParameter(f"{value!r} is too long; at most {MAX_DAYS}d (100 years)")
    return seconds


@executions.command("gc")
@click.option("--older-than", required=True, callback=_duration, metavar="DURATION",
              help="Age of the finished trees to delete: 7d, 12h, 30m, 90s, 2w.")
@click.option("--dry-run", is_flag=True, help="Count what would be deleted (reading every execution) and delete nothing.")
def gc(older_than: float, dry_run: bool) -> None:
    """Delete the trees of executions that finished longer ago than DURATION."""
    before = time.time() - older_than

    async def main() -> int:
        total = 0
        async with configured_storage() as (storage, _):
            if dry_run:
                return await _count_finished_trees(storage, before)
            while deleted := await storage.delete_finished_executions(before, 1000):
                total += deleted
                if total > deleted:  # a long run: show that it progresses
                    click.echo(f"deleted {total} executions so far", err=True)
        return total

    count = run(main)
    click.echo(f"{'would delete' if dry_run else 'deleted'} {count} executions of trees finished before "
               f"{timestamp(before)} UTC")


async def _count_finished_trees(storage: Storage, before: float) -> int:
    """How many executions ``delete_finished_executions(before, ...)`` would delete: the top-level
    ones finished before ``before`` and every execution below them."""
    roots: set[str] = set()
    below: collections.Counter[str] = collections.Counter()
    cursor = None
    while page := await storage.list_executions(limit=1000, before=cursor):
        for record in page:
            if record.root is not None:
                below[record.root.execution_id] += 1
            elif record.status.is_finished and record.finished_at is not None and record.finished_at < before:
                roots.add(record.execution_id)
        cursor = list_key(page[-1])
    return len(roots) + sum(below[root] for root in roots)
