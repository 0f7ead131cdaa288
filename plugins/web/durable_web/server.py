"""``serve``: the application on Hypercorn's trio worker, beside a client-mode executor, in one
trio run (so handlers call the executor directly, without crossing threads)."""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
from typing import cast

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve
from hypercorn.typing import Framework

from durable_core.executor import DurableExecutor

from .app import create_app
from .service import Service

logger = logging.getLogger("durable.web")


def is_loopback(host: str) -> bool:
    """Whether binding to ``host`` keeps the server on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_binding(host: str, token: str | None) -> None:
    """Refuse to expose the API beyond this machine without a token."""
    if not is_loopback(host) and not token:
        raise ValueError(f"binding to {host} makes the API reachable from other machines; give a token: "
                         "durable serve --token TOKEN (or set DURABLE_WEB_TOKEN), or bind to 127.0.0.1")


def hypercorn_config(host: str, port: int) -> Config:
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"]
    config.accesslog = None
    config.graceful_timeout = 5.0
    config.keep_alive_timeout = 30.0
    config.include_server_header = False
    return config


async def serve(executor: DurableExecutor, *, host: str = "127.0.0.1", port: int = 8787, token: str | None = None,
                stop: trio.Event | None = None, refresh: float = 1.0, stats_interval: float = 5.0,
                task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve the API and dashboard for ``executor``'s storage until ``stop`` is set; reports the
    URLs it listens on through ``task_status``. ``executor`` is started here as a client: it runs
    no task (``max_concurrent_task_executions=0``), the workers do."""
    check_binding(host, token)
    stop = trio.Event() if stop is None else stop
    executor.options = dataclasses.replace(executor.options, max_concurrent_task_executions=0)
    async with executor:
        service = Service(executor, refresh=refresh, stats_interval=stats_interval)
        endpoints = executor.plugins.http_endpoints()  # /metrics if durable-prometheus is installed
        app = cast(Framework, create_app(service, token=token, endpoints=endpoints))  # Starlette's ASGI types, spelled otherwise
        config = hypercorn_config(host, port)

        async def shutdown_trigger() -> None:
            await stop.wait()
            service.stopping.set()  # live streams end, so connections close within the grace

        async with trio.open_nursery() as nursery:

            async def http(task_status: trio.TaskStatus[list[str]]) -> None:
                await hypercorn_serve(app, config, shutdown_trigger=shutdown_trigger, task_status=task_status)
                nursery.cancel_scope.cancel()  # the counts sampler stops with the server

            nursery.start_soon(service.sample_counts)
            task_status.started(await nursery.start(http))
