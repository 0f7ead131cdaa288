"""The event stream observers stand on (``durable_task_execution_event``): each event carries the
error stored with its change and the attempt of the run it concerns, and changes a storage made because another execution finished are
``closed``. On memory, SQLite and PostgreSQL, in virtual time."""

from __future__ import annotations

import logging

import trio

from durable_core import (
    DurableExecutionError,
    ParentTaskResult,
    RetryOptions,
    TaskExecutionEvent,
    TaskExecutionStatus,
    child_task,
    hookimpl,
)
from durable_core.plugins.manager import PluginRegistry, get_plugin_manager

S = TaskExecutionStatus


class Recorder:
    """Every event, and a ``trio.Event`` per (task id, status) reached."""

    def __init__(self) -> None:
        self.events: list[TaskExecutionEvent] = []
        self.reached: dict[tuple[str, S], trio.Event] = {}

    @hookimpl
    def durable_task_execution_event(self, event: TaskExecutionEvent) -> None:
        self.events.append(event)
        self.reached.setdefault((event.task_id, event.status), trio.Event()).set()

    async def wait_for(self, task_id: str, status: S) -> None:
        await self.reached.setdefault((task_id, status), trio.Event()).wait()

    def of(self, execution_id: str) -> list[tuple[str, S | None, S, str | None]]:
        return [(e.kind, e.previous_status, e.status, e.error.message if e.error else None)
                for e in self.events if e.execution_id == execution_id]

    def plugins(self) -> PluginRegistry:
        pm = get_plugin_manager()
        pm.register(self)
        return PluginRegistry.load(pm)


async def test_a_failed_run_s_events_carry_its_error(shared_storage, caplog):
    recorder = Recorder()
    ex = shared_storage.executor(plugins=recorder.plugins())

    @ex.task(id="flaky", timeout=5, retry=RetryOptions(max_attempts=1))
    async def flaky(ctx, input):
        raise RuntimeError(f"boom {ctx.attempt}")

    @ex.task(id="fatal", timeout=5)
    async def fatal(ctx, input):
        raise DurableExecutionError.non_retryable("bad input")

    with caplog.at_level(logging.DEBUG, logger="durable.events"):
        async with ex:
            flaky_handle = await ex.enqueue_task(flaky)
            fatal_handle = await ex.enqueue_task(fatal)
            await flaky_handle.wait_and_get_finished_execution()
            await fatal_handle.wait_and_get_finished_execution()

    assert recorder.of(flaky_handle.execution_id) == [
        ("enqueued", None, S.READY, None),
        ("claimed", S.READY, S.RUNNING, None),
        ("committed", S.RUNNING, S.READY, "boom 0"),
        ("claimed", S.READY, S.RUNNING, None),
        ("committed", S.RUNNING, S.FAILED, "boom 1"),
    ]
    assert [e.attempt for e in recorder.events if e.execution_id == flaky_handle.execution_id] == [None, 0, 0, 1, 1]
    assert recorder.of(fatal_handle.execution_id)[-1] == ("committed", S.RUNNING, S.FAILED, "bad input")
    # the built-in logging plugin prints the failure
    assert f"committed fatal [{fatal_handle.execution_id}] running -> failed: bad input" in caplog.messages


async def test_changes_made_by_another_execution_s_finish_are_closed(shared_storage):
    recorder = Recorder()
    ex = shared_storage.executor(plugins=recorder.plugins())
    release = trio.Event()

    @ex.task(id="quick", timeout=5)
    async def quick(ctx, input):
        await release.wait()
        return 1

    @ex.task(id="stuck", timeout=600)
    async def stuck(ctx, input):
        await trio.sleep_forever()

    @ex.parent_task(id="parent", timeout=5)
    async def parent(ctx, input):
        return ParentTaskResult(None, [child_task(quick), child_task(stuck)])

    async with ex:
        handle = await ex.enqueue_task(parent)
        await recorder.wait_for("stuck", S.RUNNING)
        release.set()
        await recorder.wait_for("quick", S.COMPLETED)
        await handle.cancel()
        await recorder.wait_for("stuck", S.CANCELLED)

    (quick_id,) = {e.execution_id for e in recorder.events if e.task_id == "quick"}
    (stuck_id,) = {e.execution_id for e in recorder.events if e.task_id == "stuck"}
    assert recorder.of(quick_id)[-1] == ("committed", S.RUNNING, S.COMPLETED, None)
    assert recorder.of(handle.execution_id)[2:] == [
        ("committed", S.RUNNING, S.WAITING_FOR_CHILDREN, None),
        ("closed", S.WAITING_FOR_CHILDREN, S.WAITING_FOR_CHILDREN, None),  # its child 'quick' finished
        ("cancelled", S.WAITING_FOR_CHILDREN, S.CANCELLED, "Task execution cancelled"),
    ]
    assert recorder.of(stuck_id)[-1] == ("closed", S.RUNNING, S.CANCELLED, None)  # with its parent



def test_expire_leases_changes_are_expired_or_closed():
    """``expire_leases`` does not say which records it expired: a cascade only cancels, and a
    waiting parent was closed when the same call finished one of its children."""
    from durable_core.maintenance import expired
    from durable_core.storage.contract import EXPIRED_ERROR, EXPIRED_TOO_OFTEN_ERROR, StatusChange

    W = S.WAITING_FOR_CHILDREN
    assert expired([StatusChange("a", "t", S.RUNNING, S.READY), StatusChange("p", "t", W, W)]) == {
        "a": EXPIRED_ERROR, "p": None}
    assert expired([StatusChange("c", "t", S.RUNNING, S.FAILED), StatusChange("p", "t", W, W),
                    StatusChange("d", "t", S.RUNNING, S.CANCELLED)]) == {"c": EXPIRED_TOO_OFTEN_ERROR}
