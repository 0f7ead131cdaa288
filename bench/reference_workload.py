"""The reference workload (the one the TypeScript reference publishes), so figures compare.

One iteration enqueues at once: 100 parent tasks of 50 children each (a child sleeps 1 ms and
returns a string) with a finalize task checking every child completed; 100 sequences of 4 tasks
(each sleeps 1 ms); 100 loops whose iteration sleeps 1 ms and is done once a flag is up (max 1000
attempts, 100 ms apart; the flag goes up 1 s after the executor starts). About 6,100 executions.
One warm-up and two timed iterations.

    python bench/reference_workload.py [memory|sqlite|...] [--iterations 2] [--executors 2] [--option KEY=VALUE ...]

With ``--executors 2`` a second executor shares the work: on the same storage object in this
process for a storage that lives in one process (memory), else in a worker process of its own.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from contextlib import AsyncExitStack

import trio

from _harness import parser, peak_rss_mb, print_storage_metrics, storage_options
from durable_core import DurableExecutor, FinalizeInput, ParentTaskResult, child_task, open_storage


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
    shares = Counter(r.executor_id for r in records)
    print(f"  executions stored: {len(records)}; mean queue wait {statistics.mean(waits) * 1e3:.1f} ms; "
          f"run by {len(shares)} executor(s): " + ", ".join(f"{n}" for _, n in shares.most_common()))
    for task_id, values in sorted(durations.items()):
        print(f"  mean duration {task_id:16} {statistics.mean(values) * 1e3:8.1f} ms  ({len(values)})")
    print_storage_metrics(executor)


async def raise_flag_later(flag: dict) -> None:
    await trio.sleep(1)
    flag["up"] = True


async def start_worker(storage: str, options: dict | None, stack: AsyncExitStack) -> None:
    """A worker process running a second executor until its stdin closes."""
    command = [sys.executable, __file__, storage, "--worker", json.dumps(options)]
    process = await trio.lowlevel.open_process(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    stack.push_async_callback(process.wait)
    stack.push_async_callback(process.stdin.aclose)
    assert (await process.stdout.receive_some(100)).startswith(b"ready")


async def worker(storage: str, options: dict | None) -> None:
    executor = DurableExecutor(storage, storage_options=options)
    flag = {"up": False}
    build(executor, flag)
    async with executor, trio.open_nursery() as nursery:
        nursery.start_soon(raise_flag_later, flag)
        print("ready", flush=True)
        await trio.to_thread.run_sync(sys.stdin.read)  # until the main process closes it
        nursery.cancel_scope.cancel()


async def run(storage: str, options: dict | None, iterations: int, executors: int, *,
              details: bool = True) -> list[float]:
    """The warm-up's and each timed iteration's seconds, printed; with ``details``, the report on
    every stored execution too (not for a database holding a history)."""
    flag = {"up": False}
    async with AsyncExitStack() as stack:
        shared = await stack.enter_async_context(open_storage(storage, **(options or {})))
        in_process = executors if not shared.capabilities.multi_process else 1
        local = [DurableExecutor(shared) for _ in range(in_process)]
        tasks = build(local[0], flag)
        for executor in local[1:]:  # every executor defines the same tasks
            build(executor, flag)
        for executor in local:
            await stack.enter_async_context(executor)
        for _ in range(executors - in_process):
            await start_worker(storage, options, stack)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(raise_flag_later, flag)
            warmup = await iteration(local[0], tasks)
        times = [await iteration(local[0], tasks) for _ in range(iterations)]
        print(f"{storage}, {executors} executor(s): warm-up {warmup * 1e3:.0f} ms; timed "
              + ", ".join(f"{t * 1e3:.0f} ms" for t in times)
              + f"; peak RSS {peak_rss_mb():.0f} MB (this process)", flush=True)
        if details:
            await report(local[0])
    return [warmup, *times]


if __name__ == "__main__":
    arguments = parser(__doc__)
    arguments.add_argument("--iterations", type=int, default=2)
    arguments.add_argument("--executors", type=int, default=1, choices=(1, 2))
    arguments.add_argument("--worker", metavar="OPTIONS_JSON", help="(internal) be the second executor")
    args = arguments.parse_args()
    if args.worker is not None:
        trio.run(worker, args.storage, json.loads(args.worker))
    else:
        trio.run(run, args.storage, storage_options(args), args.iterations, args.executors)
