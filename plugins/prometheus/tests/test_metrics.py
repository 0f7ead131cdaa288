"""The metrics after real work, read as Prometheus reads them: the text format, parsed by
``prometheus_client.parser``. In virtual time on the memory storage (the ``durable`` fixture)."""

from __future__ import annotations

import math

import trio
from prometheus_client.parser import text_string_to_metric_families

from durable_core import RetryOptions
from durable_core.plugins.manager import PluginRegistry
from durable_prometheus import PrometheusPlugin
from durable_prometheus.metrics import POLL_INTERVAL


def scrape(plugins: PluginRegistry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of ``GET /metrics``, by name and labels."""
    content_type, body = plugins.http_endpoints()["/metrics"]()
    assert content_type.startswith("text/plain; version=")
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(body.decode()) for sample in family.samples}


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_executions_attempts_retries_queue_and_storage(durable, plugins, prometheus: PrometheusPlugin):
    ex = durable.executor(plugins=plugins, max_concurrent_task_executions=1)

    @ex.task(id="work", timeout=60)
    async def work(ctx, input):
        await trio.sleep(10)

    @ex.task(id="flaky", timeout=60, retry=RetryOptions(max_attempts=1, base_delay=3))
    async def flaky(ctx, input):
        await trio.sleep(1)
        if ctx.attempt == 0:
            raise RuntimeError("once")

    @ex.task(id="fatal", timeout=60)
    async def fatal(ctx, input):
        raise ValueError("never")

    async with ex:
        later = await ex.enqueue_task(work, sleep_before_run=3600)
        first, second = await ex.enqueue_tasks(work, [1, 2])  # one at a time: the second waits 10 s
        await second.wait_and_get_finished_execution()
        await first.wait_and_get_finished_execution()
        await durable.run_task(ex, flaky)
        await durable.run_task(ex, fatal)
        await trio.sleep(POLL_INTERVAL * 1.5)  # a look at the storage since
        samples = scrape(plugins)
        await later.cancel()

    assert value(samples, "durable_executions_finished_total", task="work", status="completed") == 2
    assert value(samples, "durable_executions_finished_total", task="flaky", status="completed") == 1
    assert value(samples, "durable_executions_finished_total", task="fatal", status="failed") == 1
    assert value(samples, "durable_retries_total", task="flaky") == 1
    assert value(samples, "durable_attempt_duration_seconds_count", task="work", outcome="completed") == 2
    assert math.isclose(value(samples, "durable_attempt_duration_seconds_sum", task="work", outcome="completed"), 20)
    assert value(samples, "durable_attempt_duration_seconds_bucket", task="work", outcome="completed", le="5.0") == 0
    assert value(samples, "durable_attempt_duration_seconds_bucket", task="work", outcome="completed", le="10.0") == 2
    assert value(samples, "durable_attempt_duration_seconds_count", task="flaky", outcome="retried") == 1
    assert value(samples, "durable_attempt_duration_seconds_count", task="fatal", outcome="failed") == 1
    # the second 'work' was due with the first but claimed when the first ended, 10 s later
    assert value(samples, "durable_claim_delay_seconds_count", task="work") == 2
    assert math.isclose(value(samples, "durable_claim_delay_seconds_sum", task="work"), 10)
    assert value(samples, "durable_ready_executions", task="work") == 1  # 'later', due in an hour
    assert value(samples, "durable_executions", status="ready") == 1
    assert value(samples, "durable_executions", status="completed") == 3
    assert value(samples, "durable_storage_operation_seconds_count", operation="commit_runs") >= 3
    assert value(samples, "durable_storage_operation_seconds_sum", operation="commit_runs") > 0
    assert ("durable_storage_operation_seconds", frozenset({("operation", "commit_runs"), ("quantile", "0.5")})) in samples
    assert value(samples, "durable_lease_expirations_total", task="work") == 0


async def test_lease_expirations_are_counted(durable, plugins):
    ex = durable.executor(plugins=plugins, lease_duration=5.0, heartbeat_interval=2.0)

    @ex.task(id="work", timeout=60)
    async def work(ctx, input):
        return input

    async with ex:
        handle = await ex.enqueue_task(work, 1, sleep_before_run=100)
        # a worker that claims it when due and dies: its lease expires, this one runs it
        (claimed,) = await ex.storage.claim_executions("de_dead", ex.now() + 100, 1, 5.0)
        assert claimed.execution_id == handle.execution_id
        assert (await handle.wait_and_get_finished_execution()).output == 1
    samples = scrape(plugins)
    assert value(samples, "durable_lease_expirations_total", task="work") == 1
    assert value(samples, "durable_executions_finished_total", task="work", status="completed") == 1
