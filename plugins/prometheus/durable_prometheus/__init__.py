"""Prometheus metrics for durable (distribution ``durable-prometheus``, plugin ``prometheus``)."""

from .plugin import PrometheusPlugin as PrometheusPlugin
