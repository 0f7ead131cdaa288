"""``durable worker`` and ``durable enqueue``: commands that load the user's executor and tasks."""

from __future__ import annotations

import gc
import socket
import time
from datetime import datetime
from typing import Any

import click

from ..durations import DURATION_UNITS
from ..executor import DurableExecutor, check_idempotency_key
from ..storage.contract import MAX_PRIORITY
from ..tasks import MAX_DELAY, Task, check_delay, check_queue
from .common import (
    client,
    duration,
    executor_target,
    json_value,
    load_executor,
    load_task,
    run,
    stopped_by_signals,
)
from .endpoints import start_endpoint_server
from .logs import LOG_FORMATS, configure, say
from .progress import follow, report


@click.command("worker")
@click.argument("target", metavar="MODULE:EXECUTOR")
@click.option("--quiet", "-q", is_flag=True, help="Do not print every state change.")
@click.option("--queue", "queues", multiple=True, metavar="NAME",
              help="Claim only from this queue (repeatable; default: every queue its tasks use).")
@click.option("--log-format", type=click.Choice(LOG_FORMATS), default="text", show_default=True,
              help="json: one JSON object per line (time, level, kind, task, execution, attempt...), "
                   "for log shippers.")
@click.option("--metrics-port", type=click.IntRange(0, 65535), metavar="PORT",
              help="Serve GET /metrics (Prometheus) on this port, on every interface; needs the "
                   "prometheus plugin.")
@click.pass_context
def worker(ctx: click.Context, target: str, quiet: bool, queues: tuple[str, ...], log_format: str,
           metrics_port: int | None) -> None:
    """Run the tasks of MODULE:EXECUTOR until SIGINT or SIGTERM, then shut down gracefully:
    running tasks get the executor's shutdown_timeout to finish, the rest are handed back.
    A second signal hands them back at once (exit code 130)."""
    executor = load_executor(target)
    if queues:
        _serve(executor, queues)
    configure(log_format, events=not quiet)
    if metrics_port is None:
        ctx.exit(run(_work, executor, target))
    server = start_endpoint_server(metrics_port, executor.plugins.http_endpoints())
    try:
        say(f"serving metrics at http://{socket.gethostname()}:{server.server_address[1]}/metrics")
        ctx.exit(run(_work, executor, target))
    finally:
        server.shutdown()
        server.server_close()


def _serve(executor: DurableExecutor, queues: tuple[str, ...]) -> None:
    """Claim from ``queues`` only; a name none of the executor's tasks uses is likely a typo: say so once."""
    try:
        executor.serve_queues(queues)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--queue") from None
    used = {task.queue for task in executor.tasks.values()}
    for name in sorted(set(queues) - used):
        click.echo(f"warning: no task of this executor is defined on queue {name!r} (its tasks use: "
                   f"{', '.join(sorted(used)) or 'none'}); it claims there only executions enqueued with "
                   f"queue={name!r}", err=True)


async def _work(executor: DurableExecutor, target: str) -> int:
    async with stopped_by_signals(executor) as interruption, executor:
        _freeze_what_lives_forever()
        tasks = ", ".join(f"{task.id} ({task.kind})" for task in executor.tasks.values())
        say(f"worker {executor.executor_id} for {target}: up to {executor.max_concurrent_task_executions} "
            f"executions at once; tasks: {tasks or 'none'}; queues: {', '.join(sorted(executor.queues))}")
        say("stop it with Ctrl-C or SIGTERM")
        await interruption.received.wait()
        if executor.running_task_executions_count:
            say(f"waiting up to {executor.shutdown_timeout:g}s for {executor.running_task_executions_count} "
                "running executions, then handing them back (Ctrl-C again: at once)")
    say("stopped")
    return 130 if interruption.repeated else 0


def _freeze_what_lives_forever() -> None:
    """The process is the worker's: what exists once it runs (the application's modules, the
    executor) lives as long as the process. Frozen (``gc.freeze``), it is left out of the cycle
    collector's passes, whose full ones would otherwise walk it all again and again (a few percent
    of a busy worker's time)."""
    gc.collect()
    gc.freeze()


def _idempotency_key(value: str | None) -> str | None:
    try:
        check_idempotency_key(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc).removeprefix("idempotency_key ")) from None
    return value


def _delay(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    seconds = duration(value)
    if seconds > MAX_DELAY:
        raise click.BadParameter(f"{value!r} is too long; at most 10 years ({MAX_DELAY // DURATION_UNITS['d']:.0f}d)")
    return seconds


def _at(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time; write e.g. 2026-12-24T09:00:00+01:00") from None
    if at.utcoffset() is None:
        raise click.BadParameter(f"{value!r} has no UTC offset; add one, e.g. {value}+01:00, or Z for UTC")
    try:
        check_delay("the enqueue", None, at, time.time())
    except ValueError as exc:
        raise click.BadParameter(str(exc).removeprefix("Invalid at for the enqueue: ")) from None
    return at


@click.command("enqueue")
@click.argument("target", metavar="MODULE:TASK")
@click.option("--input", "input_", callback=json_value, metavar="JSON", help="The input, as JSON (default: null).")
@click.option("--idempotency-key", callback=lambda _ctx, _param, key: _idempotency_key(key),
              help="Enqueue at most once per task and key; again, return the first one.")
@click.option("--queue", metavar="NAME", help="Enqueue on this queue instead of the task's.")
@click.option("--priority", type=click.IntRange(0, MAX_PRIORITY), metavar="N",
              help=f"Claimed before the executions of lower priorities (0 to {MAX_PRIORITY:,}; default: the task's).")
@click.option("--delay", callback=_delay, metavar="DURATION",
              help="Due this long from now (90s, 30m, 12h, 7d, 2w; at most 10 years), then the task's sleep_before_run.")
@click.option("--at", callback=_at, metavar="TIME",
              help="Due at this ISO 8601 time with its UTC offset (2026-12-24T09:00:00+01:00, or Z for UTC); "
                   "a past one is now.")
@click.option("--wait", is_flag=True, help="Follow it until it finishes and print its output; exit 1 unless completed.")
@click.pass_context
def enqueue(ctx: click.Context, target: str, input_: Any, idempotency_key: str | None, queue: str | None,
            priority: int | None, delay: float | None, at: datetime | None, wait: bool) -> None:
    """Enqueue an execution of MODULE:TASK and print its id; a worker runs it."""
    if delay is not None and at is not None:
        raise click.UsageError("give --delay or --at, not both")
    executor, task = load_task(target)
    if queue is not None:
        try:
            check_queue(f"task {task.id}", queue)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--queue") from None
    hint = (f"no worker is running (durable workers lists none), so nothing runs {task.id}; start one with: "
            f"durable worker {executor_target(target, executor)}")
    options = {"idempotency_key": idempotency_key, "queue": queue, "priority": priority, "delay": delay, "at": at}
    ctx.exit(run(_enqueue, executor, task, input_, options, hint if wait else None))


async def _enqueue(executor: DurableExecutor, task: Task, input: Any, options: dict[str, Any],
                   wait_hint: str | None) -> int:
    """Enqueue with ``options`` (of ``enqueue_task``); with ``wait_hint`` (``--wait``), follow it, and say
    so if no worker is there to run it."""
    async with client(executor):
        handle = await executor.enqueue_task(task, input, **options)
        click.echo(handle.execution_id)
        if wait_hint is None:
            return 0
        finished = await follow(executor, handle, no_worker_hint=wait_hint)
    if finished is None:
        click.echo(f"stopped waiting; it goes on: durable executions show {handle.execution_id}", err=True)
        return 130
    return report(finished)
