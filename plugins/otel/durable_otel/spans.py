"""One span per run of an execution (docs/observability.md lists its attributes)."""

from __future__ import annotations

from opentelemetry import context, propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from durable_core import ExecutionRun

INSTRUMENTATION = "durable_otel"
VERSION = "0.1.0"


def current_context() -> dict[str, str] | None:
    """The trace context to keep with an execution created now (``traceparent``...); None, at
    the cost of one look, when nothing is current (an enqueue outside any trace)."""
    if not context.get_current():
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier or None


class RunSpan:
    """The span of one run, current while it runs: a child of the span that was current where
    the execution was created (the enqueuing request's, or the parent run's), else a new trace.
    A class rather than ``start_as_current_span``: it is on every run, and this costs less."""

    __slots__ = ("_tracer", "_run", "_span", "_token")

    def __init__(self, run: ExecutionRun, tracer: trace.Tracer):
        self._tracer, self._run = tracer, run

    def __enter__(self) -> trace.Span:
        run = self._run
        attributes: dict[str, AttributeValue] = {
            "durable.task_id": run.task_id,
            "durable.execution_id": run.execution_id,
            "durable.attempt": run.attempt,
            "durable.executor_id": run.executor_id,
        }
        if run.parent is not None:
            attributes["durable.parent.task_id"] = run.parent.task_id
            attributes["durable.parent.execution_id"] = run.parent.execution_id
        if run.root is not None:
            attributes["durable.root.execution_id"] = run.root.execution_id
        parent = propagate.extract(run.context) if run.context else None
        self._span = self._tracer.start_span(f"run {run.task_id}", context=parent, kind=SpanKind.CONSUMER,
                                             attributes=attributes)
        self._token = context.attach(trace.set_span_in_context(self._span))
        return self._span

    def __exit__(self, *exc_info: object) -> None:
        try:
            if self._span.is_recording():  # not sampled: nothing to record
                _outcome(self._span, self._run)
        finally:
            context.detach(self._token)
            self._span.end()


def _outcome(span: trace.Span, run: ExecutionRun) -> None:
    """The stored outcome on the span: ``durable.status`` (``cut_off`` if none was stored), and
    the error as an ``exception`` event with the span's status ERROR (a retried attempt too)."""
    span.set_attribute("durable.status", "cut_off" if run.status is None else run.status.value)
    error = run.error
    if error is None:
        return
    event: dict[str, AttributeValue] = {"exception.type": error.type_name or error.error_type,
                                        "exception.message": error.message}
    if error.traceback:
        event["exception.stacktrace"] = error.traceback
    span.add_event("exception", event)
    span.set_attribute("durable.error_type", error.error_type)
    span.set_status(Status(StatusCode.ERROR, error.message))
