"""The hooks observability plugins stand on beyond events: ``durable_execution_context`` (kept with
an execution from the code that creates it), ``durable_wrap_run`` (around each run),
``durable_executor_running`` (beside an executor) and ``durable_http_endpoints`` (GET endpoints of
durable's HTTP servers). Engine tests run in virtual time on memory, SQLite and PostgreSQL."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import trio

from durable_core import (
    DurableExecutionError,
    DurableExecutor,
    ExecutionRun,
    ParentTaskResult,
    RetryOptions,
    TaskExecutionStatus,
    child_task,
    hookimpl,
)
from durable_core.plugins.manager import PluginRegistry, get_plugin_manager
from durable_storage_memory import MemoryStorage

S = TaskExecutionStatus
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


def registry(*plugins: object) -> PluginRegistry:
    pm = get_plugin_manager()
    for plugin in plugins:
        pm.register(plugin)
    return PluginRegistry.load(pm)


class Carrier:
    """Keeps the current ``request_id`` with each new execution, and makes it current again in
    each run (what the otel plugin does with a trace); records every run."""

    def __init__(self) -> None:
        self.runs: list[tuple[ExecutionRun, str | None, S | None]] = []

    @hookimpl
    def durable_execution_context(self) -> dict[str, str] | None:
        current = request_id.get()
        return None if current is None else {"request_id": current}

    @hookimpl
    def durable_wrap_run(self, run: ExecutionRun):
        return self._current(run)

    @contextmanager
    def _current(self, run: ExecutionRun) -> Iterator[None]:
        token = request_id.set((run.context or {}).get("request_id"))
        try:
            yield
        finally:
            request_id.reset(token)
            self.runs.append((run, (run.context or {}).get("request_id"), run.status))


async def test_context_goes_from_the_enqueuer_to_the_run_and_its_children(shared_storage):
    carrier = Carrier()
    ex = shared_storage.executor(plugins=registry(carrier))
    seen: dict[str, str | None] = {}

    @ex.task(id="child", timeout=3600)
    def child(ctx, input):  # a plain def, in a worker thread: the context goes with it
        seen[f"child {input}"] = request_id.get()

    @ex.parent_task(id="parent", timeout=5)
    async def parent(ctx, input):
        seen["parent"] = request_id.get()
        return ParentTaskResult(None, [child_task(child, 1), child_task(child, 2)])

    async with ex:
        token = request_id.set("req-42")
        try:
            handle = await ex.enqueue_task(parent)
        finally:
            request_id.reset(token)
        untraced = await ex.enqueue_task(child, 3)
        await handle.wait_and_get_finished_execution()
        await untraced.wait_and_get_finished_execution()

    assert seen == {"parent": "req-42", "child 1": "req-42", "child 2": "req-42", "child 3": None}
    async with shared_storage.open() as storage:
        (stored,) = await storage.get_executions([handle.execution_id])
    assert stored.context == {"request_id": "req-42"}
    by_task = sorted(((run.task_id, carried, status) for run, carried, status in carrier.runs), key=str)
    assert by_task == [("child", "req-42", S.COMPLETED), ("child", "req-42", S.COMPLETED), ("child", None, S.COMPLETED),
                       ("parent", "req-42", S.COMPLETED), ("parent", "req-42", S.WAITING_FOR_CHILDREN)]


async def test_a_run_s_outcome_attempt_and_times(shared_storage):
    carrier = Carrier()
    ex = shared_storage.executor(plugins=registry(carrier))

    @ex.task(id="flaky", timeout=5, retry=RetryOptions(max_attempts=1, base_delay=2))
    async def flaky(ctx, input):
        if ctx.attempt == 0:
            raise DurableExecutionError("try again")
        return "ok"

    async with ex:
        handle = await ex.enqueue_task(flaky, sleep_before_run=1)
        await handle.wait_and_get_finished_execution()
    (first, _, _), (second, _, _) = carrier.runs
    assert (first.attempt, first.status, first.error.message) == (0, S.READY, "try again")
    assert (second.attempt, second.status, second.error) == (1, S.COMPLETED, None)
    assert (first.execution_id, first.executor_id) == (handle.execution_id, ex.executor_id)
    assert second.due_at - first.due_at == pytest.approx(2, abs=0.01)  # the retry delay
    assert first.claimed_at >= first.due_at


async def test_a_wrapper_that_raises_is_logged_and_the_run_goes_on(caplog):
    class Broken:
        @hookimpl
        def durable_wrap_run(self, run):
            raise RuntimeError("no tracer")

    class BrokenOnExit:
        @hookimpl
        def durable_wrap_run(self, run):
            @contextmanager
            def wrap() -> Iterator[None]:
                yield
                raise RuntimeError("exporter gone")
            return wrap()

    ex = DurableExecutor(MemoryStorage(), plugins=registry(Broken(), BrokenOnExit()))

    @ex.task(id="t", timeout=5)
    async def t(ctx, input):
        return input

    async with ex:
        assert (await (await ex.enqueue_task(t, 7)).wait_and_get_finished_execution()).output == 7
    messages = [r.getMessage() for r in caplog.records if r.name == "durable.plugins"]
    assert any("failed to wrap a run" in m and "RuntimeError: no tracer" in m for m in messages)
    assert any("failed when a run ended: RuntimeError: exporter gone" in m for m in messages)


def test_contexts_are_merged_and_bad_ones_left_out(caplog):
    class Trace:
        @hookimpl
        def durable_execution_context(self):
            return {"traceparent": "00-abc-def-01"}

    class Tenant:
        @hookimpl
        def durable_execution_context(self):
            return {"tenant": "acme"}

    class Wrong:
        @hookimpl
        def durable_execution_context(self):
            return {"n": 1}

    class Huge:
        @hookimpl
        def durable_execution_context(self):
            return {"blob": "x" * 5000}

    assert registry(Trace(), Tenant(), Wrong()).execution_context() == {"traceparent": "00-abc-def-01", "tenant": "acme"}
    assert "expected a dict of strings or None, got {'n': 1}" in caplog.text
    assert registry(Trace(), Huge()).execution_context() is None
    assert "is over 4096 characters; not kept" in caplog.text
    assert registry().execution_context() is None  # nobody asked: nothing is called


async def test_work_beside_a_running_executor_is_cancelled_at_shutdown(caplog):
    looks: list[str] = []
    stopped = trio.Event()

    class Poller:
        @hookimpl
        def durable_executor_running(self, executor):
            async def poll() -> None:
                try:
                    while True:
                        looks.append(f"{executor.executor_id} {len(await executor.storage.list_executions())}")
                        await trio.sleep(5)
                finally:
                    stopped.set()
            return poll

    class Failing:
        @hookimpl
        def durable_executor_running(self, executor):
            async def fail() -> None:
                raise ValueError("no gauge")
            return fail

    ex = DurableExecutor(MemoryStorage(), plugins=registry(Poller(), Failing()))
    async with ex:
        await trio.sleep(12)
    assert looks == [f"{ex.executor_id} 0"] * 3 and stopped.is_set()
    assert any(r.getMessage().endswith("failed beside the executor") and r.exc_info for r in caplog.records)


def test_http_endpoints_by_path_and_two_plugins_on_one_path():
    class Metrics:
        @hookimpl
        def durable_http_endpoints(self, register):
            register("/up", lambda: ("text/plain", b"up 1\n"))

    endpoints = registry(Metrics()).http_endpoints()
    assert endpoints["/up"]() == ("text/plain", b"up 1\n")
    with pytest.raises(DurableExecutionError, match=r"endpoint /up is registered by two plugins: .* "
                                                    r"uninstall one of them, or disable one with DURABLE_DISABLE_PLUGINS="):
        registry(Metrics(), Metrics()).http_endpoints()


def test_hooks_are_listed_by_durable_plugins():
    class All:
        @hookimpl
        def durable_execution_context(self):
            return None

        @hookimpl
        def durable_wrap_run(self, run):
            return None

    pm = get_plugin_manager()
    pm.register(All(), name="all")
    loaded = PluginRegistry.load(pm)
    (info,) = [p for p in loaded.plugins if p.name == "all"]
    assert sorted(info.provides) == ["hook:durable_execution_context", "hook:durable_wrap_run"]
    assert loaded.wraps_runs
