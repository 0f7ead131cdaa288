"""Enqueue → started latency for single tasks into an idle executor, in the same process.

    python bench/latency.py [memory|sqlite] [--samples 200]

Each sample enqueues one no-op task, waits for it to finish, then idles 20 ms so the executor is
idle again; latency is ``started_at - created_at`` as stored (both from the executor's clock).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile

import trio

from durable_core import DurableExecutor


async def main(storage: str, samples: int) -> None:
    options = {"path": os.path.join(tempfile.mkdtemp(), "bench.db")} if storage == "sqlite" else None
    executor = DurableExecutor(storage, storage_options=options)

    @executor.task(id="noop", timeout=10)
    async def noop(ctx, input):
        return None

    latencies = []
    async with executor:
        for i in range(samples + 10):
            finished = await (await executor.enqueue_task(noop, i)).wait_and_get_finished_execution()
            if i >= 10:  # warm-up
                latencies.append((finished.started_at - finished.created_at).total_seconds())
            await trio.sleep(0.02)
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    print(f"{storage}: enqueue -> started, in process, {samples} samples: "
          f"p50 {statistics.median(latencies) * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("storage", nargs="?", default="memory")
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    trio.run(main, args.storage, args.samples)
