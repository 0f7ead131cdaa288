"""The ``otel`` plugin: the trace context of the code that creates an execution is kept with it
(``durable_execution_context``), and each run is a span continuing it (``durable_wrap_run``), made
current while the task runs, so the executions a run creates continue it in turn.

``opentelemetry`` is imported on first use only: every ``durable`` command imports every plugin.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from durable_core import ExecutionRun, hookimpl
from durable_core.plugins.hookspecs import RunningExecutor

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer, TracerProvider


class OtelPlugin:
    """The plugin object. ``tracer_provider``: where its spans go; by default the global one (the
    application's, or the one ``OTEL_EXPORTER_OTLP_ENDPOINT`` configures: see ``setup``)."""

    def __init__(self, tracer_provider: TracerProvider | None = None):
        self._tracer_provider = tracer_provider

    @functools.cached_property
    def tracer(self) -> Tracer:
        """Made once (``get_tracer`` costs more than a span); the global provider's is a proxy
        that follows the provider set later."""
        from opentelemetry import trace

        from .spans import INSTRUMENTATION, VERSION

        return trace.get_tracer(INSTRUMENTATION, VERSION, tracer_provider=self._tracer_provider)

    @functools.cached_property
    def _current_context(self) -> Callable[[], dict[str, str] | None]:
        """Imported once: an import statement per call costs more than the call."""
        from .spans import current_context

        return current_context

    @functools.cached_property
    def _run_span(self) -> Callable[[ExecutionRun], AbstractContextManager[Any]]:
        from .spans import RunSpan

        return functools.partial(RunSpan, tracer=self.tracer)

    @hookimpl
    def durable_execution_context(self) -> dict[str, str] | None:
        return self._current_context()

    @hookimpl
    def durable_wrap_run(self, run: ExecutionRun) -> AbstractContextManager[Any]:
        return self._run_span(run)

    @hookimpl
    def durable_executor_running(self, executor: RunningExecutor) -> Callable[[], Awaitable[None]] | None:
        if self._tracer_provider is not None:
            return None
        from .setup import check_endpoint, configure_from_environment

        endpoint = configure_from_environment()
        return None if endpoint is None else (lambda: check_endpoint(endpoint))


plugin = OtelPlugin()
"""What the entry point registers: spans go to the global tracer provider."""
