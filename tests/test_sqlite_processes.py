"""Several processes on one SQLite file, and a worker killed with SIGKILL mid-run.

These tests start real worker processes (``tests/processes/worker.py``) and use the real clock.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import trio

from durable_core import DurableExecutor, TaskExecutionStatus

pytest.importorskip("durable_storage_sqlite")
pytestmark = pytest.mark.real_clock

WORKER = Path(__file__).parent / "processes" / "worker.py"
S = TaskExecutionStatus


def start_worker(db: Path, logs: Path, *, expire_leeway: float = 300.0) -> subprocess.Popen:
    worker = subprocess.Popen([sys.executable, str(WORKER), str(db), str(logs), str(expire_leeway)],
                              stdout=subprocess.PIPE, text=True)
    assert worker.stdout.readline().strip() == "ready"
    return worker


def stop(worker: subprocess.Popen) -> None:
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0


def client(db: Path) -> tuple[DurableExecutor, dict]:
    """An executor in the test process that only enqueues and waits (it runs nothing)."""
    from processes.worker import define

    executor = DurableExecutor("sqlite", storage_options={"path": str(db)}, poll_interval=0.1,
                               max_concurrent_task_executions=0)
    return executor, define(executor, log=None)


def read_logs(logs: Path) -> list[tuple[str, str, int, int, float]]:
    lines = []
    for path in logs.glob("*.log"):
        for line in path.read_text().splitlines():
            event, execution_id, attempt, pid, at = line.split()
            lines.append((event, execution_id, int(attempt), int(pid), float(at)))
    return lines


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    logs = tmp_path / "logs"
    logs.mkdir()
    return tmp_path / "shared.db", logs


async def test_three_processes_share_one_file_and_never_run_an_execution_twice(workspace):
    db, logs = workspace
    executor, tasks = client(db)
    async with executor:  # creates the schema before the workers start
        pass
    workers = [start_worker(db, logs) for _ in range(3)]
    try:
        executor, tasks = client(db)
        async with executor:
            handles = await executor.enqueue_tasks(tasks["work"], range(1670))
            handles += await executor.enqueue_tasks(tasks["fan"], range(1, 31))
            with trio.fail_after(120):
                finished = [await h.wait_and_get_finished_execution() for h in handles]
            records = await executor.storage.list_executions(limit=10_000)
    finally:
        for worker in workers:
            stop(worker)

    assert all(f.status is S.COMPLETED for f in finished)
    assert [f.output for f in finished[:1670]] == [i * 2 for i in range(1670)]
    assert len(records) == 2000 and all(r.status is S.COMPLETED for r in records)

    log = read_logs(logs)
    starts = Counter((e, a) for event, e, a, _, _ in log if event == "start")
    expected = Counter()
    for r in records:
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


async def test_a_killed_worker_loses_nothing(workspace):
    db, logs = workspace
    victim = start_worker(db, logs, expire_leeway=1.0)
    executor, tasks = client(db)
    async with executor:
        handles = await executor.enqueue_tasks(tasks["slow"], range(20))
        with trio.fail_after(30):
            while sum(1 for line in read_logs(logs) if line[0] == "start") < 20:
                await trio.sleep(0.05)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        survivor = start_worker(db, logs, expire_leeway=1.0)
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
