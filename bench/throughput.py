"""Independent no-op tasks end to end (enqueued in batches of 500): enqueue rate and tasks/s.

    python bench/throughput.py [memory|sqlite] [N]
"""

import os
import sys
import tempfile
import time

import trio

from durable_core import DurableExecutor

BATCH = 500


async def main(storage: str, n: int) -> None:
    options = {"path": os.path.join(tempfile.mkdtemp(), "bench.db")} if storage == "sqlite" else None
    executor = DurableExecutor(storage, storage_options=options)

    @executor.task(id="noop", timeout=60)
    async def noop(ctx, input):
        return input

    async with executor:
        started = time.perf_counter()
        handles = []
        for batch in range(0, n, BATCH):
            handles += await executor.enqueue_tasks(noop, range(batch, min(n, batch + BATCH)))
        enqueued = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for handle in handles:
                nursery.start_soon(handle.wait_and_get_finished_execution)
        finished = time.perf_counter()
    print(f"{storage}: {n} tasks; enqueue {n / (enqueued - started):,.0f}/s; "
          f"end to end {n / (finished - started):,.0f} tasks/s ({finished - started:.2f} s)")
    for name, m in sorted(executor.get_storage_metrics().items()):
        print(f"  {name:38} count {m.count:6}  p50 {m.p50 * 1e3:7.3f} ms  p95 {m.p95 * 1e3:7.3f} ms  max {m.max * 1e3:7.3f} ms")


if __name__ == "__main__":
    trio.run(main, sys.argv[1] if len(sys.argv) > 1 else "memory", int(sys.argv[2]) if len(sys.argv) > 2 else 10_000)
