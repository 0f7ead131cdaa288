"""Enqueue → started latency for single tasks into an idle executor, in the same process and
from another process.

    python bench/latency.py [memory|sqlite|...] [--samples 200] [--from-process] [--option KEY=VALUE ...]

Each sample enqueues one no-op task, waits for it to finish, then idles 20 ms so the executor is
idle again; latency is ``started_at - created_at`` as stored (the executors' clocks are all
anchored on the machine's wall clock). With ``--from-process`` a client process (an executor
that runs nothing) enqueues and waits, and this process only runs the tasks: the figure then
includes how fast the storage tells an idle executor of another process's work.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

import trio

from _harness import parser, storage_options
from durable_core import DurableExecutor


def define_noop(executor: DurableExecutor):
    @executor.task(id="noop", timeout=10)
    async def noop(ctx, input):
        return None

    return noop


async def measure(executor: DurableExecutor, samples: int) -> list[float]:
    """Enqueue one task at a time; returns the latencies in seconds (after 10 warm-up samples)."""
    latencies = []
    for i in range(samples + 10):
        finished = await (await executor.enqueue_task("noop", i)).wait_and_get_finished_execution()
        if i >= 10:
            latencies.append((finished.started_at - finished.created_at).total_seconds())
        await trio.sleep(0.02)
    return latencies


async def client(storage: str, options: dict | None, samples: int) -> None:
    executor = DurableExecutor(storage, storage_options=options, max_concurrent_task_executions=0)
    define_noop(executor)
    async with executor:
        print(json.dumps(await measure(executor, samples)))


async def main(storage: str, options: dict | None, samples: int, from_process: bool) -> None:
    executor = DurableExecutor(storage, storage_options=options)
    define_noop(executor)
    async with executor:
        if from_process and not executor.storage.capabilities.multi_process:
            raise SystemExit(f"--from-process needs a storage shared by processes; {storage!r} is not")
        if from_process:
            command = [sys.executable, __file__, storage, "--client", json.dumps(options), "--samples", str(samples)]
            result = await trio.run_process(command, capture_stdout=True)
            latencies = json.loads(result.stdout)
        else:
            latencies = await measure(executor, samples)
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    where = "from another process" if from_process else "in process"
    print(f"{storage}: enqueue -> started, {where}, {samples} samples: "
          f"p50 {statistics.median(latencies) * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms")


if __name__ == "__main__":
    arguments = parser(__doc__)
    arguments.add_argument("--samples", type=int, default=200)
    arguments.add_argument("--from-process", action="store_true")
    arguments.add_argument("--client", metavar="OPTIONS_JSON", help="(internal) be the enqueuing client")
    args = arguments.parse_args()
    if args.client is not None:
        trio.run(client, args.storage, json.loads(args.client), args.samples)
    else:
        trio.run(main, args.storage, storage_options(args), args.samples, args.from_process)
