"""OpenTelemetry traces for durable (distribution ``durable-otel``, plugin ``otel``)."""

from .plugin import OtelPlugin as OtelPlugin
