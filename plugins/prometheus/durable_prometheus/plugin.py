"""The ``prometheus`` plugin: what it observes, and where its metrics are served.

Every hook is cheap and imports ``prometheus_client`` only when first needed: every ``durable``
command imports every installed plugin.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

import trio

from durable_core import ExecutionRun, TaskExecutionEvent, hookimpl
from durable_core.plugins.hookspecs import RunningExecutor

if TYPE_CHECKING:
    from .metrics import Metrics


class PrometheusPlugin:
    """The plugin object: its own registry of metrics, so that a test can make a fresh one."""

    @functools.cached_property
    def metrics(self) -> Metrics:
        from .metrics import Metrics

        return Metrics()

    @hookimpl
    def durable_task_execution_event(self, event: TaskExecutionEvent) -> None:
        self.metrics.observe(event)

    @hookimpl
    def durable_wrap_run(self, run: ExecutionRun) -> AbstractContextManager[None]:
        return _Timed(self.metrics, run)

    @hookimpl
    def durable_executor_running(self, executor: RunningExecutor) -> Callable[[], Awaitable[None]]:
        return functools.partial(self.metrics.poll, executor)

    @hookimpl
    def durable_http_endpoints(self, register: Callable[[str, Callable[[], tuple[str, bytes]]], None]) -> None:
        register("/metrics", self.metrics.render)


class _Timed:
    """Times one run (a class, not a generator: it is on every run)."""

    __slots__ = ("_metrics", "_run", "_started")

    def __init__(self, metrics: Metrics, run: ExecutionRun):
        self._metrics, self._run = metrics, run

    def __enter__(self) -> None:
        self._started = trio.current_time()

    def __exit__(self, *exc_info: object) -> None:
        self._metrics.run_ended(self._run, trio.current_time() - self._started)


plugin = PrometheusPlugin()
"""What the entry point registers."""
