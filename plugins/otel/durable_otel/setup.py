"""Exporting spans when the application has not set up OpenTelemetry itself (``durable worker``):
the standard ``OTEL_*`` variables, OTLP over HTTP, in batches off the engine's thread."""

from __future__ import annotations

import logging
import os
import socket
import threading
from urllib.parse import urlsplit

import trio
from opentelemetry import trace

logger = logging.getLogger("durable.otel")

_lock = threading.Lock()
_configured: str | None = None


def configure_from_environment() -> str | None:
    """If no tracer provider is set and ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` is, set the SDK's, exporting there (once per process).
    Returns the endpoint spans go to, None if this plugin set up nothing."""
    global _configured
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    with _lock:
        if _configured is not None or not endpoint:
            return _configured
        if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            return None  # the application set up its own
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = TracerProvider(resource=Resource.create({"service.name": os.environ.get(
            "OTEL_SERVICE_NAME", "durable-worker")}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
        _configured = endpoint
        return endpoint


async def check_endpoint(endpoint: str, timeout: float = 3.0) -> None:
    """Log one warning if nothing answers at ``endpoint``: spans are then dropped (the exporter
    logs its own failures) while tasks go on running."""
    url = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
    port = url.port or (443 if url.scheme == "https" else 4318)
    try:
        connection = await trio.to_thread.run_sync(socket.create_connection, (url.hostname, port), timeout)
    except OSError as exc:
        logger.warning("the OpenTelemetry exporter endpoint %s is unreachable (%s); spans will be dropped "
                       "until it answers, tasks run on", endpoint, exc.strerror or exc)
    else:
        connection.close()
