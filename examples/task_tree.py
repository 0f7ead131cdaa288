"""A tree of every task kind: parent tasks, a finalize task and a sequence, nested.

    root (parent; finalize collects every greeting)
    ├── a (parent with children a1, a2, a3; finalize task a_finalize)
    └── b (sequential: b1 → b2 → b3, each adding its greeting to its input)

    python examples/task_tree.py [--storage memory]

Expected output: completed: ['Hello from task A, world!', 'Hello from task A1, world!', 'Hello from task A2, world!', 'Hello from task A3, world!', 'Hello from task B1, world!', 'Hello from task B2, world!', 'Hello from task B3, world!']
"""

from __future__ import annotations

import trio

from durable_core import DurableExecutor, FinalizeInput, ParentTaskResult, child_task

from _cli import outcome, run_example


def check_all_completed(input: FinalizeInput) -> None:
    failed = [c.task_id for c in input.children if c.status != "completed"]
    if failed:
        raise RuntimeError(f"children failed: {failed}")


async def main(storage: str | None) -> str:
    executor = DurableExecutor(storage)

    def greeter(task_id: str):
        @executor.task(id=task_id, timeout=5)
        async def greet(ctx, input):
            await trio.sleep(0.05)
            return f"Hello from task {task_id.upper()}, {input['name']}!"

        return greet

    a1, a2, a3 = (greeter(f"a{i}") for i in (1, 2, 3))

    @executor.task(id="a_finalize", timeout=5)
    async def a_finalize(ctx, input: FinalizeInput):
        check_all_completed(input)
        return [input.output, *(c.output for c in input.children)]

    @executor.parent_task(id="a", timeout=5, finalize=a_finalize)
    async def a(ctx, input):
        return ParentTaskResult(output=f"Hello from task A, {input['name']}!",
                                children=[child_task(t, input) for t in (a1, a2, a3)])

    def sequence_step(task_id: str):
        @executor.task(id=task_id, timeout=5)
        async def step(ctx, input):
            await trio.sleep(0.05)
            greeting = f"Hello from task {task_id.upper()}, {input['name']}!"
            return {"name": input["name"], "greetings": [*input.get("greetings", []), greeting]}

        return step

    b = executor.sequential_tasks("b", [sequence_step(f"b{i}") for i in (1, 2, 3)])

    def collect_greetings(input: FinalizeInput) -> list[str]:
        check_all_completed(input)
        a_output, b_output = (c.output for c in input.children)
        return [*a_output, *b_output["greetings"]]

    @executor.parent_task(id="root", timeout=5, finalize=collect_greetings)
    async def root(ctx, input):
        return ParentTaskResult(children=[child_task(a, input), child_task(b, input)])

    async with executor:
        handle = await executor.enqueue_task(root, {"name": "world"})
        return outcome(await handle.wait_and_get_finished_execution())


if __name__ == "__main__":
    run_example(main, __doc__)
