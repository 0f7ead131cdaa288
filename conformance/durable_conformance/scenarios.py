"""End-to-end scenarios: the real engine (``DurableExecutor``) on the storage under test.

Every task kind, retries with backoff, timeouts, cancellation and its cascade across executors,
sleeping tasks woken from outside, leases lost and recovered, graceful hand-back, several executors
on one storage, and (for a persistent storage) work that survives closing and reopening it. All in
virtual time: an hour of backoff takes milliseconds.
"""

from __future__ import annotations

import itertools
from typing import Any

import trio
import trio.testing

from durable_core import (
    DurableExecutionCancelledError,
    DurableExecutionError,
    DurableExecutionNotFoundError,
    DurableExecutor,
    ErrorInfo,
    FinalizeInput,
    FinishedChildTaskExecution,
    ParentTaskResult,
    RetryOptions,
    Task,
    TaskExecution,
    TaskExecutionHandle,
    TaskExecutionStatus,
    TaskRunContext,
    child_task,
)
from durable_core.storage.contract import ExecutionRecord, RunCommit, Storage

from .marks import requires
from .opening import StorageOpener, holding_virtual_time

S = TaskExecutionStatus
WAIT_LIMIT = 4 * 3600.0
"""Virtual seconds a scenario waits for an execution to finish before it fails."""


def executor(storage: Storage, **options: Any) -> DurableExecutor:
    """An executor on ``storage``; virtual time stands still while a storage call is in flight."""
    return DurableExecutor(holding_virtual_time(storage), **options)


async def finished(handle: TaskExecutionHandle, limit: float = WAIT_LIMIT) -> TaskExecution:
    """The finished execution as the handle returns it, which must be what the storage holds
    (a handle woken by its executor's commit takes the record the contract says was stored)."""
    with trio.fail_after(limit):
        execution = await handle.wait_and_get_finished_execution()
        stored = await handle.get_execution()
    assert stored == execution, f"the storage holds {stored}, not what it acknowledged: {execution}"
    return stored


def error_of(execution: TaskExecution | FinishedChildTaskExecution) -> ErrorInfo:
    """The error of an execution that must have ended without completing."""
    assert execution.error is not None, f"{execution} has no error"
    return execution.error


async def run(ex: DurableExecutor, task: Task | str, input: Any = None, **options: Any) -> TaskExecution:
    return await finished(await ex.enqueue_task(task, input, **options))


def greeters(ex: DurableExecutor) -> tuple[Task, Task]:
    @ex.task(id="hello", timeout=5)
    async def hello(ctx: TaskRunContext, input: Any) -> str:
        await trio.sleep(0.001)
        return f"Hello from task {input}, world!"

    @ex.task(id="broken", timeout=5)
    async def broken(ctx: TaskRunContext, input: Any) -> None:
        raise RuntimeError("Failed")

    return hello, broken


async def take_over_a_stalled_lease(storage: Storage, later: float, lease_duration: float) -> ExecutionRecord:
    """Another executor's view at ``later``: the one running execution stalled, its lease expired,
    and this other executor claimed it. Returns the record it claimed."""
    await storage.expire_leases(later, 10, 10)
    (theirs,) = await storage.claim_executions("de_other", later, 10, lease_duration)
    return theirs


async def cancel_a_tree_from_another_executor(
    storage: Storage, poll: float, wait: float
) -> tuple[float, list[ExecutionRecord]]:
    """One executor runs root -> middle -> grandchild; a second one, which runs nothing, cancels
    the root and waits ``wait`` seconds. Returns how long the running grandchild went on after the
    cancel, and every record."""
    storage = holding_virtual_time(storage)
    started = trio.Event()
    cancelled_at: list[float] = []

    def define(ex: DurableExecutor, runs_grandchild: bool) -> Task:
        @ex.task(id="grandchild", timeout=3600)
        async def grandchild(ctx: TaskRunContext, input: Any) -> None:
            assert runs_grandchild, "the other executor should run it"
            started.set()
            try:
                await trio.sleep(3600)
            except trio.Cancelled:
                cancelled_at.append(trio.current_time())
                raise

        @ex.parent_task(id="middle", timeout=60)
        async def middle(ctx: TaskRunContext, input: Any) -> ParentTaskResult:
            return ParentTaskResult(None, [child_task(grandchild)])

        @ex.parent_task(id="root", timeout=60)
        async def root(ctx: TaskRunContext, input: Any) -> ParentTaskResult:
            return ParentTaskResult(None, [child_task(middle)])

        return root

    owner = executor(storage, poll_interval=poll)
    canceller = executor(storage, poll_interval=poll, max_concurrent_task_executions=1)
    define(owner, runs_grandchild=True)
    root = define(canceller, runs_grandchild=False)
    async with owner:
        handle = await owner.enqueue_task(root)
        with trio.fail_after(60):
            await started.wait()
        async with canceller:
            cancelled = trio.current_time()
            await (await canceller.get_task_execution_handle(root, handle.execution_id)).cancel()
            await trio.sleep(wait)
        assert cancelled_at, "the grandchild still runs"
    return cancelled_at[0] - cancelled, await storage.list_executions()


class ExecutorScenarios:
    """The engine on this storage, end to end. On the memory storage they are also the core's own
    tests of these behaviours, which ``tests/test_executor.py`` and ``test_workflows.py`` do not
    repeat."""

    async def test_scenario_a_task_retries_with_backoff_in_virtual_time(self, storage: Storage) -> None:
        ex = executor(storage)
        starts: list[float] = []
        contexts: list[TaskRunContext] = []

        @ex.task(id="flaky", timeout=10,
                 retry=RetryOptions(max_attempts=4, base_delay=60, delay_multiplier=2, max_delay=200))
        async def flaky(ctx: TaskRunContext, input: Any) -> str:
            starts.append(trio.current_time())
            contexts.append(ctx)
            if ctx.attempt < 4:
                raise RuntimeError(f"boom {ctx.attempt}")
            return f"ok {input}"

        async with ex:
            done = await run(ex, flaky, {"n": 1})
        assert (done.status, done.output, done.retry_attempts) == (S.COMPLETED, "ok {'n': 1}", 4)
        assert [round(b - a) for a, b in itertools.pairwise(starts)] == [60, 120, 200, 200]
        assert [c.attempt for c in contexts] == [0, 1, 2, 3, 4]
        assert contexts[0].prev_error is None
        prev_error = contexts[3].prev_error
        assert prev_error is not None and prev_error.traceback is not None  # stored and read back
        assert prev_error == ErrorInfo("generic", "boom 2", is_retryable=True, type_name="builtins.RuntimeError",
                                       traceback=prev_error.traceback)
        assert prev_error.traceback.endswith('raise RuntimeError(f"boom {ctx.attempt}")\nRuntimeError: boom 2\n')
        assert done.started_at is not None and done.finished_at is not None and done.expires_at is None

    async def test_scenario_failures_timeouts_and_non_retryable_errors(self, storage: Storage) -> None:
        ex = executor(storage)
        calls = {"always": 0, "fatal": 0, "slow": 0}

        @ex.task(id="always", timeout=10, retry=RetryOptions(max_attempts=2))
        async def always(ctx: TaskRunContext, input: Any) -> None:
            calls["always"] += 1
            raise ValueError("Failed")

        @ex.task(id="fatal", timeout=10, retry=RetryOptions(max_attempts=5))
        async def fatal(ctx: TaskRunContext, input: Any) -> None:
            calls["fatal"] += 1
            raise DurableExecutionError.non_retryable("bad request")

        @ex.task(id="slow", timeout=5, retry=RetryOptions(max_attempts=1))
        async def slow(ctx: TaskRunContext, input: Any) -> None:
            calls["slow"] += 1
            await trio.sleep(3600)

        @ex.task(id="gives_up", timeout=5, retry=RetryOptions(max_attempts=3))
        async def gives_up(ctx: TaskRunContext, input: Any) -> None:
            raise DurableExecutionCancelledError()

        async with ex:
            a, f, s, g = [await run(ex, t) for t in (always, fatal, slow, gives_up)]
        assert (a.status, error_of(a).message, a.retry_attempts, calls["always"]) == (S.FAILED, "Failed", 2, 3), (a, calls)
        assert (f.status, error_of(f).is_retryable, calls["fatal"]) == (S.FAILED, False, 1), (f, calls)
        assert (s.status, calls["slow"]) == (S.TIMED_OUT, 2), (s, calls)
        assert s.error == ErrorInfo("timed_out", "Task execution timed out", is_retryable=True)
        assert (g.status, g.retry_attempts) == (S.CANCELLED, 0)

    async def test_scenario_cancel_before_start_and_during_a_run(self, storage: Storage) -> None:
        ex = executor(storage)
        started = trio.Event()
        outcome: list[str] = []

        @ex.task(id="later", timeout=5, sleep_before_run=60)
        async def later(ctx: TaskRunContext, input: Any) -> None:
            outcome.append("ran")

        @ex.task(id="long", timeout=600)
        async def long(ctx: TaskRunContext, input: Any) -> str:
            started.set()
            try:
                await trio.sleep(300)
                return "late"
            except trio.Cancelled:
                outcome.append("cancelled")
                raise

        async with ex:
            waiting = await ex.enqueue_task(later)
            await waiting.cancel()
            await waiting.cancel()  # a no-op
            running = await ex.enqueue_task(long)
            await started.wait()
            await running.cancel()
            first, second = await finished(waiting), await finished(running)
            await trio.sleep(120)
        assert outcome == ["cancelled"]
        assert (first.status, error_of(first).error_type) == (S.CANCELLED, "cancelled")
        assert (second.status, second.output) == (S.CANCELLED, None)

    async def test_scenario_parent_children_and_finalize(self, storage: Storage) -> None:
        ex = executor(storage)
        hello, broken = greeters(ex)

        @ex.task(id="summarize", timeout=5)
        async def summarize(ctx: TaskRunContext, input: FinalizeInput) -> list[Any]:
            assert ctx.parent is not None and ctx.parent.is_finalize_of_parent
            return [c.output if c.status is S.COMPLETED else error_of(c).message for c in input.children]

        @ex.task(id="refuse", timeout=5)
        async def refuse(ctx: TaskRunContext, input: FinalizeInput) -> None:
            raise DurableExecutionError.non_retryable("finalize said no")

        @ex.parent_task(id="plain_parent", timeout=5)
        async def plain_parent(ctx: TaskRunContext, input: Any) -> ParentTaskResult:
            return ParentTaskResult("own", [child_task(hello, "a"), child_task(broken), child_task(hello, "b")])

        @ex.parent_task(id="upload", timeout=5, finalize=summarize)
        async def upload(ctx: TaskRunContext, input: Any) -> ParentTaskResult:
            return ParentTaskResult({"file": input}, [child_task(hello, 1), child_task(broken)])

        @ex.parent_task(id="refused", timeout=5, finalize=refuse)
        async def refused(ctx: TaskRunContext, input: Any) -> ParentTaskResult:
            return ParentTaskResult(None, [child_task(hello, 1)])

        async with ex:
            plain = await run(ex, plain_parent)
            summary = await run(ex, upload, "f.txt")
            failed = await run(ex, refused)
        assert plain.status is S.COMPLETED and plain.output["output"] == "own"
        assert [(c.task_id, c.status) for c in plain.output["children"]] == [
            ("hello", S.COMPLETED), ("broken", S.FAILED), ("hello", S.COMPLETED)]
        assert plain.output["children"][2].output == "Hello from task b, world!"
        assert (summary.status, summary.output) == (S.COMPLETED, ["Hello from task 1, world!", "Failed"])
        assert summary.finalize is not None and summary.waiting_for_finalize_started_at is not None
        assert (failed.status, error_of(failed).message) == (S.FINALIZE_FAILED, "finalize said no")

    async def test_scenario_nested_and_recursive_parents(self, storage: Storage) -> None:
        ex = executor(storage)
        hello, _ = greeters(ex)

        def join(input: FinalizeInput) -> str:
            return " | ".join(c.output for c in input.children)

        def total(input: FinalizeInput) -> int:
            outputs: list[int] = [input.output, *(c.output for c in input.children)]
            return sum(outputs)

        @ex.parent_task(id="second_stage", timeout=5, finalize=join)
        async def second_stage(ctx: TaskRunContext, input: FinalizeInput) -> ParentTaskResult:
            return ParentTaskResult(None, [child_task(hello, f"after {len(input.children)}"), child_task(hello, "z")])

        @ex.parent_task(id="pipeline", timeout=5, finalize=second_stage)
        async def pipeline(ctx: TaskRunContext, input: Any) -> ParentTaskResult:
            return ParentTaskResult(None, [child_task(hello, "x"), child_task(hello, "y")])

        @ex.parent_task(id="countdown", timeout=5, finalize=total)
        async def countdown(ctx: TaskRunContext, input: int) -> ParentTaskResult:
            return ParentTaskResult(input, [child_task(countdown, input - 1)] if input > 0 else [])

        async with ex:
            nested = await run(ex, pipeline)
            recursive = await run(ex, countdown, 6)
        assert nested.output == "Hello from task after 2, world! | Hello from task z, world!"
        assert recursive.output == 21

    async def test_scenario_sequential_and_looping_tasks(self, storage: Storage) -> None:
        ex = executor(storage)
        flag: dict[str, float | None] = {"up_at": None}

        @ex.task(id="add_one", timeout=5)
        async def add_one(ctx: TaskRunContext, input: int) -> int:
            return input + 1

        @ex.task(id="explode", timeout=5)
        async def explode(ctx: TaskRunContext, input: int) -> None:
            raise RuntimeError(f"cannot handle {input}")

        @ex.task(id="poll", timeout=5)
        async def poll(ctx: TaskRunContext, input: int) -> dict[str, Any]:
            up_at = flag["up_at"]
            if up_at is not None and trio.current_time() >= up_at:
                return {"is_done": True, "output": input * 10}
            return {"is_done": False}

        chain = ex.sequential_tasks("chain", [add_one, add_one, add_one])
        failing = ex.sequential_tasks("failing", [add_one, explode, add_one])
        waiting = ex.looping_task("wait_for_flag", poll, max_attempts=20, sleep_before_run=1.0)
        never = ex.looping_task("never_done", poll, max_attempts=3)

        async with ex:
            ok = await run(ex, chain, 5)
            bad = await run(ex, failing, 1)
            flag["up_at"] = trio.current_time() + 4.5
            done = await run(ex, waiting, 7)
            flag["up_at"] = None
            exhausted = await run(ex, never, 1)
        assert (ok.status, ok.output, len(ok.children)) == (S.COMPLETED, 8, 3)
        assert bad.status is S.FINALIZE_FAILED
        assert error_of(bad).message == "Sequential task failed [parentTaskId=failing] [index=1]: cannot handle 2"
        assert (done.output, len(done.children)) == ({"is_success": True, "output": 70}, 5)
        assert (exhausted.output, len(exhausted.children)) == ({"is_success": False}, 3)

    async def test_scenario_sleeping_tasks_woken_failed_or_timed_out(self, storage: Storage) -> None:
        ex = executor(storage)
        webhook = ex.sleeping_task(id="webhook", timeout=300)

        def passthrough(input: FinalizeInput) -> Any:
            return input.children[0].output

        @ex.parent_task(id="await_payment", timeout=5, finalize=passthrough)
        async def await_payment(ctx: TaskRunContext, input: Any) -> ParentTaskResult:
            return ParentTaskResult(None, [child_task(webhook, f"payment-{input}")])

        async with ex:
            parent = await ex.enqueue_task(await_payment, 1)
            with trio.fail_after(60):
                while (await parent.get_execution()).status is not S.WAITING_FOR_CHILDREN:
                    await trio.sleep(0.1)
            woken = await ex.wakeup_sleeping_task_execution(webhook, "payment-1", output={"paid": True})
            assert (woken.status, woken.output) == (S.COMPLETED, {"paid": True})
            assert (await finished(parent)).output == {"paid": True}
            again = await ex.wakeup_sleeping_task_execution(webhook, "payment-1", status="failed", error="late")
            assert again.status is S.COMPLETED

            await ex.enqueue_task(webhook, "refund-9")
            declined = await ex.wakeup_sleeping_task_execution(webhook, "refund-9", status="failed", error="declined")
            assert (declined.status, error_of(declined).message) == (S.FAILED, "declined")
            try:
                await ex.enqueue_task(webhook, "refund-9")
                raise AssertionError("a taken sleeping unique id was accepted again")
            except DurableExecutionError as exc:
                assert "already exists" in exc.message

            expiring = await ex.enqueue_task(webhook, "never-called")
            timed_out = await finished(expiring)
            assert (timed_out.status, error_of(timed_out).message) == (S.TIMED_OUT, "Task execution timed out")
            try:
                await ex.wakeup_sleeping_task_execution(webhook, "nope")
                raise AssertionError("woke an unknown sleeping execution")
            except DurableExecutionNotFoundError:
                pass

    async def test_scenario_cancelling_a_parent_stops_a_grandchild_on_another_executor(self, storage: Storage) -> None:
        poll = 0.5
        cancelled_after, records = await cancel_a_tree_from_another_executor(storage, poll, wait=poll * 3)
        assert cancelled_after <= poll * 2
        assert {r.task_id: r.status for r in records} == {
            "root": S.CANCELLED, "middle": S.CANCELLED, "grandchild": S.CANCELLED}
        grandchild = next(r for r in records if r.task_id == "grandchild")
        assert grandchild.error is not None and "Parent task execution ended cancelled" in grandchild.error.message

    async def test_scenario_two_executors_run_each_execution_exactly_once(self, storage: Storage) -> None:
        storage = holding_virtual_time(storage)
        runs: dict[int, int] = {}
        active: set[int] = set()
        overlap: list[int] = []
        executors, fan_outs = [], []
        # the third only enqueues: an executor enqueuing with a free slot would claim on insert
        for slots in (1000, 1000, 0):
            ex = executor(storage, max_task_executions_per_batch=7, poll_interval=0.1,
                          max_concurrent_task_executions=slots)

            @ex.task(id="work", timeout=30)
            async def work(ctx: TaskRunContext, input: int) -> int:
                if input in active:
                    overlap.append(input)
                active.add(input)
                runs[input] = runs.get(input, 0) + 1
                await trio.sleep(0.01 * (input % 5))
                active.discard(input)
                return input * input

            @ex.parent_task(id="fan_out", timeout=30)
            async def fan_out(ctx: TaskRunContext, input: int) -> ParentTaskResult:
                return ParentTaskResult(None, [child_task(work, 1000 + i) for i in range(input)])

            executors.append(ex)
            fan_outs.append(fan_out)
        a, b, producer = executors
        async with a, b, producer:
            handles = [await producer.enqueue_task("work", i) for i in range(100)]
            results = [await finished(h) for h in handles]
            fanned = await run(producer, fan_outs[2], 150)
        assert [r.output for r in results] == [i * i for i in range(100)]
        assert [c.output for c in fanned.output["children"]] == [(1000 + i) ** 2 for i in range(150)]
        assert runs == {i: 1 for i in [*range(100), *range(1000, 1150)]}
        assert overlap == []
        by_executor = {r.executor_id for r in await storage.list_executions(statuses=[S.COMPLETED], limit=1000)}
        assert by_executor == {a.executor_id, b.executor_id}

    async def test_scenario_a_late_result_after_a_lost_lease_is_discarded(self, storage: Storage) -> None:
        storage = holding_virtual_time(storage)
        ex = executor(storage, expire_leeway=0)
        release, started = trio.Event(), trio.Event()

        @ex.task(id="t", timeout=100)
        async def t(ctx: TaskRunContext, input: Any) -> str:
            started.set()
            await release.wait()
            return "stale"

        async with ex:
            handle = await ex.enqueue_task(t)
            await started.wait()
            later = ex.now() + 500
            theirs = await take_over_a_stalled_lease(storage, later, lease_duration=0)
            release.set()
            await trio.testing.wait_all_tasks_blocked()
            assert (await handle.get_execution()).status is S.RUNNING  # the stale run wrote nothing
            output = ex.encode("fresh", "t", "output")
            await storage.commit_runs(
                [RunCommit(theirs.copy(status=S.COMPLETED, output=output, finished_at=later, ready_at=None))], later)
            done = await finished(handle)
        assert done.output == "fresh"

    async def test_scenario_shutdown_hands_work_back_and_another_executor_resumes(self, storage: Storage) -> None:
        storage = holding_virtual_time(storage)
        first = executor(storage, shutdown_timeout=2)
        started = trio.Event()
        saw_shutdown: list[bool] = []

        @first.task(id="long", timeout=3600)
        async def long(ctx: TaskRunContext, input: Any) -> None:
            started.set()
            await ctx.shutdown_event.wait()
            saw_shutdown.append(True)
            await trio.sleep(3600)  # ignores shutdown: cut off after shutdown_timeout

        async with first:
            handle = await first.enqueue_task(long)
            await started.wait()
        (record,) = await storage.get_executions([handle.execution_id])
        assert record is not None and record.status is S.READY and record.retry_attempts == 0
        assert record.ready_at is not None and record.ready_at <= first.now()
        assert saw_shutdown == [True]

        second = executor(storage)

        @second.task(id="long", timeout=3600)
        async def long_again(ctx: TaskRunContext, input: Any) -> str:
            return "resumed"

        async with second:
            done = await finished(await second.get_task_execution_handle("long", handle.execution_id))
        assert done.output == "resumed"

    async def test_scenario_a_crashed_executor_is_recovered_by_lease_expiry(self, storage: Storage) -> None:
        storage = holding_virtual_time(storage)
        seen: list[tuple[int, Any]] = []
        outcomes = []
        for max_lease_expirations in (10, 0):
            ex = executor(storage, expire_leeway=1, max_lease_expirations=max_lease_expirations)

            @ex.task(id="t", timeout=10)
            async def t(ctx: TaskRunContext, input: Any) -> str:
                seen.append((ctx.attempt, ctx.prev_error))
                return "recovered"

            async with ex:
                handle = await ex.enqueue_task(t, sleep_before_run=5)
                # an executor that crashed claimed it and never came back
                (claimed,) = await storage.claim_executions("de_crashed", ex.now() + 5, 1, 1)
                assert claimed.execution_id == handle.execution_id
                outcomes.append(await finished(handle))
        recovered, failed = outcomes
        assert recovered.output == "recovered"
        assert seen == [(0, ErrorInfo("generic", "Task execution expired", is_retryable=True))]
        assert (failed.status, error_of(failed).message) == (S.FAILED, "Task execution expired too many times")

    async def test_scenario_a_worker_runs_only_the_tasks_it_defines(self, storage: Storage) -> None:
        """Two applications on one storage: a worker never touches (with ``routing``: never
        claims) the other's executions, which wait ``ready`` for a worker that defines them."""
        storage = holding_virtual_time(storage)
        mailer = executor(storage, poll_interval=0.5)
        reports, reporter = executor(storage, max_concurrent_task_executions=0), executor(storage)

        @mailer.task(id="send_mail", timeout=5)
        async def send_mail(ctx: TaskRunContext, input: int) -> int:
            return input

        async def report(ctx: TaskRunContext, input: int) -> str:
            return f"report {input}"

        report_task = [ex.task(id="report", timeout=5, run=report) for ex in (reports, reporter)][1]
        async with mailer:
            async with reports:
                waiting = [await reports.enqueue_task("report", i) for i in range(5)]
            sent = [await run(mailer, send_mail, i) for i in range(3)]
            await trio.sleep(5.0)  # ten polls of the mailer
            stored = await storage.get_executions([h.execution_id for h in waiting])
            assert [r and r.status for r in stored] == [S.READY] * 5 or not storage.capabilities.routing, stored
            assert all(r is not None and r.status in (S.READY, S.RUNNING) and r.executor_id != mailer.executor_id
                       for r in stored), f"the mailer touched executions of a task it does not define: {stored}"
            if storage.capabilities.routing:
                assert all(r is not None and r.lease_token == 0 for r in stored), f"claimed by the mailer: {stored}"
        async with reporter:
            done = [await finished(await reporter.get_task_execution_handle(report_task, h.execution_id))
                    for h in waiting]
        assert [e.output for e in sent] == [0, 1, 2]
        assert [e.output for e in done] == [f"report {i}" for i in range(5)]

    async def test_scenario_idempotency_keys_and_listing(self, storage: Storage) -> None:
        ex = executor(storage)

        @ex.task(id="charge", timeout=5)
        async def charge(ctx: TaskRunContext, input: Any) -> Any:
            return input

        @ex.task(id="refund", timeout=5)
        async def refund(ctx: TaskRunContext, input: Any) -> Any:
            return input

        async with ex:
            h1 = await ex.enqueue_task(charge, 1, idempotency_key="order-7")
            h2 = await ex.enqueue_task(charge, 2, idempotency_key="order-7")
            h3 = await ex.enqueue_task(refund, 3, idempotency_key="order-7")
            assert h1.execution_id == h2.execution_id != h3.execution_id
            assert (await finished(h2)).output == 1
            assert len(await ex.storage.list_executions()) == 2

    @requires("persistent", why="work in flight survives closing and reopening the storage")
    async def test_scenario_work_survives_closing_and_reopening_the_storage(self, storages: StorageOpener) -> None:
        storage = await storages.open()
        parked = trio.Event()
        outputs: list[list[Any]] = []

        def define(ex: DurableExecutor, blocks: bool) -> Task:
            @ex.task(id="step", timeout=3600)
            async def step(ctx: TaskRunContext, input: int) -> int:
                if blocks and input == 2:
                    parked.set()
                    await trio.sleep_forever()
                return input * 10

            def collect(input: FinalizeInput) -> list[Any]:
                outputs.append([c.output for c in input.children])
                return outputs[-1]

            @ex.parent_task(id="batch", timeout=60, finalize=collect)
            async def batch(ctx: TaskRunContext, input: int) -> ParentTaskResult:
                return ParentTaskResult(None, [child_task(step, i) for i in range(input)])

            return batch

        first = executor(storage, shutdown_timeout=1)
        batch = define(first, blocks=True)
        async with first:
            handle = await first.enqueue_task(batch, 4)
            with trio.fail_after(60):
                await parked.wait()
        storage = await storages.reopen(storage)
        second = executor(storage)
        define(second, blocks=False)
        async with second:
            done = await finished(await second.get_task_execution_handle("batch", handle.execution_id))
        assert (done.status, done.output) == (S.COMPLETED, [0, 10, 20, 30])
