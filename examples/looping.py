"""A looping task: poll until something outside is done, with a pause between iterations.

``executor.looping_task(id, iteration, max_attempts, sleep_before_run)`` reruns ``iteration``
with the loop's input until it returns ``{"is_done": True, "output": x}``; the loop then completes
with ``{"is_success": True, "output": x}`` (or ``{"is_success": False}`` after ``max_attempts``
iterations that were not done). Here a simulated CI build finishes after half a second.

    python examples/looping.py [--storage memory]

Expected output: completed: {'is_success': True, 'output': 'build 42 passed'}
"""

from __future__ import annotations

import trio

from durable_core import DurableExecutor

from _cli import outcome, run_example

builds_done: set[int] = set()  # stands in for a CI server's API


async def run_build(number: int) -> None:
    await trio.sleep(0.5)
    builds_done.add(number)


async def main(storage: str | None) -> str:
    executor = DurableExecutor(storage)

    @executor.task(id="check_build", timeout=5)
    async def check_build(ctx, number):
        if number not in builds_done:
            print(f"build {number}: still running")
            return {"is_done": False}
        return {"is_done": True, "output": f"build {number} passed"}

    wait_for_build = executor.looping_task("wait_for_build", check_build, max_attempts=50, sleep_before_run=0.1)

    async with executor, trio.open_nursery() as nursery:
        nursery.start_soon(run_build, 42)
        handle = await executor.enqueue_task(wait_for_build, 42)
        return outcome(await handle.wait_and_get_finished_execution())


if __name__ == "__main__":
    run_example(main, __doc__)
