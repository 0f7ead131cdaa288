"""Scale: does the cost of a task grow with history, and what does a big backlog cost in memory?

    python bench/scale.py history [--history 10000 1000000] [--tasks 10000] [--option KEY=VALUE ...]
    python bench/scale.py backlog [memory|sqlite|...] [--pending 100000]

``history``: for each size, a fresh SQLite file gets that many finished executions (inserted in
batches, not timed), then 10,000 independent no-op tasks run end to end on it
(``throughput.run_tasks``); the last line compares the largest history with the smallest.
``backlog``: enqueue ``--pending`` tasks while no executor claims, report the process's peak RSS,
then run them all to completion and report the peak RSS and tasks/s again.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import trio

from _harness import peak_rss_mb, storage_options
from durable_core import DurableExecutor, open_storage
from durable_core.records import new_record
from durable_core.status import TaskExecutionStatus as S
from throughput import define_noop, run_tasks

SEED_BATCH = 2000


async def seed_history(executor: DurableExecutor, count: int) -> None:
    """``count`` completed executions, as if run long ago."""
    noop = executor.tasks["noop"]
    output = executor.encode("done", "noop", "output")
    now = executor.now() - 86_400
    for start in range(0, count, SEED_BATCH):
        records = []
        for i in range(start, min(count, start + SEED_BATCH)):
            record = new_record(noop, i, now, executor.codec)
            records.append(record.copy(status=S.COMPLETED, output=output, started_at=now, finished_at=now,
                                       ready_at=None, retry_attempts=0))
        await executor.storage.insert_executions(records)


async def history(sizes: list[int], tasks: int, options: dict) -> None:
    rates = {}
    for size in sizes:
        path = os.path.join(tempfile.mkdtemp(), "bench.db")
        executor = DurableExecutor("sqlite", storage_options={**options, "path": path})
        define_noop(executor)
        async with executor:
            seeding = time.perf_counter()
            await seed_history(executor, size)
            seeding = time.perf_counter() - seeding
            result = await run_tasks(executor, tasks)
        rates[size] = tasks / result.total_seconds
        print(f"sqlite with {size:,} finished executions (seeded in {seeding:.1f} s, "
              f"file {os.path.getsize(path) / 2**20:,.0f} MiB): {result}")
    low, high = min(sizes), max(sizes)
    print(f"throughput with {high:,} finished rows is {rates[high] / rates[low]:.0%} of that with {low:,}")


async def backlog(storage: str, options: dict | None, pending: int) -> None:
    async with open_storage(storage, **(options or {})) as shared:
        client = DurableExecutor(shared, max_concurrent_task_executions=0)
        define_noop(client)
        async with client:
            for start in range(0, pending, SEED_BATCH):
                await client.enqueue_tasks("noop", range(start, min(pending, start + SEED_BATCH)))
        print(f"{storage}: {pending:,} pending executions enqueued; peak RSS {peak_rss_mb():.0f} MB")
        worker = DurableExecutor(shared)
        define_noop(worker)
        started = time.perf_counter()
        async with worker:
            while await shared.list_executions(statuses=[S.READY, S.RUNNING], limit=1):
                await trio.sleep(0.05)
        elapsed = time.perf_counter() - started
    print(f"{storage}: ran them all in {elapsed:.1f} s ({pending / elapsed:,.0f} tasks/s); "
          f"peak RSS {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("mode", choices=("history", "backlog"))
    arguments.add_argument("storage", nargs="?", default="sqlite")
    arguments.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE")
    arguments.add_argument("--history", type=int, nargs="+", default=[10_000, 1_000_000])
    arguments.add_argument("--tasks", type=int, default=10_000)
    arguments.add_argument("--pending", type=int, default=100_000)
    args = arguments.parse_args()
    if args.mode == "history":
        trio.run(history, args.history, args.tasks, storage_options(args) or {})
    else:
        trio.run(backlog, args.storage, storage_options(args), args.pending)
