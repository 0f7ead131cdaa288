"""Spans as an OpenTelemetry backend receives them (the SDK's ``InMemorySpanExporter``), for
workflows run in virtual time on the memory storage (the ``durable`` fixture)."""

from __future__ import annotations

import logging
import socket

import trio
from opentelemetry.trace import StatusCode

from durable_core import FinalizeInput, ParentTaskResult, RetryOptions, child_task
from durable_core.client import Client
from durable_otel.setup import check_endpoint


def by_name(spans):
    found: dict[str, list] = {}
    for span in spans:
        found.setdefault(span.name, []).append(span)
    return found


async def test_a_request_that_enqueues_a_workflow_shows_the_whole_workflow_in_its_trace(durable, plugins, provider,
                                                                                        exporter):
    ex = durable.executor(plugins=plugins)
    tracer = provider.get_tracer("the web app")

    @ex.task(id="resize", timeout=60, retry=RetryOptions(max_attempts=1))
    async def resize(ctx, input):
        with tracer.start_as_current_span(f"GET image {input}"):  # the task's own instrumented call
            if input == 2 and ctx.attempt == 0:
                raise ConnectionError("storage hiccup")
        return input * 10

    def total(input: FinalizeInput):
        return sum(child.output for child in input.children)

    @ex.task(id="summarize", timeout=60)
    async def summarize(ctx, input: FinalizeInput):
        return total(input)

    @ex.parent_task(id="upload", timeout=60, finalize=summarize)
    async def upload(ctx, input):
        return ParentTaskResult(None, [child_task(resize, 1), child_task(resize, 2)])

    async with ex:
        with tracer.start_as_current_span("POST /upload") as request:
            handle = await ex.enqueue_task(upload)
        assert (await handle.wait_and_get_finished_execution()).output == 30

    spans = exporter.get_finished_spans()
    assert {span.context.trace_id for span in spans} == {request.get_span_context().trace_id}  # one trace
    named = by_name(spans)
    # the parent runs, is visited when its children are done (it starts its finalize), and when that is
    first_visit, second_visit, last_visit = sorted(named["run upload"], key=lambda s: s.start_time)
    assert {v.parent.span_id for v in (first_visit, second_visit, last_visit)} == {request.get_span_context().span_id}
    assert [v.attributes["durable.status"] for v in (first_visit, second_visit, last_visit)] == [
        "waiting_for_children", "waiting_for_finalize", "completed"]
    resizes = sorted(named["run resize"], key=lambda s: (s.attributes["durable.attempt"], s.attributes["durable.status"]))
    assert len(resizes) == 3  # 1, 2, and 2 again
    assert all(span.parent.span_id == first_visit.context.span_id for span in resizes)  # children of the run that made them
    assert all(span.attributes["durable.parent.execution_id"] == handle.execution_id for span in resizes)
    assert [(s.attributes["durable.attempt"], s.attributes["durable.status"], s.status.status_code) for s in resizes] == [
        (0, "completed", StatusCode.UNSET), (0, "ready", StatusCode.ERROR), (1, "completed", StatusCode.UNSET)]  # ready: retried
    failed = resizes[1]
    (exception,) = failed.events
    assert (exception.name, exception.attributes["exception.type"], exception.attributes["exception.message"]) == (
        "exception", "builtins.ConnectionError", "storage hiccup")
    assert failed.status.description == "storage hiccup"
    (finalize,) = named["run summarize"]
    assert finalize.parent.span_id == second_visit.context.span_id
    # the task's own spans are children of its run's span
    gets = named["GET image 1"] + named["GET image 2"]
    assert len(gets) == 3 and {g.parent.span_id for g in gets} == {s.context.span_id for s in resizes}
    run = resizes[0]
    assert run.attributes["durable.task_id"] == "resize" and run.attributes["durable.executor_id"] == ex.executor_id
    assert run.attributes["durable.root.execution_id"] == handle.execution_id
    assert run.kind.name == "CONSUMER"


async def test_a_failure_is_recorded_and_an_untraced_enqueue_starts_a_trace(durable, plugins, exporter):
    ex = durable.executor(plugins=plugins)

    @ex.task(id="fatal", timeout=60)
    async def fatal(ctx, input):
        raise KeyError("file")

    async with ex:
        execution = await durable.run_task(ex, fatal)
    (span,) = exporter.get_finished_spans()
    assert span.parent is None  # nothing was current where it was enqueued
    assert (span.name, span.attributes["durable.status"], span.attributes["durable.error_type"]) == (
        "run fatal", "failed", "generic")
    assert (span.status.status_code, span.status.description) == (StatusCode.ERROR, execution.error.message)
    assert span.attributes["durable.execution_id"] == execution.execution_id


def test_a_client_enqueue_continues_the_caller_s_trace(durable, plugins, provider, exporter):
    """A sync client called from a web framework's thread: the trace context is taken there."""
    ex = durable.executor(plugins=plugins)

    @ex.task(id="hello", timeout=60)
    async def hello(ctx, input):
        return input

    tracer = provider.get_tracer("the web app")
    with durable.client(ex) as client:
        with tracer.start_as_current_span("POST /hello") as request:
            execution_id = client.enqueue("hello", "world")
        assert client.wait(execution_id).output == "world"
    (run,) = by_name(exporter.get_finished_spans())["run hello"]
    assert run.parent.span_id == request.get_span_context().span_id


async def test_an_unreachable_exporter_endpoint_is_one_warning_and_tasks_run_on(durable, plugins, caplog):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with caplog.at_level(logging.WARNING, logger="durable.otel"):
        await check_endpoint(f"http://127.0.0.1:{port}")
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "durable.otel"]
    assert warning.startswith(f"the OpenTelemetry exporter endpoint http://127.0.0.1:{port} is unreachable (")
    assert warning.endswith("); spans will be dropped until it answers, tasks run on")
