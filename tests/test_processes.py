"""Several processes on one storage (a SQLite file, a PostgreSQL schema), and a worker killed with
SIGKILL mid-run.

These tests start real worker processes (``tests/processes/worker.py``) and use the real clock.
Each runs for every multi-process storage installed (the ``shared_storage`` fixture without
memory); PostgreSQL needs a test server (see ``durable_storage_postgres.testing``).
"""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import trio

from durable_core import DurableExecutor, TaskExecutionStatus

WORKER = Path(__file__).parent / "processes" / "worker.py"
S = TaskExecutionStatus


Storage = tuple[str, dict]
"""A storage plugin's name and its options, as the workers open it."""


def start_worker(storage: Storage, logs: Path, *, expire_leeway: float = 300.0) -> subprocess.Popen:
    name, options = storage
    worker = subprocess.Popen([sys.executable, str(WORKER), name, json.dumps(options), str(logs), str(expire_leeway)],
                              stdout=subprocess.PIPE, text=True)
    assert worker.stdout.readline().strip() == "ready"
    return worker


def stop(worker: subprocess.Popen) -> None:
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0


def client(storage: Storage) -> tuple[DurableExecutor, dict]:
    """An executor in the test process that only enqueues and waits (it runs nothing)."""
    from processes.worker import define

    name, options = storage
    executor = DurableExecutor(name, storage_options=options, poll_interval=0.1, max_concurrent_task_executions=0)
    return executor, define(executor, log=None)


def read_logs(logs: Path) -> list[tuple[str, str, int, int, float]]:
    lines = []
    for path in logs.glob("*.log"):
        for line in path.read_text().splitlines():
            event, execution_id, attempt, pid, at = line.split()
            lines.append((event, execution_id, int(attempt), int(pid), float(at)))
    return lines


def _installed(name: str) -> list:
    return [] if importlib.util.find_spec(name) else [pytest.mark.skip(reason=f"{name} is not installed")]


pytestmark = [pytest.mark.real_clock, pytest.mark.parametrize(
    "shared_storage", [pytest.param("sqlite", marks=_installed("durable_storage_sqlite")),
                       pytest.param("postgres", marks=_installed("durable_storage_postgres"))], indirect=True)]


@pytest.fixture
def workspace(shared_storage, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    logs = tmp_path / "logs"
    logs.mkdir()
    return (shared_storage.name, shared_storage.options), logs


async def run_on_three_workers(storage: Storage, logs: Path, enqueue) -> tuple[list, list]:
    """Start three workers, enqueue with ``enqueue(executor, tasks)``, wait for every handle;
    returns the finished executions and every stored record."""
    executor, tasks = client(storage)
    async with executor:  # creates the schema before the workers start
        pass
    workers = [start_worker(storage, logs) for _ in range(3)]
    try:
        executor, tasks = client(storage)
        async with executor:
            handles = await enqueue(executor, tasks)
            with trio.fail_after(120):
                finished = [await h.wait_and_get_finished_execution() for h in handles]
            records = await executor.storage.list_executions(limit=100_000)
    finally:
        for worker in workers:
            stop(worker)
    return finished, records


def assert_each_attempt_ran_once_in_one_process(logs: Path, records: list) -> None:
    log = read_logs(logs)
    starts = Counter((e, a) for event, e, a, _, _ in log if event == "start")
    expected = Counter()
    for r in records:
        if r.task_id in ("sequence", "loop"):  # the engine's own steps: no user code, no log
            continue
        for attempt in range(r.retry_attempts + 1):
            expected[(r.execution_id, attempt)] = 1
    assert starts == expected  # each attempt's side effect recorded exactly once
    assert len({pid for *_, pid, _ in log}) == 3  # all three processes took part

    intervals = defaultdict(list)
    open_runs = {}
    for event, execution_id, attempt, pid, at in sorted(log, key=lambda line: line[4]):
        if event == "start":
            open_runs[(execution_id, attempt)] = (pid, at)
        else:
            pid_started, started = open_runs.pop((execution_id, attempt))
            assert pid_started == pid
            intervals[execution_id].append((started, at, pid))
    for runs in intervals.values():
        runs.sort()
        for (_, end, _), (start, _, _) in zip(runs, runs[1:]):
            assert end <= start  # never running in two processes at once


async def test_three_processes_run_2000_independent_tasks_each_exactly_once(workspace):
    storage, logs = workspace

    async def enqueue(executor, tasks):
        return await executor.enqueue_tasks(tasks["work"], range(2000))

    finished, records = await run_on_three_workers(storage, logs, enqueue)
    assert [f.status for f in finished] == [S.COMPLETED] * 2000
    assert [f.output for f in finished] == [i * 2 for i in range(2000)]
    assert len(records) == 2000 and all(r.status is S.COMPLETED for r in records)
    assert sum(r.retry_attempts for r in records) == len(range(0, 2000, 7))  # each failed once
    assert_each_attempt_ran_once_in_one_process(logs, records)


async def test_three_processes_run_the_reference_workload_each_execution_exactly_once(workspace):
    """100 parents of 50 children with a finalize, 100 sequences of 4, 100 polling loops."""
    storage, logs = workspace

    async def enqueue(executor, tasks):
        handles = []
        for kind in ("parent", "sequence", "loop"):
            handles += await executor.enqueue_tasks(tasks[kind], range(100))
        return handles

    finished, records = await run_on_three_workers(storage, logs, enqueue)
    assert [f.status for f in finished] == [S.COMPLETED] * 300
    assert [f.output for f in finished[:100]] == [50] * 100  # every finalize saw 50 completed children
    assert [f.output for f in finished[100:200]] == [i + 4 for i in range(100)]
    assert [f.output for f in finished[200:]] == [{"is_success": True, "output": i} for i in range(100)]
    kinds = Counter(r.task_id for r in records)
    assert (kinds["parent"], kinds["child"], kinds["check_children"], kinds["sequence"], kinds["step"],
            kinds["loop"]) == (100, 5000, 100, 100, 400, 100)
    assert kinds["poll_flag"] >= 100
    assert all(r.status is S.COMPLETED for r in records)
    assert_each_attempt_ran_once_in_one_process(logs, records)


async def test_a_killed_worker_loses_nothing(workspace):
    storage, logs = workspace
    victim = start_worker(storage, logs, expire_leeway=1.0)
    executor, tasks = client(storage)
    async with executor:
        handles = await executor.enqueue_tasks(tasks["slow"], range(20))
        with trio.fail_after(30):
            while sum(1 for line in read_logs(logs) if line[0] == "start") < 20:
                await trio.sleep(0.05)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        survivor = start_worker(storage, logs, expire_leeway=1.0)
        try:
            with trio.fail_after(60):
                finished = [await h.wait_and_get_finished_execution() for h in handles]
        finally:
            stop(survivor)

    assert [f.status for f in finished] == [S.COMPLETED] * 20
    assert {f.output for f in finished} == {"Task execution expired"}
    runs = read_logs(logs)
    assert {pid for event, *_, pid, _ in runs if event == "end"} == {survivor.pid}
    assert sum(1 for event, *_ in runs if event == "start") == 40  # killed once, re-run once


async def test_a_killed_workers_long_runs_are_claimed_again_within_the_heartbeat_bound(workspace):
    """Default leases: 10 s, renewed every 3 s; whatever the tasks' timeout (an hour here), a
    killed worker's executions are claimed again within 15 s."""
    storage, logs = workspace
    victim = start_worker(storage, logs)
    executor, tasks = client(storage)
    async with executor:
        handles = await executor.enqueue_tasks(tasks["long"], range(10))
        ids = [h.execution_id for h in handles]
        with trio.fail_after(30):
            while sum(1 for line in read_logs(logs) if line[0] == "start") < 10:
                await trio.sleep(0.05)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        killed_at = trio.current_time()
        survivor = start_worker(storage, logs)
        try:
            with trio.fail_after(15 - (trio.current_time() - killed_at)):
                while not all(r.lease_token >= 2 for r in await executor.storage.get_executions(ids)):
                    await trio.sleep(0.05)
            with trio.fail_after(30):
                finished = [await h.wait_and_get_finished_execution() for h in handles]
        finally:
            stop(survivor)
    assert [(f.status, f.output) for f in finished] == [(S.COMPLETED, "Task execution expired")] * 10
    assert {pid for event, *_, pid, _ in read_logs(logs) if event == "end"} == {survivor.pid}
