"""A worker process for the multi-process tests: runs the shared tasks on a storage until SIGTERM
(graceful) or SIGKILL. Every run appends ``start``/``end`` lines to its own log.

    python tests/processes/worker.py STORAGE OPTIONS_JSON LOG_DIR [EXPIRE_LEEWAY]
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import trio

from durable_core import DurableExecutor, ParentTaskResult, RetryOptions, child_task


FLAG_AT = time.time() + 1.0
"""The looping tasks' flag goes up 1 s after the worker starts, as in the reference workload."""


def define(executor: DurableExecutor, log) -> dict:
    def record(event: str, ctx) -> None:
        log.write(f"{event} {ctx.execution_id} {ctx.attempt} {os.getpid()} {time.time():.6f}\n")
        log.flush()

    @executor.task(id="work", timeout=30, retry=RetryOptions(max_attempts=2))
    async def work(ctx, input):
        record("start", ctx)
        await trio.sleep(0.001 * (input % 5))
        if input % 7 == 0 and ctx.attempt == 0:
            record("end", ctx)
            raise RuntimeError("fails once")
        record("end", ctx)
        return input * 2

    def killed_in_its_first_run(task_id: str, timeout: float):
        """A task whose first run waits until its worker is killed (or its timeout ends it); run
        again, it returns the message of the error that ended the first run."""

        @executor.task(id=task_id, timeout=timeout)
        async def wait_to_be_killed(ctx, input):
            record("start", ctx)
            if ctx.prev_error is None:
                await trio.sleep_forever()
            record("end", ctx)
            return ctx.prev_error.message

        return wait_to_be_killed

    slow = killed_in_its_first_run("slow", timeout=3)
    long = killed_in_its_first_run("long", timeout=3600)

    # the reference workload (bench/reference_workload.py), each run logged
    @executor.task(id="child", timeout=30)
    async def child(ctx, input):
        record("start", ctx)
        await trio.sleep(0.001)
        record("end", ctx)
        return f"child {input}"

    @executor.task(id="check_children", timeout=30)
    async def check_children(ctx, input):
        record("start", ctx)
        record("end", ctx)
        if len(input.children) != 50 or any(c.status != "completed" for c in input.children):
            raise ValueError("a child did not complete")
        return len(input.children)

    @executor.parent_task(id="parent", timeout=30, finalize=check_children)
    async def parent(ctx, input):
        record("start", ctx)
        record("end", ctx)
        return ParentTaskResult(input, [child_task(child, i) for i in range(50)])

    @executor.task(id="step", timeout=30)
    async def step(ctx, input):
        record("start", ctx)
        await trio.sleep(0.001)
        record("end", ctx)
        return input + 1

    @executor.task(id="poll_flag", timeout=30)
    async def poll_flag(ctx, input):
        record("start", ctx)
        await trio.sleep(0.001)
        record("end", ctx)
        return {"is_done": True, "output": input} if time.time() >= FLAG_AT else {"is_done": False}

    return {"work": work, "slow": slow, "long": long, "parent": parent,
            "sequence": executor.sequential_tasks("sequence", [step, step, step, step]),
            "loop": executor.looping_task("loop", poll_flag, max_attempts=1000, sleep_before_run=0.1)}


async def main(storage: str, options: str, log_dir: str, expire_leeway: float) -> None:
    with open(os.path.join(log_dir, f"{os.getpid()}.log"), "a") as log:
        executor = DurableExecutor(storage, storage_options=json.loads(options), poll_interval=0.1,
                                   expire_leeway=expire_leeway, max_concurrent_task_executions=50)
        define(executor, log)
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with executor:
                print("ready", flush=True)
                async for _ in signals:
                    break


if __name__ == "__main__":
    trio.run(main, sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]) if len(sys.argv) > 4 else 300.0)
