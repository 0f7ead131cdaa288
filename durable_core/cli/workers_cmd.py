"""``durable workers``: the live executors of the configured storage, from their heartbeats."""

from __future__ import annotations

import dataclasses
import time

import click

from ..options import ExecutorOptions
from ..storage.contract import ExecutorInfo
from .common import configured_storage, iso_timestamp, run, table, timestamp, to_json


@click.command("workers")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines, one object per executor.")
def workers(as_json: bool) -> None:
    """List live executors: those whose last heartbeat is more recent than lease_duration."""

    async def main() -> list[ExecutorInfo]:
        async with configured_storage() as (storage, config):
            lease_duration = ExecutorOptions.from_mapping(config.executor).lease_duration
            return await storage.list_executors(time.time() - lease_duration)

    live = run(main)
    if as_json:
        for executor in live:
            click.echo(to_json({**dataclasses.asdict(executor), "started_at": iso_timestamp(executor.started_at),
                                "heartbeat_at": iso_timestamp(executor.heartbeat_at)}))
    elif live:
        click.echo(table(
            ["executor", "host", "pid", "started (UTC)", "last heartbeat (UTC)", "running"],
            [[e.executor_id, e.host, e.pid, timestamp(e.started_at), timestamp(e.heartbeat_at), e.running]
             for e in live],
        ))
    else:
        click.echo("no live workers")
