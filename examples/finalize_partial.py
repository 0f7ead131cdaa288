"""Partial success: a finalize that keeps the children that succeeded.

Children run in parallel and some fail (after their own retries). The finalize receives all of
them, in the order the parent returned them, and completes the parent with the good outputs plus a
list of what failed.

    python examples/finalize_partial.py [--storage memory]

Expected output: completed: {'thumbnails': ['cat.jpg.thumb', 'sunset.jpg.thumb'], 'failed': {'broken.jpg': 'not an image'}}
"""

from __future__ import annotations

import trio

from durable_core import DurableExecutor, FinalizeInput, ParentTaskResult, RetryOptions, child_task

from _cli import outcome, run_example


async def main(storage: str | None) -> str:
    executor = DurableExecutor(storage)

    @executor.task(id="make_thumbnail", timeout=5, retry=RetryOptions(max_attempts=1, base_delay=0.1))
    async def make_thumbnail(ctx, image):
        await trio.sleep(0.1)
        if image.startswith("broken"):
            raise ValueError("not an image")
        return f"{image}.thumb"

    def keep_successes(input: FinalizeInput) -> dict:
        outcomes = list(zip(input.input, input.children, strict=True))
        return {
            "thumbnails": [c.output for _, c in outcomes if c.status == "completed"],
            "failed": {image: c.error.message for image, c in outcomes if c.status != "completed"},
        }

    @executor.parent_task(id="make_thumbnails", timeout=5, finalize=keep_successes)
    async def make_thumbnails(ctx, images):
        return ParentTaskResult(children=[child_task(make_thumbnail, image) for image in images])

    async with executor:
        handle = await executor.enqueue_task(make_thumbnails, ["cat.jpg", "broken.jpg", "sunset.jpg"])
        return outcome(await handle.wait_and_get_finished_execution())


if __name__ == "__main__":
    run_example(main, __doc__)
