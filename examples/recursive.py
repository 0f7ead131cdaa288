"""A recursive parent task: each node spawns two copies of itself until the depth runs out.

A parent task may list itself among its children. Each node's finalize counts the nodes of its
subtree, so the root completes with the size of the whole tree: 2**(depth + 1) - 1 executions.

    python examples/recursive.py [--storage memory]

Expected output: completed: a tree of depth 3 has 15 nodes
"""

from __future__ import annotations

import trio

from durable_core import DurableExecutor, FinalizeInput, ParentTaskResult, child_task

from _cli import run_example

DEPTH = 3


def count_nodes(input: FinalizeInput) -> int:
    return 1 + sum(child.output for child in input.children)


async def main(storage: str | None) -> str:
    executor = DurableExecutor(storage)

    @executor.parent_task(id="tree_node", timeout=5, finalize=count_nodes)
    async def tree_node(ctx, depth):
        children = [child_task(tree_node, depth - 1), child_task(tree_node, depth - 1)] if depth > 0 else []
        return ParentTaskResult(children=children)

    async with executor:
        handle = await executor.enqueue_task(tree_node, DEPTH)
        finished = await handle.wait_and_get_finished_execution()
    return f"{finished.status}: a tree of depth {DEPTH} has {finished.output} nodes"


if __name__ == "__main__":
    run_example(main, __doc__)
