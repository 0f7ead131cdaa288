"""A sequence of parent tasks: fan out, gather, then fan out again on the result.

Elements of ``sequential_tasks`` may be parent tasks. Here "resize_all" resizes every photo in
parallel and its finalize gathers the new names; that list is the input of "upload_all", which
uploads each in parallel and gathers the URLs.

    python examples/sequential_of_parents.py [--storage memory]

Expected output: completed: ['https://photos.example.com/a_small.jpg', 'https://photos.example.com/b_small.jpg', 'https://photos.example.com/c_small.jpg']
"""

from __future__ import annotations

import trio

from durable_core import DurableExecutor, FinalizeInput, ParentTaskResult, child_task

from _cli import outcome, run_example


def gather_outputs(input: FinalizeInput) -> list:
    failed = [c.error.message for c in input.children if c.status != "completed"]
    if failed:
        raise RuntimeError(f"failed: {failed}")
    return [c.output for c in input.children]


async def main(storage: str | None) -> str:
    executor = DurableExecutor(storage)

    @executor.task(id="resize", timeout=5)
    async def resize(ctx, photo):
        await trio.sleep(0.05)
        return photo.replace(".jpg", "_small.jpg")

    @executor.task(id="upload", timeout=5)
    async def upload(ctx, photo):
        await trio.sleep(0.05)
        return f"https://photos.example.com/{photo}"

    @executor.parent_task(id="resize_all", timeout=5, finalize=gather_outputs)
    async def resize_all(ctx, photos):
        return ParentTaskResult(children=[child_task(resize, photo) for photo in photos])

    @executor.parent_task(id="upload_all", timeout=5, finalize=gather_outputs)
    async def upload_all(ctx, photos):
        return ParentTaskResult(children=[child_task(upload, photo) for photo in photos])

    publish_photos = executor.sequential_tasks("publish_photos", [resize_all, upload_all])

    async with executor:
        handle = await executor.enqueue_task(publish_photos, ["a.jpg", "b.jpg", "c.jpg"])
        return outcome(await handle.wait_and_get_finished_execution())


if __name__ == "__main__":
    run_example(main, __doc__)
