"""What every benchmark shares: choosing the storage on the command line, and printing figures."""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
from typing import Any

from durable_core.storage.opening import parse_option

from durable_core import DurableExecutor


def parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser taking ``STORAGE [--option KEY=VALUE ...]``."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("storage", nargs="?", default="memory", help="an installed storage: memory, sqlite, ...")
    parser.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                        help="an option for the storage (JSON values parsed); repeatable")
    return parser


def storage_options(args: argparse.Namespace) -> dict[str, Any] | None:
    """The storage's options from ``--option``; SQLite gets a fresh file unless a path is given."""
    options = dict(parse_option(text) for text in args.option)
    if args.storage == "sqlite":
        options.setdefault("path", os.path.join(tempfile.mkdtemp(), "bench.db"))
    return options or None


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def print_storage_metrics(executor: DurableExecutor) -> None:
    for name, m in sorted(executor.get_storage_metrics().items()):
        print(f"  {name:38} count {m.count:7}  p50 {m.p50 * 1e3:7.3f} ms  p95 {m.p95 * 1e3:7.3f} ms"
              f"  max {m.max * 1e3:8.3f} ms")
