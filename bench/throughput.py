"""Independent no-op tasks end to end, with the workers in this process: enqueue rate and tasks/s.

    python bench/throughput.py [memory|sqlite|...] [--tasks 10000] [--mode both|batched|one-at-a-time]
                               [--option KEY=VALUE ...]

Two ways of enqueueing, each then awaited by one trio task per handle (default executor options,
heartbeats on), on the same executor one after the other (``--mode both``, the default):

- ``one-at-a-time``: a producer trio task awaits ``enqueue_task`` once per task, as real producers
  do (one per request or event), while the executor runs them;
- ``batched``: ``enqueue_tasks`` in batches of 500.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import trio

from _harness import EndToEnd, parser, print_storage_metrics, storage_options
from durable_core import DurableExecutor, TaskExecutionHandle

BATCH = 500
MODES = ("one-at-a-time", "batched")


@dataclass
class Throughput(EndToEnd):
    cpu_seconds: float

    def __str__(self) -> str:
        return f"{super().__str__()}; CPU {self.cpu_seconds / self.tasks * 1e6:.0f} µs/task, all threads"


def define_noop(executor: DurableExecutor):
    @executor.task(id="noop", timeout=60)
    async def noop(ctx, input):
        return input

    return noop


async def enqueue(executor: DurableExecutor, n: int, mode: str) -> list[TaskExecutionHandle]:
    noop = executor.tasks["noop"]
    if mode == "one-at-a-time":
        return [await executor.enqueue_task(noop, i) for i in range(n)]
    handles = []
    for batch in range(0, n, BATCH):
        handles += await executor.enqueue_tasks(noop, range(batch, min(n, batch + BATCH)))
    return handles


async def run_tasks(executor: DurableExecutor, n: int, mode: str = "batched") -> Throughput:
    """Enqueue ``n`` no-op tasks (``mode``: one at a time or batched) and wait, one waiting trio
    task per execution."""
    cpu = time.process_time()
    started = time.perf_counter()
    handles = await enqueue(executor, n, mode)
    enqueued = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for handle in handles:
            nursery.start_soon(handle.wait_and_get_finished_execution)
    return Throughput(n, enqueued - started, time.perf_counter() - started, time.process_time() - cpu)


async def run_modes(storage: str, options: dict | None, n: int, modes: tuple[str, ...]) -> dict[str, Throughput]:
    """Each mode in turn on one executor (workers in this process); prints the figures and the
    storage's metrics."""
    executor = DurableExecutor(storage, storage_options=options)
    define_noop(executor)
    results = {}
    async with executor:
        for mode in modes:
            results[mode] = await run_tasks(executor, n, mode)
            print(f"{storage}, {mode}: {results[mode]}", flush=True)
    print_storage_metrics(executor)
    return results


if __name__ == "__main__":
    arguments = parser(__doc__)
    arguments.add_argument("--tasks", type=int, default=10_000)
    arguments.add_argument("--mode", choices=("both", *MODES), default="both")
    args = arguments.parse_args()
    trio.run(run_modes, args.storage, storage_options(args), args.tasks, MODES if args.mode == "both" else (args.mode,))
