"""Throughput of no-op tasks without observability plugins, with each alone and with both
(prometheus and otel, spans recorded by the OpenTelemetry SDK and exported in batches; then with
10 % of traces sampled, as production setups often do, and with none: what the plugins cost
besides recording spans), in one process, rounds alternating so that all see the same machine.

    python bench/observability.py [memory|sqlite|...] [--tasks 5000] [--rounds 3] [--work-ms 0]
                                  [--option KEY=VALUE ...]

``--work-ms N``: each task computes for N ms (a busy loop, holding trio's thread as CPU-bound work
does) instead of returning at once: what the plugins cost beside tasks that do something.

Needs durable-prometheus and durable-otel importable (installed, or on PYTHONPATH); "without"
leaves them out of the executor's plugins even if they are installed.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence

import trio
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, TraceIdRatioBased
from throughput import define_noop, run_tasks

from _harness import parser, storage_options
from durable_core import DurableExecutor
from durable_core.plugins.manager import PluginRegistry, get_plugin_manager
from durable_otel import OtelPlugin
from durable_prometheus import PrometheusPlugin

OBSERVABILITY_PLUGINS = ("prometheus", "otel")


class Dropped(SpanExporter):
    """An exporter that counts the spans handed to it (the network is not what is measured)."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


def plugins(*extra: object) -> PluginRegistry:
    """The installed plugins minus prometheus and otel, plus ``extra``."""
    pm = get_plugin_manager()
    for name in OBSERVABILITY_PLUGINS:
        if pm.get_plugin(name) is not None:
            pm.unregister(name=name)
    for plugin in extra:
        pm.register(plugin)
    return PluginRegistry.load(pm)


def define_working(executor: DurableExecutor, work_seconds: float) -> None:
    """``noop`` (the name ``run_tasks`` enqueues) as a task computing for ``work_seconds``."""

    @executor.task(id="noop", timeout=60)
    async def working(ctx, input):
        until = time.perf_counter() + work_seconds
        while time.perf_counter() < until:
            pass
        return input


async def measure(storage: str, options: dict | None, n: int, registry: PluginRegistry,
                  work_seconds: float) -> tuple[float, float]:
    """Tasks per second, and CPU microseconds per task (all threads: the span exporter's too)."""
    executor = DurableExecutor(storage, storage_options=options, plugins=registry)
    if work_seconds:
        define_working(executor, work_seconds)
    else:
        define_noop(executor)
    async with executor:
        result = await run_tasks(executor, n)
    return result.tasks / result.total_seconds, result.cpu_seconds / result.tasks * 1e6


async def main(storage: str, args: argparse.Namespace, n: int, rounds: int, work_seconds: float) -> None:
    """Each measurement on a fresh storage (``storage_options``): on one file, the later would run
    on the rows of the earlier and seem slower."""
    exporter = Dropped()
    providers = [TracerProvider(), TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.1))),
                 TracerProvider(sampler=ALWAYS_OFF)]
    for provider in providers:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    every, sampled, unsampled = providers
    registries = {
        "without observability plugins": plugins(),
        "with prometheus only": plugins(PrometheusPlugin()),
        "with otel only": plugins(OtelPlugin(every)),
        "with prometheus and otel": plugins(PrometheusPlugin(), OtelPlugin(every)),
        "with both, 10 % of traces sampled": plugins(PrometheusPlugin(), OtelPlugin(sampled)),
        "with both, no trace sampled": plugins(PrometheusPlugin(), OtelPlugin(unsampled)),
    }
    await measure(storage, storage_options(args), min(n, 500), registries["with prometheus and otel"],
                  work_seconds)  # warm-up
    figures: dict[str, list[tuple[float, float]]] = {name: [] for name in registries}
    for _ in range(rounds):
        for name, registry in registries.items():
            figures[name].append(await measure(storage, storage_options(args), n, registry, work_seconds))
    for provider in providers:
        provider.shutdown()
    tasks = f"tasks of {work_seconds * 1000:g} ms of work" if work_seconds else "no-op tasks"
    print(f"{storage}: {n} {tasks}, median of {rounds} rounds ({exporter.spans} spans exported)")
    plain = statistics.median(rate for rate, _ in figures["without observability plugins"])
    for name, runs in figures.items():
        rate, cpu = statistics.median(rate for rate, _ in runs), statistics.median(cpu for _, cpu in runs)
        print(f"  {name:34} {rate:7,.0f} tasks/s ({(rate / plain - 1) * 100:+5.1f} %), CPU {cpu:.0f} µs/task")

if __name__ == "__main__":
    arguments = parser(__doc__)
    arguments.add_argument("--tasks", type=int, default=5000)
    arguments.add_argument("--rounds", type=int, default=3)
    arguments.add_argument("--work-ms", type=float, default=0.0, help="each task computes this long (default 0: no-op)")
    args = arguments.parse_args()
    if not 0 <= args.work_ms <= 60_000:
        arguments.error(f"--work-ms: expected 0 to 60000 (ms of work per task), got {args.work_ms:g}")
    trio.run(main, args.storage, args, args.tasks, args.rounds, args.work_ms / 1000)
