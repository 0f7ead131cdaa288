"""Following an execution until it finishes, for ``enqueue --wait`` and ``demo``."""

from __future__ import annotations

import collections
import math
import time

import click
import trio

from ..executor import DurableExecutor
from ..errors import execution_not_found
from ..handles import TaskExecutionHandle
from ..models import TaskExecution
from ..status import TaskExecutionStatus
from ..storage.contract import ExecutionRecord
from .common import run_until_signal, styled, to_json

POLL_INTERVAL = 0.2
HEARTBEAT = 15.0
"""Seconds after which an unchanged status is shown again, so that a long wait visibly lives."""


def _status_line(record: ExecutionRecord, below: list[ExecutionRecord | None]) -> str:
    """``parent: status, child: status, ...``; with many children, how many have each status."""
    if len(below) > 4:
        counts = collections.Counter(child.status if child else "deleted" for child in below)
        return f"{record.task_id}: {styled(record.status)}, {len(below)} children: " + ", ".join(
            f"{count} {styled(status)}" for status, count in counts.most_common())
    refs = [*record.children, *([record.finalize] if record.finalize else [])]
    return ", ".join([f"{record.task_id}: {styled(record.status)}"] + [
        f"{ref.task_id}: {styled(child.status) if child else 'deleted'}" for ref, child in zip(refs, below)])


async def follow(executor: DurableExecutor, handle: TaskExecutionHandle, *,
                 no_worker_hint: str | None = None) -> TaskExecution | None:
    """Wait until the execution finishes, printing its and its children's statuses on stderr when
    they change (and every ``HEARTBEAT`` seconds); None if SIGINT/SIGTERM ended the wait.

    ``no_worker_hint`` is printed once if, one ``heartbeat_interval`` after the start (when any
    worker up has beaten), the execution is still ready and the storage's registry of executors
    has no live one (``durable workers`` lists none): nothing will run it."""
    start = trio.current_time()
    hint_at = start + executor.options.heartbeat_interval if no_worker_hint else math.inf

    async def watch() -> None:
        nonlocal hint_at
        shown, shown_at = "", start
        while True:
            (record,) = await executor.storage.get_executions([handle.execution_id])
            if record is None:
                raise execution_not_found(handle.execution_id)
            refs = [*record.children, *([record.finalize] if record.finalize else [])]
            line = _status_line(record, await executor.storage.get_executions([r.execution_id for r in refs]))
            now = trio.current_time()
            if line != shown or now - shown_at >= HEARTBEAT:
                click.echo(f"[{now - start:5.1f}s] {line}", err=True)
                shown, shown_at = line, now
            if record.status.is_finished:
                return
            if now >= hint_at:
                hint_at = math.inf
                if record.status is TaskExecutionStatus.READY and not await executor.storage.list_executors(
                        time.time() - executor.options.lease_duration):
                    click.echo(no_worker_hint, err=True)
            await trio.sleep(POLL_INTERVAL)

    if await run_until_signal(watch):
        return None
    return await handle.get_execution()


def report(execution: TaskExecution) -> int:
    """Print the outcome (output as JSON, or the error) and return the exit code: 0 if completed."""
    if execution.error is None:
        click.echo(f"{styled(execution.status)}: {to_json(execution.output)}")
        return 0
    click.echo(f"{styled(execution.status)}: {execution.error.message}")
    return 1
