"""``Client`` and ``AsyncClient`` as plain-Python and asyncio code uses them: real threads, a real
SQLite file, executors run in a background thread or as a trio guest on asyncio."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio.testing

from durable_core import (
    DurableExecutionError,
    DurableExecutionNotFoundError,
    DurableExecutor,
    RetryOptions,
    SerializationError,
    TaskExecutionStatus,
)
from durable_core.client import AsyncClient, Client, PortalClosedError
from durable_core.storage import StorageError
from durable_storage_memory import MemoryStorage

S = TaskExecutionStatus


def sqlite(path: Path) -> dict:
    return {"storage": "sqlite", "storage_options": {"path": str(path)}}


def worker(path: Path, started: threading.Event | None = None, **options) -> DurableExecutor:
    """An executor defining the tasks the clients below enqueue by id."""
    executor = DurableExecutor(**sqlite(path), **options)

    @executor.task(id="add", timeout=5)
    async def add(ctx, input):
        return input["a"] + input["b"]

    @executor.task(id="fail", timeout=5, retry=RetryOptions(max_attempts=0))
    async def fail(ctx, input):
        raise ValueError(f"bad input {input!r}")

    @executor.task(id="forever", timeout=600)
    async def forever(ctx, input):
        if started is not None:
            started.set()
        await trio.sleep_forever()

    executor.sleeping_task(id="approval", timeout=600)

    @executor.parent_task(id="ask", timeout=5)
    async def ask(ctx, input):
        from durable_core import ParentTaskResult, child_task
        return ParentTaskResult(children=[child_task(executor.get_task("approval"), input)])

    return executor


def eventually(condition, timeout: float = 10.0) -> None:
    """Wait until ``condition()`` holds, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not true within {timeout} s"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "app.db"


def test_a_client_without_definitions_enqueues_and_a_worker_runs_it(db):
    with Client(**sqlite(db)) as client:
        execution_id = client.enqueue("add", {"a": 2, "b": 3})
        assert client.get(execution_id).status is S.READY
        with Client.run_executor(worker(db)):
            finished = client.wait(execution_id, timeout=10)
    assert finished.status is S.COMPLETED and finished.output == 5
    assert finished.execution_id == execution_id


def test_enqueue_many_list_and_idempotency(db):
    with Client.run_executor(worker(db)) as client:
        ids = client.enqueue_many("add", [{"a": i, "b": i} for i in range(5)])
        outputs = [client.wait(i, timeout=10).output for i in ids]
        first = client.enqueue("add", {"a": 1, "b": 1}, idempotency_key="order-7")
        again = client.enqueue("add", {"a": 9, "b": 9}, idempotency_key="order-7")
        client.wait(first, timeout=10)
        completed = client.list(status="completed", task_id="add", limit=100)
        assert client.list(status=["failed", "cancelled"]) == []
        assert client.enqueue_many("add", []) == []
    assert outputs == [0, 2, 4, 6, 8]
    assert again == first
    assert {e.execution_id for e in completed} == {*ids, first}


def test_failure_cancel_and_wakeup(db):
    started = threading.Event()
    with Client.run_executor(worker(db, started)) as client:
        failed = client.wait(client.enqueue("fail", "x"), timeout=10)
        running = client.enqueue("forever")
        assert started.wait(10)
        client.cancel(running)
        cancelled = client.wait(running, timeout=10)
        parent = client.enqueue("ask", "order-1")
        eventually(lambda: client.list(task_id="approval", status="running"))  # the parent's child
        woken = client.wakeup("approval", "order-1", output={"approved": True})
        finished_parent = client.wait(parent, timeout=10)
    assert failed.status is S.FAILED and "bad input 'x'" in failed.error.message
    assert cancelled.status is S.CANCELLED
    assert woken.status is S.COMPLETED and woken.output == {"approved": True}
    assert finished_parent.status is S.COMPLETED


def test_bad_input_gets_one_clear_error_and_stores_nothing(db):
    with Client(**sqlite(db)) as client:
        with pytest.raises(DurableExecutionNotFoundError, match="te_nope"):
            client.get("te_nope")
        with pytest.raises(DurableExecutionNotFoundError):
            client.wait("te_nope", timeout=1)
        with pytest.raises(DurableExecutionNotFoundError):
            client.cancel("te_nope")
        with pytest.raises(DurableExecutionNotFoundError, match="nope"):
            client.wakeup("approval", "nope")
        with pytest.raises(SerializationError, match="type 'object'"):
            client.enqueue("add", {"a": object()})
        with pytest.raises(SerializationError):
            client.enqueue_many("add", [1, 2, {3}, object()])
        with pytest.raises(ValueError, match="Task id can only contain"):
            client.enqueue("no such-task!")
        with pytest.raises(TypeError, match="list of inputs"):
            client.enqueue_many("add", "abc")
        with pytest.raises(ValueError, match="idempotency_key"):
            client.enqueue("add", idempotency_key="")
        with pytest.raises(ValueError, match="Unknown status"):
            client.list(status="done")
        with pytest.raises(ValueError, match="limit"):
            client.list(limit=10**9)
        with pytest.raises(ValueError, match="timeout"):
            client.wait("te_x", timeout=-1)
        with pytest.raises(ValueError, match="Invalid timeout value for task add"):
            client.enqueue("add", timeout=float("nan"))
        with pytest.raises(DurableExecutionError, match="error must be a non-empty message"):
            client.wakeup("approval", "x", error="")
        assert client.list() == []


def test_wait_times_out_with_the_status(db):
    with Client(**sqlite(db)) as client:
        execution_id = client.enqueue("add", {"a": 1, "b": 1})
        with pytest.raises(TimeoutError, match=f"{execution_id} did not finish within 0.2 s .it is ready."):
            client.wait(execution_id, timeout=0.2)


def test_a_sync_call_on_an_event_loop_says_to_use_the_async_client(db):
    client = Client(**sqlite(db))

    async def in_asyncio():
        client.get("te_x")

    with pytest.raises(DurableExecutionError, match="use AsyncClient"):
        asyncio.run(in_asyncio())

    async def in_trio():
        client.get("te_x")

    with pytest.raises(DurableExecutionError, match="await the DurableExecutor's methods"):
        trio.run(in_trio)
    client.close()


def test_async_client_under_trio_is_refused(db):
    async def in_trio():
        await AsyncClient(**sqlite(db)).get("te_x")

    with pytest.raises(DurableExecutionError, match="AsyncClient runs on asyncio"):
        trio.run(in_trio)


def test_an_unknown_storage_fails_at_open_with_the_install_hint(tmp_path):
    client = Client("nosuchstorage")
    with pytest.raises(DurableExecutionError, match="durable install nosuchstorage"):
        client.enqueue("add")
    with pytest.raises(DurableExecutionError, match="durable install nosuchstorage"):
        asyncio.run(AsyncClient("nosuchstorage").open())


def test_from_config_reads_durable_toml(db, tmp_path, monkeypatch):
    (tmp_path / "durable.toml").write_text(f'[storage]\nname = "sqlite"\n[storage.options]\npath = "{db}"\n')
    monkeypatch.chdir(tmp_path)
    with Client.from_config() as client:
        execution_id = client.enqueue("add", {"a": 1, "b": 2})
    with Client.run_executor(worker(db)) as client:
        assert client.wait(execution_id, timeout=10).output == 3


def test_calls_on_a_closed_client_fail_clearly(db):
    client = Client(**sqlite(db))
    client.enqueue("add", {"a": 1, "b": 1})  # opened on first use
    client.close()
    client.close()
    with pytest.raises(PortalClosedError, match="closed"):
        client.enqueue("add", {"a": 1, "b": 1})


def test_leaving_run_executor_hands_running_executions_back(db):
    started = threading.Event()
    with Client.run_executor(worker(db, started, shutdown_timeout=0.1)) as client:
        execution_id = client.enqueue("forever")
        assert started.wait(10)
    with Client(**sqlite(db)) as client:
        handed_back = client.get(execution_id)
    assert handed_back.status is S.READY
    assert handed_back.retry_attempts == 0


def test_a_thread_pool_shares_one_client(db):
    with Client.run_executor(worker(db)) as client:
        results: list[int] = []

        def produce(n: int) -> None:
            ids = [client.enqueue("add", {"a": n, "b": i}) for i in range(20)]
            results.extend(client.wait(i, timeout=10).output for i in ids)

        threads = [threading.Thread(target=produce, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sorted(results) == sorted(n + i for n in range(4) for i in range(20))


# ----------------------------------------------------------------------------- asyncio


def test_async_client_and_an_executor_in_asyncio_guest_mode(db):
    async def main():
        async with AsyncClient(**sqlite(db)) as client:
            execution_id = await client.enqueue("add", {"a": 20, "b": 22})
            async with AsyncClient.run_executor(worker(db)) as in_process:
                finished = await client.wait(execution_id, timeout=10)
                own = await in_process.wait(await in_process.enqueue("add", {"a": 1, "b": 1}), timeout=10)
                listed = await in_process.list(status="completed")
        return finished, own, listed

    finished, own, listed = asyncio.run(main())
    assert finished.output == 42 and own.output == 2
    assert len(listed) == 2


@contextlib.contextmanager
def ticking(interval: float) -> Iterator[list[int]]:
    """Within a running asyncio loop: count in ``[0]`` how often another task got to run."""
    ticks = [0]

    async def tick():
        while True:
            ticks[0] += 1
            await asyncio.sleep(interval)

    ticker = asyncio.get_running_loop().create_task(tick())
    try:
        yield ticks
    finally:
        ticker.cancel()


def test_asyncio_cancellation_stops_a_wait_and_the_loop_stays_responsive(db):
    async def main():
        async with AsyncClient(**sqlite(db)) as client:
            execution_id = await client.enqueue("add", {"a": 1, "b": 1})
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(client.wait(execution_id), 0.2)
            with ticking(0) as ticks:
                ids = [await client.enqueue("add", {"a": i, "b": 0}) for i in range(50)]
            return ticks[0], ids, await client.get(execution_id)

    ticks, ids, still = asyncio.run(main())
    assert still.status is S.READY
    assert len(set(ids)) == 50 and ticks >= 50  # the loop ran while the storage worked elsewhere


def test_an_async_enqueue_meeting_another_process_lock_waits_off_the_loop(db):
    """Written on the loop's thread while the write lock is free; held elsewhere, the enqueue
    waits in a worker thread and the loop runs on."""
    async def main():
        async with AsyncClient(**sqlite(db)) as client:
            await client.enqueue("add", {"a": 0, "b": 0})
            blocker = sqlite3.connect(db, isolation_level=None)
            blocker.execute("BEGIN IMMEDIATE")
            with ticking(0.001) as ticks:
                pending = asyncio.create_task(client.enqueue("add", {"a": 1, "b": 1}))
                await asyncio.sleep(0.05)
                waited = (pending.done(), ticks[0])
                blocker.execute("COMMIT")
                blocker.close()
                execution_id = await pending
            return waited, await client.get(execution_id)

    (done_while_locked, ticks), execution = asyncio.run(main())
    assert not done_while_locked and ticks >= 5
    assert execution.status is S.READY and execution.input == {"a": 1, "b": 1}


def test_leaving_the_asyncio_run_executor_hands_running_executions_back(db):
    started = threading.Event()

    async def main():
        async with AsyncClient.run_executor(worker(db, started, shutdown_timeout=0.1)) as client:
            execution_id = await client.enqueue("forever")
            assert await asyncio.to_thread(started.wait, 10)
        async with AsyncClient(**sqlite(db)) as client:
            return await client.get(execution_id)

    assert asyncio.run(main()).status is S.READY


def test_a_client_on_a_virtual_clock_waits_through_an_hour_of_backoff(db):
    executor = DurableExecutor(**sqlite(db), poll_interval=60, heartbeat_interval=20, lease_duration=60)
    attempts: list[float] = []

    @executor.task(id="charge", timeout=30, retry=RetryOptions(max_attempts=3, base_delay=1200))
    async def charge(ctx, input):
        attempts.append(trio.current_time())
        if ctx.attempt < 3:
            raise ConnectionError("gateway down")
        return "charged"

    with Client.run_executor(executor, clock=trio.testing.MockClock(autojump_threshold=0)) as client:
        execution_id = client.enqueue("charge")
        finished = client.wait(execution_id)
    assert finished.output == "charged"
    assert [round(b - a) for a, b in zip(attempts, attempts[1:])] == [1200, 1200, 1200]


def test_a_client_used_before_a_fork_says_so_in_the_child(db):
    with Client(**sqlite(db)) as client:
        execution_id = client.enqueue("add", {"a": 1, "b": 1})
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report the error's message through the pipe, then leave at once
            try:
                client.get(execution_id)
                message = "no error"
            except DurableExecutionError as exc:
                message = str(exc)
            os.write(write, message.encode()[:4000])
            os._exit(0)
        os.close(write)
        os.waitpid(pid, 0)
        message = os.read(read, 4000).decode()
        assert client.get(execution_id).status is S.READY  # the parent's client still works
    assert "has since forked" in message and "Open clients after forking" in message


# ----------------------------------------------------------------------------- transactional enqueue


def test_enqueue_joins_the_callers_sqlite_transaction(db, tmp_path):
    with Client(**sqlite(db)) as client:
        client.list()  # opened: durable's schema is in the file
        app = sqlite3.connect(db)
        app.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, total INTEGER)")
        app.commit()
        app.execute("INSERT INTO orders VALUES (1, 30)")
        kept = client.enqueue("add", {"a": 1, "b": 2}, connection=app)
        app.commit()
        app.execute("INSERT INTO orders VALUES (2, 40)")
        (dropped,) = client.enqueue_many("add", [{"a": 5, "b": 5}], connection=app)
        app.rollback()
        with pytest.raises(StorageError, match="other.db"):
            client.enqueue("add", {"a": 0, "b": 0}, connection=sqlite3.connect(tmp_path / "other.db"))
        assert client.get(kept).status is S.READY
        with pytest.raises(DurableExecutionNotFoundError):
            client.get(dropped)
        with Client.run_executor(worker(db)):
            assert client.wait(kept, timeout=10).output == 3
        assert [e.execution_id for e in client.list()] == [kept]
        assert app.execute("SELECT id FROM orders").fetchall() == [(1,)]


def test_connection_on_a_storage_without_transactions_is_refused():
    with Client(MemoryStorage()) as client:
        with pytest.raises(DurableExecutionError, match="cannot enqueue in your transaction"):
            client.enqueue("add", connection=object())
        assert client.list() == []


def test_enqueue_joins_the_callers_postgres_transaction_sync_and_async():
    import psycopg
    from durable_storage_postgres.testing import scratch_schema, test_dsn

    dsn = test_dsn()
    with scratch_schema(dsn) as schema:
        options = {"storage": "postgres", "storage_options": {"dsn": dsn, "schema": schema}}
        with Client(**options) as client, psycopg.connect(dsn) as app:
            kept = client.enqueue("add", {"a": 1, "b": 1}, connection=app)
            app.commit()
            dropped = client.enqueue("add", {"a": 2, "b": 2}, connection=app)
            app.rollback()
            assert client.get(kept).status is S.READY
            with pytest.raises(DurableExecutionNotFoundError):
                client.get(dropped)

        async def in_asyncio():
            async with AsyncClient(**options) as client:
                async with await psycopg.AsyncConnection.connect(dsn) as app:
                    committed = await client.enqueue("add", {"a": 3, "b": 3}, connection=app)
                    await app.commit()
                return await client.get(committed)

        assert asyncio.run(in_asyncio()).status is S.READY
