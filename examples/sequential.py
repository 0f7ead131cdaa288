"""Sequential tasks: a pipeline where each task's output is the next task's input.

``executor.sequential_tasks(id, [download, transcode, publish])`` is itself a task: its input
goes to the first element and the last element's output is its output. A failing element (after
its own retries) would end the sequence ``finalize_failed``, naming the element's index.

    python examples/sequential.py [--storage memory]

Expected output: completed: {'video': 'talk.mp4', 'formats': ['720p', '1080p'], 'url': 'https://cdn.example.com/talk'}
"""

from __future__ import annotations

import trio

from durable_core import DurableExecutor

from _cli import outcome, run_example


async def main(storage: str | None) -> str:
    executor = DurableExecutor(storage)

    @executor.task(id="download", timeout=5)
    async def download(ctx, video):
        await trio.sleep(0.05)
        print(f"downloaded {video}")
        return {"video": video}

    @executor.task(id="transcode", timeout=5)
    async def transcode(ctx, input):
        await trio.sleep(0.05)
        print(f"transcoded {input['video']}")
        return {**input, "formats": ["720p", "1080p"]}

    @executor.task(id="publish", timeout=5)
    async def publish(ctx, input):
        await trio.sleep(0.05)
        print(f"published {input['video']} in {len(input['formats'])} formats")
        return {**input, "url": f"https://cdn.example.com/{input['video'].removesuffix('.mp4')}"}

    pipeline = executor.sequential_tasks("video_pipeline", [download, transcode, publish])

    async with executor:
        handle = await executor.enqueue_task(pipeline, "talk.mp4")
        return outcome(await handle.wait_and_get_finished_execution())


if __name__ == "__main__":
    run_example(main, __doc__)
