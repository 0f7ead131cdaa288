"""``durable serve``: the HTTP API and the dashboard, until SIGINT or SIGTERM."""

from __future__ import annotations

import signal

import click
import trio

from durable_core.cli.common import UserError, load_executor, run, warn_unless_shared
from durable_core.executor import DurableExecutor

from .server import check_binding, serve


@click.command("serve")
@click.argument("target", metavar="[MODULE:EXECUTOR]", required=False)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but loopback requires --token.")
@click.option("--port", default=8787, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0: any free port, printed at start).")
@click.option("--token", envvar="DURABLE_WEB_TOKEN", metavar="TOKEN",
              help="Require this bearer token for the API and the dashboard (default: $DURABLE_WEB_TOKEN).")
def serve_command(target: str | None, host: str, port: int, token: str | None) -> None:
    """Serve the JSON API (/api/v1) and the web dashboard (/) for the configured storage.

    Without MODULE:EXECUTOR it enqueues by task id the tasks that have executions stored; with it,
    also the tasks that executor defines, with their defaults. It runs no task: workers do.
    """
    try:
        check_binding(host, token)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    executor = load_executor(target) if target else DurableExecutor.from_config()
    run(_serve, executor, host, port, token)


async def _serve(executor: DurableExecutor, host: str, port: int, token: str | None) -> None:
    stop = trio.Event()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                async for signum in signals:
                    click.echo(f"\n{signal.Signals(signum).name} received: stopping", err=True)
                    stop.set()

            async def server(task_status: trio.TaskStatus[list[str]]) -> None:
                try:
                    await serve(executor, host=host, port=port, token=token, stop=stop, task_status=task_status)
                except OSError as exc:
                    raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; "
                                    "choose another --port or --host") from None
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            binds = await nursery.start(server)
            warn_unless_shared(executor.storage)
            for url in binds:
                click.echo(f"serving the dashboard at {url}/ and the API at {url}/api/v1", err=True)
            click.echo("stop it with Ctrl-C or SIGTERM", err=True)
    click.echo("stopped", err=True)


