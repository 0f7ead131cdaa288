"""Several processes on one storage (a SQLite file, a PostgreSQL schema), and a worker killed with
SIGKILL mid-run.

These tests start real worker processes (``tests/processes/worker.py``) and use the real clock.
Each runs for every multi-process storage installed; PostgreSQL needs a test server (see
``durable_storage_postgres.testing``).
"""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from durable_core import DurableExecutor, TaskExecutionStatus

pytestmark = pytest.mark.real_clock

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


@pytest.fixture(params=[pytest.param("sqlite", marks=_installed("durable_storage_sqlite")),
                        pytest.param("postgres", marks=_installed("durable_storage_postgres"))])
def storage(request, tmp_path) -> Iterator[Storage]:
    if request.param == "sqlite":
        yield "sqlite", {"path": str(tmp_path / "shared.db")}
        return
    from durable_storage_postgres.testing import scratch_schema, test_dsn

    dsn = test_dsn()
    with scratch_schema(dsn, "processes") as schema:
        yield "postgres", {"dsn": dsn, "schema": schema}


@pytest.fixture
def workspace(storage, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    logs = tmp_path / "logs"
    logs.mkdir()
    return storage, logs


async def test_three_processes_share_one_storage_and_never_run_an_execution_twice(workspace):
    storage, logs = workspace
    executor, tasks = client(storage)
    async with executor:  # creates the schema before the workers start
        pass
    workers = [start_worker(storage, logs) for _ in range(3)]
    try:
        executor, tasks = client(storage)
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
