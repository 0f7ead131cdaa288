"""Heartbeats in virtual time: leases renewed while a run lasts, lost leases stop their run, stuck
runs are given up, and live executors are listed; each on memory, SQLite and PostgreSQL (the
``shared_storage`` fixture)."""

from __future__ import annotations

import os
import socket

import pytest
import trio
import trio.testing

from durable_conformance.scenarios import take_over_a_stalled_lease
from durable_core import DurableExecutor, TaskExecutionStatus, TaskRunContext
from durable_storage_memory import MemoryStorage

S = TaskExecutionStatus


async def test_a_run_longer_than_its_lease_keeps_it_by_heartbeats_and_completes_once(shared_storage) -> None:
    # polls every 5 s: a lease that lapsed (at 10 s without a heartbeat) would be expired by 15 s
    worker = shared_storage.executor(lease_duration=10, heartbeat_interval=3, poll_interval=5)
    watcher = shared_storage.executor(max_concurrent_task_executions=0, poll_interval=5)  # expires leases
    runs = []

    @worker.task(id="long", timeout=600)
    async def long(ctx: TaskRunContext, input: None) -> str:
        runs.append(ctx.attempt)
        await trio.sleep(120)  # twelve lease durations
        return "done"

    watcher.task(id="long", timeout=600)(long.run)
    async with worker, watcher, shared_storage.open() as storage:
        handle = await watcher.enqueue_task(long)
        await trio.sleep(100)
        (record,) = await storage.get_executions([handle.execution_id])
        assert record is not None and record.status is S.RUNNING and record.lease_token == 1
        assert record.lease_expires_at is not None and record.lease_expires_at > worker.now()  # renewed
        done = await handle.wait_and_get_finished_execution()
    assert (done.status, done.output, runs) == (S.COMPLETED, "done", [0])


async def test_a_run_that_lost_its_lease_is_stopped_at_the_next_heartbeat_and_writes_nothing(shared_storage) -> None:
    worker = shared_storage.executor(poll_interval=3600, lease_duration=10, heartbeat_interval=3)
    started, stopped = trio.Event(), trio.Event()

    @worker.task(id="t", timeout=600)
    async def t(ctx: TaskRunContext, input: None) -> str:
        started.set()
        try:
            await trio.sleep(600)
        finally:
            stopped.set()
        return "stale"

    async with worker, shared_storage.open() as storage:
        handle = await worker.enqueue_task(t)
        await started.wait()
        theirs = await take_over_a_stalled_lease(storage, worker.now() + 100, lease_duration=1000)
        with trio.fail_after(3.1):  # one heartbeat_interval
            await stopped.wait()
        (record,) = await storage.get_executions([handle.execution_id])
    assert record == theirs


async def test_a_run_that_ignores_its_timeout_is_given_up_after_expire_leeway(shared_storage) -> None:
    worker = shared_storage.executor(expire_leeway=20, lease_duration=10, heartbeat_interval=3,
                                     max_lease_expirations=0)
    release = trio.Event()

    @worker.task(id="stuck", timeout=5)
    async def stuck(ctx: TaskRunContext, input: None) -> None:
        with trio.CancelScope(shield=True):
            await release.wait()

    async with worker:
        started = worker.now()
        handle = await worker.enqueue_task(stuck)
        done = await handle.wait_and_get_finished_execution()
        release.set()
    # renewed until timeout + expire_leeway (25 s), then the lease lapses within lease_duration
    assert 25 <= worker.now() - started <= 25 + 10 + 3 + 0.5
    assert (done.status, done.error.message if done.error else None) == (
        S.FAILED, "Task execution expired too many times")


async def test_live_executors_are_listed_with_what_they_run(shared_storage) -> None:
    worker = shared_storage.executor(heartbeat_interval=3)
    client = shared_storage.executor(max_concurrent_task_executions=0)  # runs nothing: no heartbeat
    release = trio.Event()

    @worker.task(id="t", timeout=60)
    async def t(ctx: TaskRunContext, input: None) -> None:
        await release.wait()

    async with worker, client, shared_storage.open() as storage:
        await worker.enqueue_tasks(t, [None, None])
        await trio.sleep(3.5)
        (live,) = await storage.list_executors(worker.now() - 10)
        assert (live.executor_id, live.host, live.pid, live.running) == (
            worker.executor_id, socket.gethostname(), os.getpid(), 2)
        assert worker.now() - 3.5 <= live.started_at < live.heartbeat_at <= worker.now()
        listed = await storage.list_executions(executor_id=worker.executor_id)
        assert len(listed) == 2 and await storage.list_executions(executor_id=client.executor_id) == []
        release.set()


def test_heartbeats_must_come_more_often_than_leases_end() -> None:
    with pytest.raises(ValueError, match=r"^Invalid executor option heartbeat_interval: expected less than "
                                         r"lease_duration \(10\), got 10"):
        DurableExecutor(MemoryStorage(), heartbeat_interval=10)
