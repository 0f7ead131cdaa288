"""Independent no-op tasks end to end (enqueued in batches of 500): enqueue rate and tasks/s.

    python bench/throughput.py [memory|sqlite|...] [--tasks 10000] [--option KEY=VALUE ...]
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import trio

from _harness import parser, print_storage_metrics, storage_options
from durable_core import DurableExecutor

BATCH = 500


@dataclass
class Throughput:
    tasks: int
    enqueue_seconds: float
    total_seconds: float
    cpu_seconds: float

    def __str__(self) -> str:
        return (f"{self.tasks} tasks; enqueue {self.tasks / self.enqueue_seconds:,.0f}/s; "
                f"end to end {self.tasks / self.total_seconds:,.0f} tasks/s ({self.total_seconds:.2f} s; "
                f"CPU {self.cpu_seconds / self.tasks * 1e6:.0f} µs/task, all threads)")


def define_noop(executor: DurableExecutor):
    @executor.task(id="noop", timeout=60)
    async def noop(ctx, input):
        return input

    return noop


async def run_tasks(executor: DurableExecutor, n: int) -> Throughput:
    """Enqueue ``n`` no-op tasks in batches and wait, one waiting trio task per execution."""
    noop = executor.tasks["noop"]
    cpu = time.process_time()
    started = time.perf_counter()
    handles = []
    for batch in range(0, n, BATCH):
        handles += await executor.enqueue_tasks(noop, range(batch, min(n, batch + BATCH)))
    enqueued = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for handle in handles:
            nursery.start_soon(handle.wait_and_get_finished_execution)
    return Throughput(n, enqueued - started, time.perf_counter() - started, time.process_time() - cpu)


async def main(storage: str, options: dict | None, n: int) -> None:
    executor = DurableExecutor(storage, storage_options=options)
    define_noop(executor)
    async with executor:
        result = await run_tasks(executor, n)
    print(f"{storage}: {result}")
    print_storage_metrics(executor)


if __name__ == "__main__":
    arguments = parser(__doc__)
    arguments.add_argument("--tasks", type=int, default=10_000)
    args = arguments.parse_args()
    trio.run(main, args.storage, storage_options(args), args.tasks)
