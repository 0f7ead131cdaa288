"""A peer in the same run: huey's SQLite backend and ours on the same work, alternating.

    python bench/peer_huey.py [--tasks 10000] [--rounds 3]

The shape, for both, in each round: a fresh SQLite file; one worker process, started and idle (a
first task run and waited for); from this process, ``--tasks`` no-op tasks enqueued one call at a
time; done once the worker has run them all (asked every 5 ms, only after the enqueues). Printed:
the enqueue rate, and tasks/s end to end from the first enqueue to the last task finished.

- huey 3.5 (``SqliteHuey``, a dev dependency): its consumer ``huey_consumer MODULE.huey -w 2 -k
  thread -q`` (one process, two worker threads, default polling); its result store on, since ours
  stores every output (the no-op returns its input, which huey stores); done when it holds
  ``--tasks`` results. SQLite set as ours sets it: WAL, ``synchronous=NORMAL`` (huey's default,
  ``FULL``, would add an fsync per commit).
- durable: ``Client.enqueue`` into ``durable worker _noop_worker:executor`` (default options);
  done when no execution is ready or running (``clients.client_end_to_end``).

Rounds alternate which goes first. The issue's goal: ours at least 2x huey's end-to-end rate and
1.5x its enqueue rate.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

from _harness import EndToEnd, poll_until
from clients import client_end_to_end

HUEY_MODULE = '''
from huey import SqliteHuey
from huey.storage import SqliteStorage


class Storage(SqliteStorage):
    def _create_connection(self):
        connection = super()._create_connection()
        connection.execute("PRAGMA synchronous = NORMAL")
        return connection


huey = SqliteHuey("bench", filename={path!r}, storage_class=Storage)


@huey.task()
def noop(n):
    return n
'''


def huey_module(directory: Path) -> ModuleType:
    """The huey application and its no-op task, in a module of its own in ``directory`` (which
    the consumer imports from its working directory, and this process from ``sys.path``)."""
    name = f"huey_bench_{directory.name}"
    (directory / f"{name}.py").write_text(HUEY_MODULE.format(path=str(directory / "huey.db")), encoding="utf-8")
    sys.path.insert(0, str(directory))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(directory))


@contextmanager
def huey_consumer(directory: Path, module: ModuleType) -> Iterator[None]:
    """One consumer process with two worker threads, stopped gracefully (SIGINT) at the end."""
    consumer = subprocess.Popen([sys.executable, "-m", "huey.bin.huey_consumer", f"{module.__name__}.huey",
                                 "-w", "2", "-k", "thread", "-q"], cwd=directory)
    try:
        yield
    finally:
        consumer.send_signal(signal.SIGINT)
        try:
            consumer.wait(timeout=30)
        except subprocess.TimeoutExpired:
            consumer.kill()
            consumer.wait()


def huey_end_to_end(n: int) -> EndToEnd:
    with tempfile.TemporaryDirectory() as directory:
        return huey_run(Path(directory), n)


def huey_run(directory: Path, n: int) -> EndToEnd:
    module = huey_module(directory)
    with huey_consumer(directory, module):
        module.noop(-1).get(blocking=True, timeout=60)  # the consumer is up and idle
        started = time.perf_counter()
        for i in range(n):
            module.noop(i)
        enqueued = time.perf_counter()
        poll_until(lambda: module.huey.result_count() >= n, "huey's consumer")
        return EndToEnd(n, enqueued - started, time.perf_counter() - started)


def durable_end_to_end(n: int) -> EndToEnd:
    with tempfile.TemporaryDirectory() as directory:
        return client_end_to_end("sqlite", {"path": os.path.join(directory, "durable.db")}, n)


def main(n: int, rounds: int) -> None:
    peers = {"huey": huey_end_to_end, "durable": durable_end_to_end}
    measured: dict[str, list[EndToEnd]] = {name: [] for name in peers}
    for round in range(rounds):
        for name in sorted(peers, reverse=round % 2 == 1):
            measured[name].append(peers[name](n))
            print(f"round {round + 1}, {name:7}: {measured[name][-1]}", flush=True)
    ours, huey = measured["durable"], measured["huey"]
    for figure, rate, goal in (("end to end", "per_second", 2.0), ("enqueue", "enqueue_rate", 1.5)):
        ratios = [getattr(o, rate) / getattr(h, rate) for o, h in zip(ours, huey)]
        print(f"{figure:10}: durable {statistics.median(getattr(r, rate) for r in ours):>7,.0f}/s, "
              f"huey {statistics.median(getattr(r, rate) for r in huey):>7,.0f}/s (medians); ours/huey "
              + ", ".join(f"{ratio:.2f}x" for ratio in ratios) + f" by round (goal >= {goal}x)")


if __name__ == "__main__":
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("--tasks", type=int, default=10_000, help="no-op tasks per run (default 10000)")
    arguments.add_argument("--rounds", type=int, default=3, help="runs of each, alternating (default 3)")
    args = arguments.parse_args()
    main(args.tasks, args.rounds)
