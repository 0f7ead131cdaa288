"""``durable demo``: the main job, a resumable upload-file workflow (a parent, two children, a
finalize), run by a worker in this process on the configured storage (SQLite in ./durable.db by
default). Interrupt it (Ctrl-C) or kill it and run it again: the same workflow, found by its
idempotency key, resumes where it stopped. ``examples/upload_file.py`` runs it too.

Timeouts and ``expire_leeway`` are short, so that the leases of a killed run expire (and its
work resumes) within seconds.
"""

from __future__ import annotations

from typing import Any

import click
import trio

from ..executor import DurableExecutor
from ..models import FinalizeInput, RetryOptions, TaskRunContext
from ..tasks import ParentTaskResult, Task, child_task
from .common import run
from .progress import follow, report


def build(storage: str | None = None) -> tuple[DurableExecutor, Task]:
    """The executor (configured storage unless ``storage`` names another) and the workflow."""
    executor = DurableExecutor.from_config(shutdown_timeout=2, expire_leeway=1, **({"storage": storage} if storage else {}))

    @executor.task(id="extract_title", timeout=5, retry=RetryOptions(max_attempts=3, base_delay=1))
    async def extract_title(ctx: TaskRunContext, input: dict[str, Any]) -> str:
        await trio.sleep(1)  # stands in for real work
        return f"Title of {input['file']}"

    @executor.task(id="summarize_file", timeout=5, retry=RetryOptions(max_attempts=3, base_delay=1))
    async def summarize_file(ctx: TaskRunContext, input: dict[str, Any]) -> str:
        await trio.sleep(2)
        return f"Summary of {input['file']}"

    def upload_finalize(input: FinalizeInput) -> dict[str, Any]:
        failed = [c.task_id for c in input.children if c.status != "completed"]
        if failed:
            raise ValueError(f"children failed: {failed}")
        title, summary = (c.output for c in input.children)
        return {"file": input.output["file"], "title": title, "summary": summary}

    @executor.parent_task(id="upload_file", timeout=5, finalize=upload_finalize)
    async def upload_file(ctx: TaskRunContext, input: dict[str, Any]) -> ParentTaskResult:
        await trio.sleep(0.5)  # the upload itself
        return ParentTaskResult(
            output={"file": input["file"]},
            children=[child_task(extract_title, input), child_task(summarize_file, input)],
        )

    return executor, upload_file


async def run_demo(executor: DurableExecutor, upload_file: Task, file: str) -> int:
    """Enqueue (or find again) the workflow of ``file``, run it with progress; the exit code."""
    async with executor:
        handle = await executor.enqueue_task(upload_file, {"file": file}, idempotency_key=f"upload:{file}")
        click.echo(f"workflow {handle.execution_id} (run again after Ctrl-C or kill to resume it)")
        finished = await follow(executor, handle)
        if finished is None:
            click.echo("handing the running tasks back; run again to resume", err=True)
    return 130 if finished is None else report(finished)


@click.command("demo")
@click.option("--file", default="report.pdf", show_default=True, help="The file to upload (also the idempotency key).")
@click.option("--storage", help="A storage plugin instead of the configured one.")
@click.pass_context
def demo(ctx: click.Context, file: str, storage: str | None) -> None:
    """Run the main job: the upload-file workflow, resumable after Ctrl-C or kill."""
    ctx.exit(run(run_demo, *build(storage), file))
