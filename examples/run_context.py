"""What a run knows about itself: the ``TaskRunContext`` of the children of a parent task.

Each child sees its attempt number (0 on the first run, here "second" fails once and is retried),
the ``root`` of its tree and its ``parent`` (each with ``task_id`` and ``execution_id``), and its
index among the parent's children. A top-level execution has ``root`` and ``parent`` None.

    python examples/run_context.py [--storage memory]

Expected output: first: attempt=0 root=family parent=family index=0 | second: attempt=1 root=family parent=family index=1
"""

from __future__ import annotations

import trio

from durable_core import DurableExecutor, FinalizeInput, ParentTaskResult, RetryOptions, child_task

from _cli import run_example


async def main(storage: str | None) -> str:
    executor = DurableExecutor(storage)

    @executor.task(id="describe_context", timeout=5, retry=RetryOptions(max_attempts=1))
    async def describe_context(ctx, name):
        print(f"{name}: {ctx.task_id} {ctx.execution_id} attempt={ctx.attempt} prev_error={ctx.prev_error}\n"
              f"  root={ctx.root}\n  parent={ctx.parent}")
        if name == "second" and ctx.attempt == 0:
            raise RuntimeError("fails on its first attempt")
        return (f"{name}: attempt={ctx.attempt} root={ctx.root.task_id} parent={ctx.parent.task_id} "
                f"index={ctx.parent.index_in_parent_children}")

    def join_outputs(input: FinalizeInput) -> str:
        return " | ".join(child.output for child in input.children)

    @executor.parent_task(id="family", timeout=5, finalize=join_outputs)
    async def family(ctx, input):
        print(f"family: {ctx.task_id} {ctx.execution_id} attempt={ctx.attempt} root={ctx.root} parent={ctx.parent}")
        return ParentTaskResult(children=[child_task(describe_context, "first"),
                                          child_task(describe_context, "second")])

    async with executor:
        handle = await executor.enqueue_task(family)
        finished = await handle.wait_and_get_finished_execution()
    return finished.output


if __name__ == "__main__":
    run_example(main, __doc__)
