"""A parent task with parallel children and no finalize.

The parent's run returns its own output and the children to spawn. Without a finalize, once every
child has finished the parent completes with ``{"output": <run output>, "children":
[FinishedChildTaskExecution, ...]}``, children in the order the run returned them — failed ones
included: a failing child never fails its parent.

    python examples/parent_with_children.py [--storage memory]

Expected output: completed: output='greeting 3 guests', children=[('greet', 'completed', 'Hello, Ada!'), ('greet', 'failed', 'no name given'), ('greet', 'completed', 'Hello, Linus!')]
"""

from __future__ import annotations

import trio

from durable_core import DurableExecutor, ParentTaskResult, child_task

from _cli import run_example


async def main(storage: str | None) -> str:
    executor = DurableExecutor(storage)

    @executor.task(id="greet", timeout=5)
    async def greet(ctx, name):
        await trio.sleep(0.1)
        if not name:
            raise ValueError("no name given")
        return f"Hello, {name}!"

    @executor.parent_task(id="greet_guests", timeout=5)
    async def greet_guests(ctx, guests):
        return ParentTaskResult(output=f"greeting {len(guests)} guests",
                                children=[child_task(greet, name) for name in guests])

    async with executor:
        handle = await executor.enqueue_task(greet_guests, ["Ada", "", "Linus"])
        finished = await handle.wait_and_get_finished_execution()
    children = [(c.task_id, str(c.status), c.output if c.error is None else c.error.message)
                for c in finished.output["children"]]
    return f"{finished.status}: output={finished.output['output']!r}, children={children}"


if __name__ == "__main__":
    run_example(main, __doc__)
