"""A strict finalize: the parent succeeds only if every child did.

Finalize receives every child's outcome, failed ones included, and decides what failure means.
This one raises if any child failed, so the parent ends ``finalize_failed`` with its error (a
finalize callable runs inline, once, without retries).

    python examples/finalize_strict.py [--storage memory]

Expected output: finalize_failed: 1 of 3 checks failed: check_licenses (GPL dependency found)
"""

from __future__ import annotations

import trio

from durable_core import DurableExecutor, FinalizeInput, ParentTaskResult, child_task

from _cli import outcome, run_example


async def main(storage: str | None) -> str:
    executor = DurableExecutor(storage)

    @executor.task(id="check_tests", timeout=5)
    async def check_tests(ctx, input):
        await trio.sleep(0.1)
        return "412 passed"

    @executor.task(id="check_lint", timeout=5)
    async def check_lint(ctx, input):
        await trio.sleep(0.05)
        return "clean"

    @executor.task(id="check_licenses", timeout=5)
    async def check_licenses(ctx, input):
        raise RuntimeError("GPL dependency found")

    def all_must_pass(input: FinalizeInput) -> dict:
        failed = [c for c in input.children if c.status != "completed"]
        if failed:
            reasons = ", ".join(f"{c.task_id} ({c.error.message})" for c in failed)
            raise RuntimeError(f"{len(failed)} of {len(input.children)} checks failed: {reasons}")
        return {c.task_id: c.output for c in input.children}

    @executor.parent_task(id="release_gate", timeout=5, finalize=all_must_pass)
    async def release_gate(ctx, version):
        return ParentTaskResult(output=version, children=[
            child_task(check_tests, version), child_task(check_lint, version), child_task(check_licenses, version)])

    async with executor:
        handle = await executor.enqueue_task(release_gate, "1.4.0")
        return outcome(await handle.wait_and_get_finished_execution())


if __name__ == "__main__":
    run_example(main, __doc__)
