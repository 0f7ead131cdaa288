"""Parent tasks, finalize, sequences, loops, sleeping tasks and cascading cancellation, each on
memory, SQLite and PostgreSQL (the ``shared_storage`` fixture) in virtual time. Nested and
recursive parents: ``durable_conformance.scenarios``, run on every storage too."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from durable_core import (
    DurableExecutionError,
    DurableExecutionNotFoundError,
    DurableExecutor,
    ExecutionRef,
    FinalizeInput,
    FinishedChildTaskExecution,
    ParentRef,
    ParentTaskResult,
    RetryOptions,
    TaskExecutionEvent,
    TaskExecutionStatus,
    child_task,
    hookimpl,
)
from durable_conformance.scenarios import cancel_a_tree_from_another_executor
from durable_core.plugins.manager import PluginRegistry, get_plugin_manager

S = TaskExecutionStatus


def define_greeters(ex: DurableExecutor):
    @ex.task(id="hello", timeout=5)
    async def hello(ctx, input):
        await trio.sleep(0.001)
        return f"Hello from task {input}, world!"

    @ex.task(id="broken", timeout=5)
    async def broken(ctx, input):
        raise RuntimeError("Failed")

    return hello, broken


async def test_parent_without_finalize_completes_with_all_children_in_order(shared_storage):
    ex = shared_storage.executor()
    hello, broken = define_greeters(ex)
    contexts = []

    @ex.task(id="spy", timeout=5)
    async def spy(ctx, input):
        contexts.append(ctx)
        return input

    @ex.parent_task(id="parent", timeout=5)
    async def parent(ctx, input):
        return ParentTaskResult("parent_output", [child_task(hello, "a"), child_task(broken), child_task(spy, 7)])

    async with ex:
        handle = await ex.enqueue_task(parent)
        finished = await handle.wait_and_get_finished_execution()

    assert finished.status is S.COMPLETED
    out = finished.output
    assert out["output"] == "parent_output"
    assert [(c.task_id, c.status) for c in out["children"]] == [
        ("hello", S.COMPLETED), ("broken", S.FAILED), ("spy", S.COMPLETED)]
    assert out["children"][0].output == "Hello from task a, world!"
    assert out["children"][1].error.message == "Failed"
    assert finished.waiting_for_children_started_at is not None
    assert finished.waiting_for_finalize_started_at is None
    assert [c.task_id for c in finished.children] == ["hello", "broken", "spy"]
    (ctx,) = contexts
    assert ctx.root == ExecutionRef("parent", handle.execution_id)
    assert ctx.parent == ParentRef("parent", handle.execution_id, 2, False)


async def test_finalize_task_receives_input_output_and_every_child(shared_storage):
    ex = shared_storage.executor()
    hello, broken = define_greeters(ex)
    received = []

    @ex.task(id="summarize", timeout=5)
    async def summarize(ctx, input: FinalizeInput):
        received.append(input)
        assert ctx.parent.is_finalize_of_parent
        return [c.output if c.status is S.COMPLETED else c.error.message for c in input.children]

    @ex.parent_task(id="upload", timeout=5, finalize=summarize)
    async def upload(ctx, input):
        return ParentTaskResult({"file": input}, [child_task(hello, 1), child_task(broken), child_task(hello, 2)])

    async with ex:
        finished = await (await ex.enqueue_task(upload, "f.txt")).wait_and_get_finished_execution()

    assert finished.status is S.COMPLETED
    assert finished.output == ["Hello from task 1, world!", "Failed", "Hello from task 2, world!"]
    (fin,) = received
    assert fin.input == "f.txt" and fin.output == {"file": "f.txt"}
    assert isinstance(fin.children[0], FinishedChildTaskExecution)
    assert finished.finalize is not None and finished.finalize.task_id == "summarize"
    assert finished.waiting_for_finalize_started_at is not None


async def test_finalize_failures_make_the_parent_finalize_failed(shared_storage):
    ex = shared_storage.executor()
    hello, broken = define_greeters(ex)

    def strict(input: FinalizeInput):
        failed = [c for c in input.children if c.status is not S.COMPLETED]
        if failed:
            raise ValueError(f"{len(failed)} children failed")
        return "all good"

    @ex.task(id="finalize_task_failing", timeout=5)
    async def finalize_task_failing(ctx, input):
        raise DurableExecutionError.non_retryable("finalize said no")

    @ex.parent_task(id="strict_parent", timeout=5, finalize=strict)
    async def strict_parent(ctx, input):
        return ParentTaskResult(None, [child_task(hello, 1), child_task(broken)])

    @ex.parent_task(id="lenient_parent", timeout=5, finalize=strict)
    async def lenient_parent(ctx, input):
        return ParentTaskResult(None, [child_task(hello, 1)])

    @ex.parent_task(id="task_finalized", timeout=5, finalize=finalize_task_failing)
    async def task_finalized(ctx, input):
        return ParentTaskResult(None, [])

    async with ex:
        s = await (await ex.enqueue_task(strict_parent)).wait_and_get_finished_execution()
        ok = await (await ex.enqueue_task(lenient_parent)).wait_and_get_finished_execution()
        t = await (await ex.enqueue_task(task_finalized)).wait_and_get_finished_execution()

    assert (s.status, s.error.message, s.error.is_retryable) == (S.FINALIZE_FAILED, "1 children failed", False)
    assert (ok.status, ok.output) == (S.COMPLETED, "all good")
    assert (t.status, t.error.message) == (S.FINALIZE_FAILED, "finalize said no")


async def test_too_many_children_fail_the_parent_naming_both_numbers(shared_storage):
    ex = shared_storage.executor(max_children_per_task_execution=3)
    hello, _ = define_greeters(ex)

    @ex.parent_task(id="greedy", timeout=5)
    async def greedy(ctx, input):
        return ParentTaskResult(None, [child_task(hello, i) for i in range(4)])

    async with ex:
        finished = await (await ex.enqueue_task(greedy)).wait_and_get_finished_execution()
    assert finished.status is S.FAILED
    assert "returned 4 children, more than the limit of 3" in finished.error.message
    async with shared_storage.open() as storage:
        assert len(await storage.list_executions()) == 1


# memory only: a thousand children cost about a second of storage work on SQLite or PostgreSQL;
# tests/test_processes.py runs thousands of executions on them from several processes
@pytest.mark.parametrize("shared_storage", ["memory"], indirect=True)
async def test_a_thousand_children_on_two_executors_keep_their_order(shared_storage):
    executors = [shared_storage.executor(poll_interval=0.1, max_concurrent_task_executions=300) for _ in range(2)]
    parents = []
    for ex in executors:
        @ex.task(id="square", timeout=30)
        async def square(ctx, input):
            await trio.sleep(0.1)
            return input * input

        @ex.parent_task(id="fan_out", timeout=30)
        async def fan_out(ctx, input):
            return ParentTaskResult(None, [child_task(square, i) for i in range(1000)])

        parents.append(fan_out)

    async with executors[0], executors[1]:
        handle = await executors[0].enqueue_task(parents[0])
        finished = await handle.wait_and_get_finished_execution()
    assert [c.output for c in finished.output["children"]] == [i * i for i in range(1000)]
    async with shared_storage.open() as storage:
        by_executor = {r.executor_id for r in await storage.list_executions(limit=2000) if r.task_id == "square"}
    assert by_executor == {executors[0].executor_id, executors[1].executor_id}


async def test_sequential_tasks_chain_outputs_and_report_the_failing_index(shared_storage):
    ex = shared_storage.executor()

    @ex.task(id="add_one", timeout=5)
    async def add_one(ctx, input):
        return input + 1

    @ex.task(id="double", timeout=5)
    async def double(ctx, input):
        return input * 2

    @ex.task(id="explode", timeout=5)
    async def explode(ctx, input):
        raise RuntimeError(f"cannot handle {input}")

    chain = ex.sequential_tasks("chain", [add_one, double, add_one])
    failing = ex.sequential_tasks("failing", [add_one, explode, double])
    with pytest.raises(ValueError, match="No tasks provided"):
        ex.sequential_tasks("empty", [])

    async with ex:
        ok = await (await ex.enqueue_task(chain, 5)).wait_and_get_finished_execution()
        bad = await (await ex.enqueue_task(failing, 1)).wait_and_get_finished_execution()
    assert (ok.status, ok.output) == (S.COMPLETED, 13)
    assert [c.task_id for c in ok.children] == ["add_one", "double", "add_one"]
    assert bad.status is S.FINALIZE_FAILED
    assert bad.error.message == "Sequential task failed [parentTaskId=failing] [index=1]: cannot handle 2"


async def test_sequence_of_parent_tasks_with_children(shared_storage):
    ex = shared_storage.executor()
    hello, _ = define_greeters(ex)

    def outputs(input: FinalizeInput):
        return [c.output for c in input.children]

    @ex.parent_task(id="fan", timeout=5, finalize=outputs)
    async def fan(ctx, input):
        return ParentTaskResult(None, [child_task(hello, n) for n in range(input)])

    @ex.task(id="count", timeout=5)
    async def count(ctx, input):
        return len(input)

    seq = ex.sequential_tasks("fan_then_count", [fan, count])
    async with ex:
        finished = await (await ex.enqueue_task(seq, 4)).wait_and_get_finished_execution()
    assert finished.output == 4


async def test_looping_task_until_done_until_max_attempts_and_on_failure(shared_storage):
    ex = shared_storage.executor(**shared_storage.LONG_WAITS)
    flag = {"up_at": None}
    iteration_times = []

    @ex.task(id="poll", timeout=5)
    async def poll(ctx, input):
        iteration_times.append(trio.current_time())
        if flag["up_at"] is not None and trio.current_time() >= flag["up_at"]:
            return {"is_done": True, "output": input * 10}
        return {"is_done": False}

    @ex.task(id="poll_fails", timeout=5)
    async def poll_fails(ctx, input):
        raise RuntimeError("no connection")

    waiting = ex.looping_task("wait_for_flag", poll, max_attempts=20, sleep_before_run=1.0)
    never = ex.looping_task("never_done", poll, max_attempts=3, sleep_before_run=lambda attempt: attempt * 10)
    failing = ex.looping_task("loop_fails", poll_fails, max_attempts=3)
    with pytest.raises(ValueError, match="Max attempts must be greater than 0"):
        ex.looping_task("bad_loop", poll, max_attempts=0)

    async with ex:
        flag["up_at"] = trio.current_time() + 4.5
        done = await (await ex.enqueue_task(waiting, 7)).wait_and_get_finished_execution()
        flag["up_at"] = None
        iteration_times.clear()
        exhausted = await (await ex.enqueue_task(never, 1)).wait_and_get_finished_execution()
        broken = await (await ex.enqueue_task(failing, 1)).wait_and_get_finished_execution()

    assert (done.status, done.output) == (S.COMPLETED, {"is_success": True, "output": 70})
    assert len(done.children) == 5  # iterations at 1, 2, 3, 4, 5 s
    assert exhausted.output == {"is_success": False} and len(exhausted.children) == 3
    gaps = [round(b - a) for a, b in zip(iteration_times, iteration_times[1:])]
    assert gaps == [10, 20]
    assert broken.status is S.FINALIZE_FAILED
    assert broken.error.message == "Iteration task failed [taskId=poll_fails]: no connection"


class StatusReached:
    """A plugin whose ``reached`` is set once an execution of ``task_id`` is stored with ``status``."""

    def __init__(self, task_id: str, status: S):
        self.task_id, self.status = task_id, status
        self.reached = trio.Event()

    @hookimpl
    def durable_task_execution_event(self, event: TaskExecutionEvent) -> None:
        if event.task_id == self.task_id and event.status is self.status:
            self.reached.set()

    def plugins(self) -> PluginRegistry:
        """The installed plugins and this one, for an executor's ``plugins``."""
        pm = get_plugin_manager()
        pm.register(self)
        return PluginRegistry.load(pm)


async def test_sleeping_task_woken_completed_failed_or_timed_out(shared_storage):
    parent_waits = StatusReached("await_payment", S.WAITING_FOR_CHILDREN)
    ex = shared_storage.executor(plugins=parent_waits.plugins(), **shared_storage.LONG_WAITS)
    webhook = ex.sleeping_task(id="webhook", timeout=300)
    other = ex.sleeping_task(id="other_webhook", timeout=300)

    @ex.task(id="plain", timeout=5)
    async def plain(ctx, input):
        return input

    def passthrough(input: FinalizeInput):
        return input.children[0].output

    @ex.parent_task(id="await_payment", timeout=5, finalize=passthrough)
    async def await_payment(ctx, input):
        return ParentTaskResult(None, [child_task(webhook, f"payment-{input}")])

    async with ex:
        parent = await ex.enqueue_task(await_payment, 1)
        await parent_waits.reached.wait()
        woken = await ex.wakeup_sleeping_task_execution(webhook, "payment-1", output={"paid": True})
        assert (woken.status, woken.output) == (S.COMPLETED, {"paid": True})
        assert (await parent.wait_and_get_finished_execution()).output == {"paid": True}
        again = await ex.wakeup_sleeping_task_execution(webhook, "payment-1", status="failed", error="late")
        assert again.status is S.COMPLETED  # already finished: returned unchanged

        failed_handle = await ex.enqueue_task(webhook, "refund-9")
        failed = await ex.wakeup_sleeping_task_execution(webhook, "refund-9", status="failed", error="declined")
        assert (failed.status, failed.error.message) == (S.FAILED, "declined")

        expiring = await ex.enqueue_task(webhook, "never-called")
        timed_out = await expiring.wait_and_get_finished_execution()
        assert (timed_out.status, timed_out.error.message) == (S.TIMED_OUT, "Task execution timed out")
        assert failed_handle.execution_id != expiring.execution_id

        with pytest.raises(DurableExecutionNotFoundError, match=r"Sleeping task execution not found \[sleepingTaskUniqueId=nope\]"):
            await ex.wakeup_sleeping_task_execution(webhook, "nope")
        with pytest.raises(DurableExecutionError, match=r"Task is not a sleeping task \[taskId=plain\]"):
            await ex.wakeup_sleeping_task_execution(plain, "payment-1")
        with pytest.raises(DurableExecutionNotFoundError, match="belongs to another task"):
            await ex.wakeup_sleeping_task_execution(other, "refund-9")
        with pytest.raises(DurableExecutionError, match="already exists"):
            await ex.enqueue_task(webhook, "refund-9")
        with pytest.raises(DurableExecutionError, match="shorter than 256"):
            await ex.enqueue_task(webhook, "x" * 256)
        with pytest.raises(DurableExecutionError, match="unique id string"):
            await ex.enqueue_task(webhook, 42)


async def test_cancelling_a_parent_cancels_a_running_grandchild_on_another_executor(shared_storage):
    poll = 0.5
    async with shared_storage.open() as storage:
        cancelled_after, records = await cancel_a_tree_from_another_executor(storage, poll, wait=poll * 2)
    assert cancelled_after <= poll
    assert {r.task_id: r.status for r in records} == {
        "root": S.CANCELLED, "middle": S.CANCELLED, "grandchild": S.CANCELLED}
    grand = next(r for r in records if r.task_id == "grandchild")
    assert "Parent task execution ended cancelled" in grand.error.message


async def test_parent_retries_run_again_before_spawning_children(shared_storage):
    ex = shared_storage.executor()
    hello, _ = define_greeters(ex)

    @ex.parent_task(id="flaky_parent", timeout=5, retry=RetryOptions(max_attempts=1))
    async def flaky_parent(ctx, input):
        if ctx.attempt == 0:
            raise RuntimeError("first try fails")
        return ParentTaskResult("ok", [child_task(hello, "r")])

    async with ex:
        finished = await (await ex.enqueue_task(flaky_parent)).wait_and_get_finished_execution()
    assert finished.status is S.COMPLETED and finished.retry_attempts == 1
    assert finished.output["children"][0].output == "Hello from task r, world!"


async def test_retention_deletes_old_finished_trees_but_never_part_of_an_active_one(shared_storage):
    ex = shared_storage.executor(**shared_storage.LONG_WAITS)
    hello, _ = define_greeters(ex)
    gate = ex.sleeping_task(id="gate", timeout=10_000)

    @ex.parent_task(id="tree", timeout=5)
    async def tree(ctx, input):
        children = [child_task(hello, 1)] + ([child_task(gate, "open-later")] if input else [])
        return ParentTaskResult(None, children)

    async with ex:
        done = await (await ex.enqueue_task(tree, False)).wait_and_get_finished_execution()
        active = await ex.enqueue_task(tree, True)
        await trio.sleep(3600)
        assert (await active.get_execution()).status is S.WAITING_FOR_CHILDREN
        assert await ex.delete_finished_executions(older_than=60) == 2  # `done` and its child
        with pytest.raises(DurableExecutionNotFoundError):
            await ex.get_task_execution_handle(tree, done.execution_id)
        remaining = await ex.storage.list_executions()
        assert {r.task_id for r in remaining} == {"tree", "hello", "gate"}
        await ex.wakeup_sleeping_task_execution(gate, "open-later")
        await active.wait_and_get_finished_execution()
        assert await ex.delete_finished_executions(older_than=0) == 0  # finished just now
        await trio.sleep(1)
        assert await ex.delete_finished_executions(older_than=0.5) == 3
        with pytest.raises(ValueError, match="older_than"):
            await ex.delete_finished_executions(older_than=-1)
