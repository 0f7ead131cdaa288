"""Real storage faults under a real ``durable worker``: PostgreSQL stopped and started again, its
connections killed, SQLite's write lock held by another process, SQLite's disk full, the SQLite
file deleted. Real clock; every wait is for something observable, with a deadline."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from durable_core import DurableExecutor, TaskExecutionStatus
from durable_storage_sqlite import SqliteStorage
from durable_storage_sqlite._thread import Kind

pytestmark = pytest.mark.real_clock

S = TaskExecutionStatus
APP = '''
import trio
from durable_core import DurableExecutor

executor = DurableExecutor.from_config()

@executor.task(id="work", timeout=60)
async def work(ctx, input):
    await trio.sleep(0.3)
    return input * 2
'''
TEST_SERVER = Path(__file__).parents[1] / "plugins" / "storage_postgres" / "test-server.sh"


async def wait_for(log: Path, text: str, timeout: float = 20.0) -> None:
    with trio.fail_after(timeout):
        while text not in log.read_text():
            await trio.sleep(0.05)


@asynccontextmanager
async def worker(project: Path, config: str) -> AsyncIterator[tuple[trio.Process, Path]]:
    """``durable worker app:executor`` in ``project`` with ``config``, its stderr in a log."""
    (project / "app.py").write_text(APP)
    (project / "durable.toml").write_text(config + "[executor]\npoll_interval = 0.1\nshutdown_timeout = 1\n")
    log = project / "worker.log"
    env = {k: v for k, v in os.environ.items() if k != "DURABLE_CONFIG"}
    with log.open("wb") as stderr:
        process = await trio.lowlevel.open_process([sys.executable, "-m", "durable_core.cli", "worker", "app:executor",
                                                    "--quiet"], cwd=project, stderr=stderr, env=env)
    try:
        await wait_for(log, "stop it with")
        yield process, log
    finally:
        if process.returncode is None:
            process.terminate()
            with trio.move_on_after(20):
                await process.wait()
            process.kill()


def client(storage: str, **options: object) -> DurableExecutor:
    executor = DurableExecutor(storage, storage_options=options, max_concurrent_task_executions=0)
    executor.task(id="work", timeout=60, run=lambda ctx, input: None)
    return executor


async def run_all(executor: DurableExecutor, count: int, during: Callable[[], Awaitable[None]]) -> None:
    """Enqueue ``count`` tasks, cause ``during`` (the fault) while they run, then check that
    every one completed."""
    handles = await executor.enqueue_tasks("work", list(range(count)))
    await during()
    with trio.fail_after(30):
        finished = [await handle.wait_and_get_finished_execution() for handle in handles]
    assert [(f.status, f.output) for f in finished] == [(S.COMPLETED, i * 2) for i in range(count)]


# ----------------------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[tuple[str, str]]:
    """A PostgreSQL server of this module's own (it is stopped and started): DSN and directory."""
    if shutil.which("pg_ctl") is None and not list(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")):
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL's server binaries are missing in CI")
        pytest.skip("PostgreSQL's server binaries (pg_ctl, initdb) are not installed")
    started = subprocess.run([str(TEST_SERVER), "start"], capture_output=True, text=True, check=True).stdout
    values = dict(line.removeprefix("export ").replace("'", "").split("=", 1) for line in started.splitlines())
    try:
        yield values["DURABLE_TEST_POSTGRES_DSN"], values["DURABLE_TEST_POSTGRES_DIR"]
    finally:
        subprocess.run([str(TEST_SERVER), "stop", values["DURABLE_TEST_POSTGRES_DIR"]], check=False)


def postgres_config(dsn: str, schema: str) -> str:
    return f'[storage]\nname = "postgres"\n[storage.options]\ndsn = "{dsn}"\nschema = "{schema}"\n'


async def test_postgres_stopped_and_started_under_a_worker(own_postgres: tuple[str, str], tmp_path: Path) -> None:
    dsn, directory = own_postgres
    async with worker(tmp_path, postgres_config(dsn, "restarted")) as (process, log):

        async def outage() -> None:
            await trio.run_process([str(TEST_SERVER), "pause", directory])
            await wait_for(log, "storage unavailable: ")
            await trio.sleep(2)  # down for a while, as a restart can be
            await trio.run_process([str(TEST_SERVER), "resume", directory])

        async with client("postgres", dsn=dsn, schema="restarted") as executor:
            await run_all(executor, 30, outage)  # the client's storage reconnects too
        await wait_for(log, "storage back after ")
        assert process.returncode is None
    text = log.read_text()
    assert text.count("storage unavailable: ") == 1, text


async def claimed(executor: DurableExecutor) -> None:
    """Until the worker has claimed one of the executions: its runs are in flight."""
    with trio.fail_after(20):
        while not await executor.storage.list_executions(statuses=[S.RUNNING, S.COMPLETED], limit=1):
            await trio.sleep(0.01)


async def test_postgres_connections_killed_under_a_worker(own_postgres: tuple[str, str], tmp_path: Path) -> None:
    dsn, _ = own_postgres
    async with worker(tmp_path, postgres_config(dsn, "killed")) as (process, log):
        async with client("postgres", dsn=dsn, schema="killed", application_name="durable-test") as executor:

            async def kill_connections() -> None:
                await claimed(executor)
                await trio.to_thread.run_sync(lambda: subprocess.run(
                    ["psql", dsn, "-c", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE application_name = 'durable' AND pid <> pg_backend_pid()"], check=True,
                    capture_output=True))

            await run_all(executor, 30, kill_connections)
        assert process.returncode is None


# ----------------------------------------------------------------------------- SQLite


def sqlite_config(busy_timeout: float = 5.0) -> str:
    return (f'[storage]\nname = "sqlite"\n[storage.options]\npath = "test.db"\nbusy_timeout = {busy_timeout}\n'
            "busy_retries = 0\n")


async def test_sqlite_write_lock_held_beyond_the_busy_timeout(tmp_path: Path) -> None:
    async with worker(tmp_path, sqlite_config(busy_timeout=0.1)) as (process, log):
        holder = sqlite3.connect(tmp_path / "test.db", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another process's long write transaction, as it were
        try:
            await wait_for(log, "stayed locked by another connection beyond the busy timeout")
            await trio.sleep(1)  # ten busy timeouts
            assert process.returncode is None
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        async with client("sqlite", path=str(tmp_path / "test.db")) as executor:
            await run_all(executor, 10, trio.lowlevel.checkpoint)
        await wait_for(log, "storage back after ")


async def test_sqlite_disk_full_then_space_again(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The executor in this process; SQLITE_FULL comes from ``PRAGMA max_page_count``, a limit
    of the storage's own connection (so the pragma runs on its connection thread)."""
    storage = await SqliteStorage.open(tmp_path / "full.db")

    async def limit_pages(extra: int | None) -> None:
        def limit() -> None:
            conn = storage._db.conn
            (count,) = conn.execute("PRAGMA page_count").fetchone()
            conn.execute(f"PRAGMA max_page_count = {4294967294 if extra is None else count + extra}").fetchone()
        await storage._threads.call(Kind.ALONE, limit)  # alone: not in a transaction that a full disk fails

    runs: list[int] = []
    executor = DurableExecutor(storage, poll_interval=0.1)

    @executor.task(id="big", timeout=60)
    async def big(ctx, input):
        runs.append(input)
        await trio.sleep(0.2)
        return "x" * 20_000  # overflow pages: the file must grow

    try:
        async with executor:
            handles = await executor.enqueue_tasks(big, list(range(20)))
            await limit_pages(0)
            with trio.fail_after(20):
                while not any("the disk is full" in record.getMessage() for record in caplog.records):
                    await trio.sleep(0.05)
            await limit_pages(None)
            with trio.fail_after(30):
                finished = [await handle.wait_and_get_finished_execution() for handle in handles]
    finally:
        await storage.aclose()
    assert {f.status for f in finished} == {S.COMPLETED} and sorted(runs) == list(range(20))


async def test_sqlite_file_deleted_stops_the_worker_with_one_line(tmp_path: Path) -> None:
    async with worker(tmp_path, sqlite_config()) as (process, log):
        for name in ("test.db", "test.db-wal", "test.db-shm"):
            (tmp_path / name).unlink(missing_ok=True)
        with trio.fail_after(20):
            await process.wait()
    assert process.returncode == 2
    last = log.read_text().splitlines()[-1]
    assert last.startswith("error: SQLite database ") and "was deleted or replaced while in use" in last
    assert "Traceback" not in log.read_text()
