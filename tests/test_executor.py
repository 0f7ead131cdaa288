"""The executor on simple tasks: running, timeouts, cancellation, limits, definitions, events.

Each test that runs an executor runs on memory, SQLite and PostgreSQL (the ``shared_storage``
fixture), in virtual time; definitions and options are checked without one, and opening a storage
by its plugin's name on memory (the others are opened by name in every test). Retries and backoff,
failures, cancellation, several executors, lost and expired leases, shutdown hand-back and
idempotency keys are checked end to end by ``durable_conformance.scenarios``, on every storage."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import pytest
import trio
import trio.testing

from durable_core import (
    ACTIVE_TASK_EXECUTION_STATUSES,
    ALL_TASK_EXECUTION_STATUSES,
    ERRORED_TASK_EXECUTION_STATUSES,
    FINISHED_TASK_EXECUTION_STATUSES,
    DurableExecutionError,
    DurableExecutionNotFoundError,
    DurableExecutor,
    ErrorInfo,
    RetryOptions,
    TaskExecutionStatus,
    TaskRunContext,
    hookimpl,
)
from durable_core.plugins.manager import PluginRegistry, get_plugin_manager
from durable_storage_memory import MemoryStorage

S = TaskExecutionStatus


async def test_async_task_completes_with_output_and_timestamps(shared_storage):
    ex = shared_storage.executor()
    seen: list[TaskRunContext] = []

    @ex.task(id="greet", timeout=5)
    async def greet(ctx, input):
        seen.append(ctx)
        return f"Hello, {input['name']}!"

    async with ex:
        handle = await ex.enqueue_task(greet, {"name": "Ada"})
        finished = await handle.wait_and_get_finished_execution()

    assert finished.status is S.COMPLETED
    assert finished.output == "Hello, Ada!"
    assert finished.input == {"name": "Ada"}
    assert finished.error is None
    assert finished.execution_id.startswith("te_") and len(finished.execution_id) == 27
    assert finished.started_at <= finished.finished_at
    assert finished.expires_at is None
    assert finished.created_at.tzinfo is not None
    (ctx,) = seen
    assert (ctx.task_id, ctx.execution_id, ctx.attempt, ctx.prev_error) == ("greet", finished.execution_id, 0, None)
    assert ctx.root is None and ctx.parent is None


@pytest.mark.real_clock
async def test_plain_def_task_runs_in_a_worker_thread(shared_storage):
    ex = shared_storage.executor()
    engine_thread = threading.get_ident()

    @ex.task(id="blocking", timeout=30)
    def blocking(ctx, input):
        return {"same_thread": threading.get_ident() == engine_thread, "double": input * 2}

    async with ex:
        with trio.fail_after(10):
            finished = await (await ex.enqueue_task(blocking, 21)).wait_and_get_finished_execution()
    assert finished.output == {"same_thread": False, "double": 42}


async def test_timeout_cancels_the_run_and_ends_timed_out_after_retries(shared_storage):
    ex = shared_storage.executor()
    attempts = []

    @ex.task(id="slow", timeout=5, retry=RetryOptions(max_attempts=1))
    async def slow(ctx, input):
        attempts.append(trio.current_time())
        await trio.sleep(3600)

    async with ex:
        finished = await (await ex.enqueue_task(slow)).wait_and_get_finished_execution()
    assert finished.status is S.TIMED_OUT
    assert finished.error == ErrorInfo("timed_out", "Task execution timed out", is_retryable=True)
    assert len(attempts) == 2 and attempts[1] - attempts[0] == 5  # the retry's backoff is 0
    assert (finished.finished_at - finished.started_at).total_seconds() == 5  # cut off at the deadline


async def test_finished_at_is_when_the_run_ended(shared_storage):
    ex = shared_storage.executor()

    @ex.task(id="slow", timeout=60)
    async def slow(ctx, input):
        await trio.sleep(input)
        if input > 10:
            raise ValueError("too slow")
        return input

    async with ex:
        handles = await ex.enqueue_tasks(slow, [7, 11])
        done, failed = [await h.wait_and_get_finished_execution() for h in handles]
    assert (done.status, failed.status) == (S.COMPLETED, S.FAILED)
    assert (done.finished_at - done.started_at).total_seconds() == 7
    assert (failed.finished_at - failed.started_at).total_seconds() == 11


async def test_sleep_before_run_and_enqueue_overrides(shared_storage):
    ex = shared_storage.executor(**shared_storage.LONG_WAITS)  # woken at the time due, not by a poll
    started = []

    @ex.task(id="later", timeout=5, sleep_before_run=30)
    async def later(ctx, input):
        started.append(trio.current_time())

    async with ex:
        t0 = trio.current_time()
        await (await ex.enqueue_task(later)).wait_and_get_finished_execution()
        await (await ex.enqueue_task(later, sleep_before_run=90)).wait_and_get_finished_execution()
    assert started[0] - t0 == pytest.approx(30, abs=0.01)
    assert started[1] - started[0] == pytest.approx(90, abs=0.01)


async def test_enqueue_timeout_and_retry_overrides(shared_storage):
    ex = shared_storage.executor()

    @ex.task(id="sleepy", timeout=1000)
    async def sleepy(ctx, input):
        if ctx.attempt == 0:
            await trio.sleep(50)
        return ctx.attempt

    async with ex:
        handle = await ex.enqueue_task(sleepy, timeout=10, retry=RetryOptions(max_attempts=1))
        finished = await handle.wait_and_get_finished_execution()
    assert (finished.status, finished.output) == (S.COMPLETED, 1)


async def test_cancel_during_run_cancels_its_scope_and_discards_the_result(shared_storage):
    ex = shared_storage.executor()
    started = trio.Event()

    @ex.task(id="t", timeout=600)
    async def t(ctx, input):
        started.set()
        await trio.sleep_forever()

    async with ex:
        handle = await ex.enqueue_task(t)
        await started.wait()
        assert handle.execution_id in ex.running_task_execution_ids
        await handle.cancel()
        await trio.testing.wait_all_tasks_blocked()
        assert ex.running_task_executions_count == 0
        finished = await handle.get_execution()
    assert finished.status is S.CANCELLED and finished.output is None


async def test_backpressure_never_exceeds_max_concurrent(shared_storage):
    ex = shared_storage.executor(max_concurrent_task_executions=3, max_task_executions_per_batch=2)
    running = 0
    peak = 0
    full = trio.Event()

    @ex.task(id="t", timeout=60)
    async def t(ctx, input):
        nonlocal running, peak
        running += 1
        peak = max(peak, running, ex.running_task_executions_count)
        if running == 3:
            full.set()
        await trio.sleep(1)
        running -= 1

    async with ex:
        handles = [await ex.enqueue_task(t) for _ in range(10)]
        await full.wait()
        assert ex.running_task_executions_count == 3
        for h in handles:
            await h.wait_and_get_finished_execution()
    assert peak == 3


def sleeper(ex: DurableExecutor, seconds: float) -> trio.Event:
    """Defines task ``t`` on ``ex``, which sleeps ``seconds`` and returns "done"; the event
    returned is set once a run has started."""
    started = trio.Event()

    @ex.task(id="t", timeout=2 * seconds)
    async def t(ctx, input):
        started.set()
        await trio.sleep(seconds)
        return "done"

    return started


async def test_graceful_shutdown_waits_for_running_tasks(shared_storage):
    ex = shared_storage.executor(shutdown_timeout=60)
    started = sleeper(ex, 10)

    async with ex:
        handle = await ex.enqueue_task("t")
        await started.wait()
    async with shared_storage.open() as storage:
        assert (await storage.get_executions([handle.execution_id]))[0].status is S.COMPLETED
    await ex.shutdown()  # idempotent


async def test_cutting_a_shutdown_short_hands_running_tasks_back_at_once(shared_storage):
    ex = shared_storage.executor(shutdown_timeout=600)
    started = sleeper(ex, 3000)

    async def cut_short_after_ten_seconds():
        await trio.sleep(10)
        ex.cut_shutdown_short()

    async with trio.open_nursery() as nursery:
        async with ex:
            handle = await ex.enqueue_task("t")
            await started.wait()
            nursery.start_soon(cut_short_after_ten_seconds)
            begun = trio.current_time()
        assert trio.current_time() - begun == 10  # of a grace period of 600 s
    async with shared_storage.open() as storage:
        (record,) = await storage.get_executions([handle.execution_id])
    assert (record.status, record.retry_attempts, record.lease_expirations) == (S.READY, 0, 0)


async def test_unknown_tasks_and_executions_are_clear_errors(shared_storage):
    ex = shared_storage.executor()

    @ex.task(id="a", timeout=5)
    async def a(ctx, input):
        return 1

    @ex.task(id="b", timeout=5)
    async def b(ctx, input):
        return 2

    async with ex:
        with pytest.raises(DurableExecutionNotFoundError, match=r"Task not found \[taskId=nope\]"):
            await ex.enqueue_task("nope")
        with pytest.raises(DurableExecutionNotFoundError, match=r"Task execution not found \[executionId=te_x\]"):
            await ex.get_task_execution_handle(a, "te_x")
        handle = await ex.enqueue_task(a)
        with pytest.raises(DurableExecutionNotFoundError, match="belongs to another task"):
            await ex.get_task_execution_handle(b, handle.execution_id)
    with pytest.raises(DurableExecutionError, match="Durable executor shutdown"):
        await ex.enqueue_task(a)


async def test_unserializable_and_oversize_input_store_nothing(shared_storage):
    ex = shared_storage.executor(max_serialized_input_size=1024)

    @ex.task(id="t", timeout=5)
    async def t(ctx, input):
        return input

    async with ex:
        with pytest.raises(DurableExecutionError, match=r"Cannot serialize input of task t: .*object"):
            await ex.enqueue_task(t, object())
        with pytest.raises(DurableExecutionError, match=r"Serialized input of task t is \d+ bytes, more than the limit of 1024"):
            await ex.enqueue_task(t, "x" * 2000)
        assert await ex.storage.list_executions() == []


async def test_unserializable_output_fails_the_execution(shared_storage):
    ex = shared_storage.executor()

    @ex.task(id="t", timeout=5, retry=RetryOptions(max_attempts=3))
    async def t(ctx, input):
        return object()

    async with ex:
        finished = await (await ex.enqueue_task(t)).wait_and_get_finished_execution()
    assert finished.status is S.FAILED and finished.retry_attempts == 0
    assert finished.error.message.startswith("Cannot serialize output of task t:")


@dataclass
class Upload:
    name: str
    size: int


async def test_invalid_input_never_runs_the_task(shared_storage):
    ex = shared_storage.executor()
    ran = []

    @ex.task(id="upload", timeout=5, input_schema=Upload, retry=RetryOptions(max_attempts=3))
    async def upload(ctx, input: Upload):
        ran.append(input)
        return input.size

    @ex.task(id="even", timeout=5, validate_input=lambda v: v if v % 2 == 0 else (_ for _ in ()).throw(ValueError("must be even")))
    async def even(ctx, input):
        return input

    async with ex:
        ok = await (await ex.enqueue_task(upload, {"name": "a.txt", "size": 3})).wait_and_get_finished_execution()
        bad = await (await ex.enqueue_task(upload, {"name": "a.txt", "size": "big"})).wait_and_get_finished_execution()
        odd = await (await ex.enqueue_task(even, 3)).wait_and_get_finished_execution()
    assert ok.output == 3 and ran == [Upload("a.txt", 3)]
    assert bad.status is S.FAILED and bad.retry_attempts == 0 and not bad.error.is_retryable
    assert bad.error.message.startswith("Invalid input to task upload:") and "size" in bad.error.message
    assert odd.error.message == "Invalid input to task even: must be even"


def test_invalid_definitions_raise_naming_the_field():
    ex = DurableExecutor(MemoryStorage())

    async def run(ctx, input):
        return None

    with pytest.raises(ValueError, match="Task id cannot be empty"):
        ex.task(id="", timeout=1, run=run)
    with pytest.raises(ValueError, match="longer than 255"):
        ex.task(id="x" * 256, timeout=1, run=run)
    with pytest.raises(ValueError, match="alphanumeric"):
        ex.task(id="has-dash", timeout=1, run=run)
    with pytest.raises(ValueError, match="Invalid timeout value for task t"):
        ex.task(id="t", timeout=0, run=run)
    with pytest.raises(ValueError, match="Invalid sleep_before_run for task t"):
        ex.task(id="t", timeout=1, sleep_before_run=-1, run=run)
    with pytest.raises(ValueError, match="max_attempts must be between 0 and 1000"):
        RetryOptions(max_attempts=1001)
    with pytest.raises(ValueError, match="delay_multiplier"):
        RetryOptions(max_attempts=1, delay_multiplier=50)
    with pytest.raises(ValueError, match="max_delay"):
        RetryOptions(max_attempts=1, base_delay=10, max_delay=5)
    with pytest.raises(ValueError, match="Invalid retry options for task t"):
        ex.task(id="t", timeout=1, retry={"max_attempts": 3}, run=run)
    ex.task(id="t", timeout=1, run=run)
    with pytest.raises(ValueError, match=r"Task with given id already exists \[taskId=t\]"):
        ex.task(id="t", timeout=1, run=run)
    with pytest.raises(ValueError, match="max_concurrent_task_executions"):
        DurableExecutor(MemoryStorage(), max_concurrent_task_executions=-1)


def test_status_sets_and_backoff_formula():
    assert [s.value for s in ALL_TASK_EXECUTION_STATUSES] == [
        "ready", "running", "failed", "timed_out", "waiting_for_children",
        "waiting_for_finalize", "finalize_failed", "completed", "cancelled",
    ]
    assert ACTIVE_TASK_EXECUTION_STATUSES | FINISHED_TASK_EXECUTION_STATUSES == set(ALL_TASK_EXECUTION_STATUSES)
    assert ERRORED_TASK_EXECUTION_STATUSES == FINISHED_TASK_EXECUTION_STATUSES - {S.COMPLETED}
    retry = RetryOptions(max_attempts=5, base_delay=1, delay_multiplier=2, max_delay=30)
    assert [retry.delay_after_failure(k) for k in range(6)] == [1, 2, 4, 8, 16, 30]
    assert math.isclose(RetryOptions(max_attempts=1, base_delay=0.5, delay_multiplier=1.5).delay_after_failure(2), 1.125)


async def test_every_state_change_is_emitted_as_an_event(shared_storage):
    events = []

    class Recorder:
        @hookimpl
        def durable_task_execution_event(self, event):
            events.append(event)

    pm = get_plugin_manager()
    pm.register(Recorder())
    ex = shared_storage.executor(plugins=PluginRegistry.load(pm))

    @ex.task(id="t", timeout=5, retry=RetryOptions(max_attempts=1))
    async def t(ctx, input):
        if ctx.attempt == 0:
            raise RuntimeError("once")
        return "ok"

    async with ex:
        handle = await ex.enqueue_task(t)
        await handle.wait_and_get_finished_execution()
    mine = [(e.kind, e.previous_status, e.status) for e in events if e.execution_id == handle.execution_id]
    assert mine == [
        ("enqueued", None, S.READY),
        ("claimed", S.READY, S.RUNNING),
        ("committed", S.RUNNING, S.READY),
        ("claimed", S.READY, S.RUNNING),
        ("committed", S.RUNNING, S.COMPLETED),
    ]
    assert all(e.executor_id == ex.executor_id and e.task_id == "t" for e in events)


async def test_storage_metrics_cover_each_operation(shared_storage):
    ex = shared_storage.executor()

    @ex.task(id="t", timeout=5)
    async def t(ctx, input):
        return 1

    async with ex:
        await (await ex.enqueue_task(t)).wait_and_get_finished_execution()
        metrics = ex.get_storage_metrics()
    assert {"insert_executions", "claim_executions", "commit_runs", "get_executions"} <= set(metrics)
    m = metrics["commit_runs"]
    assert m.count == 1 and 0 <= m.min <= m.p50 <= m.p90 <= m.p95 <= m.max


async def test_storage_by_plugin_name_and_unknown_plugin():
    ex = DurableExecutor("memory")

    @ex.task(id="t", timeout=5)
    async def t(ctx, input):
        return "via plugin"

    async with ex:
        assert (await (await ex.enqueue_task(t)).wait_and_get_finished_execution()).output == "via plugin"
    with pytest.raises(DurableExecutionNotFoundError, match="storage 'nosuch' is not installed; run: durable install nosuch"):
        async with DurableExecutor("nosuch"):
            pass
