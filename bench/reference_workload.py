"""The reference workload (the one the TypeScript reference publishes), so figures compare.

One iteration enqueues at once: 100 parent tasks of 50 children each (a child sleeps 1 ms and
returns a string) with a finalize task checking every child completed; 100 sequences of 4 tasks
(each sleeps 1 ms); 100 loops whose iteration sleeps 1 ms and is done once a flag is up (max 1000
attempts, 100 ms apart; the flag goes up 1 s after the executor starts). About 6,000 executions.
One warm-up and two timed iterations.

    python bench/reference_workload.py [memory|sqlite] [--iterations 2]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from collections import defaultdict

import trio

from durable_core import DurableExecutor, FinalizeInput, ParentTaskResult, child_task


def build(executor: DurableExecutor, flag: dict) -> dict[str, object]:
    @executor.task(id="child", timeout=30)
    async def child(ctx, input):
        await trio.sleep(0.001)
        return f"child {input}"

    @executor.task(id="check_children", timeout=30)
    async def check_children(ctx, input: FinalizeInput):
        if any(c.status != "completed" for c in input.children):
            raise ValueError("a child did not complete")
        return len(input.children)

    @executor.parent_task(id="parent", timeout=30, finalize=check_children)
    async def parent(ctx, input):
        return ParentTaskResult(input, [child_task(child, i) for i in range(50)])

    @executor.task(id="step", timeout=30)
    async def step(ctx, input):
        await trio.sleep(0.001)
        return input + 1

    @executor.task(id="poll_flag", timeout=30)
    async def poll_flag(ctx, input):
        await trio.sleep(0.001)
        return {"is_done": True, "output": input} if flag["up"] else {"is_done": False}

    return {
        "parent": parent,
        "sequence": executor.sequential_tasks("sequence", [step, step, step, step]),
        "loop": executor.looping_task("loop", poll_flag, max_attempts=1000, sleep_before_run=0.1),
    }


async def iteration(executor: DurableExecutor, tasks: dict[str, object]) -> float:
    started = time.perf_counter()
    handles = []
    for kind in ("parent", "sequence", "loop"):
        handles += await executor.enqueue_tasks(tasks[kind], range(100))
    async with trio.open_nursery() as nursery:
        for handle in handles:
            nursery.start_soon(handle.wait_and_get_finished_execution)
    return time.perf_counter() - started


async def report(executor: DurableExecutor) -> None:
    records = await executor.storage.list_executions(limit=10**7)
    waits = [r.started_at - r.start_at for r in records if r.started_at is not None and not r.is_sleeping]
    durations: dict[str, list[float]] = defaultdict(list)
    for r in records:
        if r.finished_at is not None and r.started_at is not None:
            durations[r.task_id].append(r.finished_at - r.started_at)
    print(f"  executions stored: {len(records)}; mean queue wait {statistics.mean(waits) * 1e3:.1f} ms")
    for task_id, values in sorted(durations.items()):
        print(f"  mean duration {task_id:16} {statistics.mean(values) * 1e3:8.1f} ms  ({len(values)})")
    for name, m in sorted(executor.get_storage_metrics().items()):
        print(f"  {name:38} count {m.count:6}  p50 {m.p50 * 1e3:7.3f} ms  p95 {m.p95 * 1e3:7.3f} ms")


async def main(storage: str, iterations: int) -> None:
    options = {"path": os.path.join(tempfile.mkdtemp(), "bench.db")} if storage == "sqlite" else None
    executor = DurableExecutor(storage, storage_options=options)
    flag = {"up": False}
    tasks = build(executor, flag)
    async with executor:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(raise_flag_later, flag)
            warmup = await iteration(executor, tasks)
        times = [await iteration(executor, tasks) for _ in range(iterations)]
        print(f"{storage}: warm-up {warmup * 1e3:.0f} ms; timed "
              + ", ".join(f"{t * 1e3:.0f} ms" for t in times)
              + f"; peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
        await report(executor)


async def raise_flag_later(flag: dict) -> None:
    await trio.sleep(1)
    flag["up"] = True


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("storage", nargs="?", default="memory")
    parser.add_argument("--iterations", type=int, default=2)
    args = parser.parse_args()
    trio.run(main, args.storage, args.iterations)
