"""``durable schedules list|pause|resume``: the periodic schedules and their pause state, which
holds for every worker of the storage (see docs/tasks.md)."""

from __future__ import annotations

import time

import click

from ..executor import DurableExecutor
from ..schedules import SCHEDULE_ID
from .common import UserError, client, load_executor, run, table, timestamp


@click.group("schedules")
def schedules() -> None:
    """List, pause and resume periodic schedules (executor.schedule, [[schedules]] in durable.toml)."""


def _executor(target: str | None) -> DurableExecutor:
    """The executor whose schedules are meant: MODULE:EXECUTOR's, else durable.toml's."""
    return load_executor(target) if target else DurableExecutor.from_config()


@schedules.command("list")
@click.argument("target", metavar="[MODULE:EXECUTOR]", required=False)
def list_(target: str | None) -> None:
    """The schedules of MODULE:EXECUTOR (default: those of durable.toml): next tick, paused or not."""
    executor = _executor(target)

    async def main() -> dict[str, float]:
        async with client(executor):
            return await executor.paused_schedules()

    paused = run(main)
    now = time.time()
    rows: list[list[object]] = [
        [s.id, s.task_id, s.cron, s.timezone, timestamp(s.next_tick(now)),
         f"paused since {timestamp(paused[s.id])}" if s.id in paused else "active"]
        for s in executor.schedules.values()]
    rows += [[schedule_id, "?", "", "", "", f"paused since {timestamp(since)} (not defined here)"]
             for schedule_id, since in paused.items() if schedule_id not in executor.schedules]
    click.echo(table(["schedule", "task", "cron", "timezone", "next tick (UTC)", "state"], rows) if rows
               else "no schedules (define them with executor.schedule or [[schedules]] in durable.toml)")


def _schedule_id(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not SCHEDULE_ID.fullmatch(value):
        raise click.BadParameter(f"{value!r} is not a schedule id (1..200 letters, digits and underscores); "
                                 "see them with: durable schedules list")
    return value


def _changed(schedule_id: str, *, pause: bool) -> bool:
    """Pause or resume ``schedule_id`` in the configured storage; False if it already was."""
    executor = DurableExecutor.from_config()

    async def main() -> bool:
        async with client(executor):
            change = executor.pause_schedule if pause else executor.resume_schedule
            return await change(schedule_id)

    return run(main)


@schedules.command("pause")
@click.argument("schedule_id", metavar="ID", callback=_schedule_id)
def pause(schedule_id: str) -> None:
    """Pause schedule ID on every worker, until resumed (restarts included)."""
    if not _changed(schedule_id, pause=True):
        raise UserError(f"schedule {schedule_id!r} is paused already; resume it with: durable schedules resume {schedule_id}")
    click.echo(f"paused schedule {schedule_id}: its ticks pass without an execution until: "
               f"durable schedules resume {schedule_id}")


@schedules.command("resume")
@click.argument("schedule_id", metavar="ID", callback=_schedule_id)
def resume(schedule_id: str) -> None:
    """Resume schedule ID from its next tick (the ticks of the pause are not caught up)."""
    if not _changed(schedule_id, pause=False):
        raise UserError(f"schedule {schedule_id!r} is not paused; see the schedules with: durable schedules list")
    click.echo(f"resumed schedule {schedule_id}")
