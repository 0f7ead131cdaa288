"""What every benchmark shares: choosing the storage on the command line, and printing figures."""

from __future__ import annotations

import argparse
import atexit
import os
import resource
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from durable_core.storage.opening import parse_option

# The figures are the engine's own: the observability plugins a development install has beside it
# (durable-otel, durable-prometheus) stay out, here and in the worker processes the benchmarks
# start; bench/observability.py measures what they cost.
os.environ.setdefault("DURABLE_DISABLE_PLUGINS", "otel,prometheus")

from durable_core import DurableExecutor


def parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser taking ``STORAGE [--option KEY=VALUE ...]``."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("storage", nargs="?", default="memory", help="an installed storage: memory, sqlite, ...")
    parser.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                        help="an option for the storage (JSON values parsed); repeatable")
    return parser


def storage_options(args: argparse.Namespace) -> dict[str, Any] | None:
    """The storage's options from ``--option``: each call a fresh storage unless one is named. SQLite
    gets a new file unless a ``path`` is given; a database server (a ``dsn``) a new schema unless a
    ``schema`` is given, dropped when the benchmark exits (an old one's rows would slow every figure)."""
    options = dict(parse_option(text) for text in args.option)
    if args.storage == "sqlite":
        options.setdefault("path", os.path.join(tempfile.mkdtemp(), "bench.db"))
    if "dsn" in options and "schema" not in options:
        options["schema"] = f"bench_{uuid.uuid4().hex[:12]}"
        atexit.register(drop_schema, options)
    return options or None


def drop_schema(options: dict[str, Any] | None) -> None:
    """Drop the schema ``storage_options`` made on a database server, and all in it."""
    if options is not None and "dsn" in options and "schema" in options:
        import psycopg  # only with a database server

        with psycopg.connect(options["dsn"], autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{options["schema"]}" CASCADE')


@dataclass
class EndToEnd:
    """``tasks`` enqueued one after another in ``enqueue_seconds``, all finished ``total_seconds``
    after the first enqueue began."""
    tasks: int
    enqueue_seconds: float
    total_seconds: float

    @property
    def enqueue_rate(self) -> float:
        return self.tasks / self.enqueue_seconds

    @property
    def per_second(self) -> float:
        return self.tasks / self.total_seconds

    def __str__(self) -> str:
        return (f"{self.tasks} tasks; enqueue {self.enqueue_rate:,.0f}/s; "
                f"end to end {self.per_second:,.0f} tasks/s ({self.total_seconds:.2f} s)")


def poll_until(done: Callable[[], bool], what: str, timeout: float = 300, interval: float = 0.005) -> None:
    """Until ``done()`` (asked every ``interval`` seconds, only once the enqueues are over, so that
    asking costs the figure at most one interval)."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} not done after {timeout:.0f} s")
        time.sleep(interval)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def print_storage_metrics(executor: DurableExecutor) -> None:
    for name, m in sorted(executor.get_storage_metrics().items()):
        print(f"  {name:38} count {m.count:7}  p50 {m.p50 * 1e3:7.3f} ms  p95 {m.p95 * 1e3:7.3f} ms"
              f"  max {m.max * 1e3:8.3f} ms")
