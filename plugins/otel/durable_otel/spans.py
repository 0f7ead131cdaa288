"""One span per run of an execution (docs/observability.md lists its attributes)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider
from opentelemetry.util.types import AttributeValue

from durable_core import ExecutionRun

INSTRUMENTATION = "durable_otel"
VERSION = "0.1.0"


@contextmanager
def run_span(run: ExecutionRun, tracer_provider: TracerProvider | None = None) -> Iterator[trace.Span]:
    """The span of ``run``, current while it runs: a child of the span that was current where the
    execution was created (the enqueuing request's, or the parent run's), else a new trace."""
    tracer = trace.get_tracer(INSTRUMENTATION, VERSION, tracer_provider=tracer_provider)
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
    with tracer.start_as_current_span(f"run {run.task_id}", context=parent, kind=SpanKind.CONSUMER,
                                      attributes=attributes, record_exception=False,
                                      set_status_on_exception=False) as span:
        try:
            yield span
        finally:
            _outcome(span, run)


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
