"""A fresh ``PrometheusPlugin`` per test, in a plugin registry of its own (instead of the
installed one, if any), so counts start at zero."""

from __future__ import annotations

import pytest

from durable_core.plugins.manager import PluginRegistry, get_plugin_manager
from durable_prometheus import PrometheusPlugin


@pytest.fixture
def prometheus() -> PrometheusPlugin:
    return PrometheusPlugin()


@pytest.fixture
def plugins(prometheus: PrometheusPlugin) -> PluginRegistry:
    pm = get_plugin_manager()
    if pm.get_plugin("prometheus") is not None:
        pm.unregister(name="prometheus")
    pm.register(prometheus, name="prometheus")
    return PluginRegistry.load(pm)
