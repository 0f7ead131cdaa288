"""A fresh ``OtelPlugin`` per test exporting to the SDK's ``InMemorySpanExporter``, in a plugin
registry of its own (instead of the installed one, if any)."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from durable_core.plugins.manager import PluginRegistry, get_plugin_manager
from durable_otel import OtelPlugin


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


@pytest.fixture
def plugins(provider: TracerProvider) -> PluginRegistry:
    pm = get_plugin_manager()
    if pm.get_plugin("otel") is not None:
        pm.unregister(name="otel")
    pm.register(OtelPlugin(provider), name="otel")
    return PluginRegistry.load(pm)
