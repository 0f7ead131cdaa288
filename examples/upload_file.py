"""The main job: upload a file, extract its title and summary in parallel, then finalize.

Runs on the embedded default storage, SQLite in ./durable.db. Interrupt it (Ctrl-C) or kill it
and run it again: the same workflow (found by its idempotency key) resumes where it stopped.

    python examples/upload_file.py [--storage memory] [--file NAME]

Expected output: completed: {'file': 'report.pdf', 'title': 'Title of report.pdf', 'summary': 'Summary of report.pdf'}
"""

from __future__ import annotations

import argparse

import trio

from durable_core import DurableExecutor, FinalizeInput, ParentTaskResult, RetryOptions, child_task


def build(storage: str | None) -> tuple[DurableExecutor, object]:
    executor = DurableExecutor(storage, shutdown_timeout=2)

    @executor.task(id="extract_title", timeout=30, retry=RetryOptions(max_attempts=3, base_delay=1))
    async def extract_title(ctx, input):
        await trio.sleep(1)  # stands in for real work
        return f"Title of {input['file']}"

    @executor.task(id="summarize_file", timeout=30, retry=RetryOptions(max_attempts=3, base_delay=1))
    async def summarize_file(ctx, input):
        await trio.sleep(2)
        return f"Summary of {input['file']}"

    def upload_finalize(input: FinalizeInput) -> dict:
        failed = [c.task_id for c in input.children if c.status != "completed"]
        if failed:
            raise ValueError(f"children failed: {failed}")
        title, summary = (c.output for c in input.children)
        return {"file": input.output["file"], "title": title, "summary": summary}

    @executor.parent_task(id="upload_file", timeout=60, finalize=upload_finalize)
    async def upload_file(ctx, input):
        await trio.sleep(0.5)  # the upload itself
        return ParentTaskResult(
            output={"file": input["file"]},
            children=[child_task(extract_title, input), child_task(summarize_file, input)],
        )

    return executor, upload_file


async def show_progress(executor: DurableExecutor, execution_id: str) -> None:
    shown = None
    while True:
        root = await (await executor.get_task_execution_handle("upload_file", execution_id)).get_execution()
        children = [await (await executor.get_task_execution_handle(c.task_id, c.execution_id)).get_execution()
                    for c in root.children]
        line = f"upload_file: {root.status}" + "".join(f", {c.task_id}: {c.status}" for c in children)
        if line != shown:
            print(line, flush=True)
            shown = line
        await trio.sleep(0.2)


async def main(storage: str | None, file: str) -> None:
    executor, upload_file = build(storage)
    async with executor:
        handle = await executor.enqueue_task(upload_file, {"file": file}, idempotency_key=f"upload:{file}")
        print(f"workflow {handle.execution_id} (run again after Ctrl-C or kill to resume it)")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(show_progress, executor, handle.execution_id)
            finished = await handle.wait_and_get_finished_execution()
            nursery.cancel_scope.cancel()
    print(f"{finished.status}: {finished.output if finished.error is None else finished.error.message}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", default=None, help="storage plugin (default: sqlite in ./durable.db)")
    parser.add_argument("--file", default="report.pdf")
    args = parser.parse_args()
    try:
        trio.run(main, args.storage, args.file)
    except KeyboardInterrupt:
        print("interrupted: run again to resume")
