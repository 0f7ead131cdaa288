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

from ..config import load_config
from ..executor import DurableExecutor
from ..models import FinalizeInput, RetryOptions, TaskRunContext
from ..status import TaskExecutionStatus
from ..tasks import ParentTaskResult, Task, child_task
from .common import describe_storage, run
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


async def run_demo(executor: DurableExecutor, upload_file: Task, file: str, *,
                   where: str = "the configured storage", again: str = "run it again") -> int:
    """Enqueue (or find again) the workflow of ``file``, run it with progress; the exit code. A
    resumed workflow says which steps it skips as done; an interrupted one, what was saved in
    ``where`` and how to resume it (``again``)."""
    async with executor:
        handle = await executor.enqueue_task(upload_file, {"file": file}, idempotency_key=f"upload:{file}")
        click.echo(f"workflow {handle.execution_id} (run again after Ctrl-C or kill to resume it)")
        done, left = await _steps(executor, handle.execution_id)
        if done and left:
            click.echo(f"resuming it: skipping {', '.join(done)} (already done); running {', '.join(left)}", err=True)
        elif done:
            click.echo("it had finished: shown again", err=True)
        finished = await follow(executor, handle)
        if finished is None:
            executor.cut_shutdown_short()  # hand the running steps back at once
            done, left = await _steps(executor, handle.execution_id)
            if not executor.storage.capabilities.persistent:
                click.echo(f"nothing was saved: {where} keeps executions only while this process runs", err=True)
            else:
                click.echo(f"saved workflow {handle.execution_id} in {where}: done: {', '.join(done) or 'nothing yet'}; "
                           f"handed back to run again: {', '.join(left)}; resume it with: {again}", err=True)
    return 130 if finished is None else report(finished)


async def _steps(executor: DurableExecutor, execution_id: str) -> tuple[list[str], list[str]]:
    """The steps of the workflow done so far and those left: the parent's own run, then each child."""
    (parent,) = await executor.storage.get_executions([execution_id])
    assert parent is not None  # just enqueued, and the demo deletes nothing
    children = await executor.storage.get_executions([child.execution_id for child in parent.children])
    ran = parent.status not in (TaskExecutionStatus.READY, TaskExecutionStatus.RUNNING)
    steps = [(f"{parent.task_id}'s upload", ran)]
    steps += [(child.task_id, child.status is TaskExecutionStatus.COMPLETED) for child in children if child is not None]
    return [name for name, done in steps if done], [name for name, done in steps if not done]


@click.command("demo")
@click.option("--file", default="report.pdf", show_default=True, help="The file to upload (also the idempotency key).")
@click.option("--storage", help="A storage plugin instead of the configured one.")
@click.pass_context
def demo(ctx: click.Context, file: str, storage: str | None) -> None:
    """Run the main job: the upload-file workflow, resumable after Ctrl-C or kill."""
    config = load_config()
    options = config.storage.options if storage in (None, config.storage.name) else {}
    where = describe_storage(storage or config.storage.name, options)
    again = " ".join(["durable demo", *(["--file", file] if file != "report.pdf" else []),
                      *(["--storage", storage] if storage else [])])
    ctx.exit(run(lambda: run_demo(*build(storage), file, where=where, again=again)))
