"""Options, connection errors, the change feed and group commit of the postgres storage."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading

import psycopg
import pytest
import trio

from durable_conformance.records import claim, new
from durable_core import DurableExecutor, open_storage
from durable_core.storage.contract import StorageError
from durable_storage_postgres import PostgresStorage


@pytest.mark.parametrize(("options", "message"), [
    ({}, "needs the option dsn"),
    ({"dsn": 5}, r"needs the option dsn.*\(got 5\)"),
    ({"dsn": "garbage"}, "Invalid postgres storage option dsn: missing \"=\" after \"garbage\""),
    ({"schema": "Bad-Name"}, "option schema='Bad-Name': expected a lowercase identifier"),
    ({"pool_size": 0}, "option pool_size=0: expected an integer >= 1"),
    ({"max_batch_size": 1.5}, "option max_batch_size=1.5: expected an integer"),
    ({"connect_timeout": 0}, "option connect_timeout=0: expected a number >= 1"),
    ({"notify": "yes"}, "option notify='yes': expected true or false"),
    ({"max_retries": -1}, "option max_retries=-1: expected an integer >= 0"),
])
async def test_invalid_options_raise_one_error_naming_the_option(dsn, options, message):
    options = {"dsn": dsn, **options} if "dsn" not in options and options else options
    with pytest.raises(StorageError, match=message) as raised:
        await PostgresStorage.open(**options)
    assert not raised.value.is_retryable


async def test_an_unknown_option_is_named():
    with pytest.raises(StorageError, match="Invalid options for storage 'postgres'.*colour"):
        async with open_storage("postgres", dsn="host=localhost", colour="blue"):
            pass


async def test_an_unreachable_server_is_one_clear_error_without_the_password():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    with pytest.raises(StorageError) as raised:
        await PostgresStorage.open(f"postgresql://durable:secret@127.0.0.1:{port}/app", connect_timeout=2)
    message = raised.value.message
    assert message.startswith(f"Cannot connect to PostgreSQL at 127.0.0.1:{port}/app:")
    assert "Check the storage option dsn" in message and "secret" not in message


async def test_a_missing_database_is_named(dsn):
    base = dsn.rsplit("/", 1)[0]
    with pytest.raises(StorageError, match='Cannot connect to PostgreSQL at .*/no_such_db: .*"no_such_db" does not exist'):
        await PostgresStorage.open(f"{base}/no_such_db")


async def test_many_calls_in_flight_are_committed_together(postgres):
    async with postgres(pool_size=2) as storage:
        async with trio.open_nursery() as nursery:
            for i in range(300):
                nursery.start_soon(storage.insert_executions, [new(f"te_{i}")])
        assert len(await claim(storage, 1.0, limit=1000)) == 300


async def test_a_failing_call_fails_alone_in_its_batch(postgres):
    from durable_conformance.records import sleeping
    from durable_core.storage.contract import DuplicateSleepingTaskUniqueIdError

    async with postgres() as storage:
        await storage.insert_executions([sleeping("te_s", "u")])
        results: dict[int, object] = {}

        async def insert(i: int) -> None:
            try:
                results[i] = await storage.insert_executions([sleeping(f"te_{i}", "u" if i == 5 else f"u{i}")])
            except DuplicateSleepingTaskUniqueIdError as exc:
                results[i] = exc

        async with trio.open_nursery() as nursery:
            for i in range(10):
                nursery.start_soon(insert, i)
        assert isinstance(results.pop(5), DuplicateSleepingTaskUniqueIdError)
        assert sorted(results) == [0, 1, 2, 3, 4, 6, 7, 8, 9]
        assert (await storage.get_executions(["te_5"])) == [None]


async def test_a_cancelled_call_did_nothing_or_everything(postgres):
    async with postgres() as storage:
        await storage.insert_executions([new(f"te_{i}") for i in range(50)])
        claimed_by_cancelled: list[str] = []
        for _ in range(20):
            with trio.move_on_after(0.0005):
                records = await storage.claim_executions("de_x", 1.0, 5, 10.0)
                claimed_by_cancelled += [r.execution_id for r in records]
        left = await claim(storage, 1.0, limit=100)
        running = await storage.list_executions(limit=100)
        # every record is either still claimable or claimed by a call that returned
        assert len(left) + len(claimed_by_cancelled) == 50
        assert len(running) == 50


async def test_a_call_stuck_on_a_lock_is_abandoned_when_its_caller_is_cancelled(postgres, dsn, schema):
    """Shutting down while another process holds a lock: the server is asked to abandon the
    transaction (cancel_safe), the caller sees Cancelled at once, and nothing was applied."""
    async with postgres() as storage:
        with psycopg.connect(dsn) as locker:
            locker.execute(f"LOCK TABLE {schema}.executions IN ACCESS EXCLUSIVE MODE")
            release = threading.Timer(15, locker.rollback)  # were the call not abandoned: no hang
            release.start()
            started = trio.current_time()
            with trio.move_on_after(0.5) as waiting:
                await storage.insert_executions([new("te_1")])
            release.cancel()
            assert waiting.cancelled_caught and trio.current_time() - started < 5
            locker.rollback()
        assert await storage.get_executions(["te_1"]) == [None]
        await storage.insert_executions([new("te_2")])  # the storage works on
        assert [r.execution_id for r in await storage.list_executions()] == ["te_2"]


async def test_the_change_feed_wakes_an_idle_executor_at_once(postgres):
    """A task enqueued through another storage object (another process, in production) starts
    long before the executor's next poll."""
    async with postgres() as worker_storage, postgres() as client_storage:
        worker = DurableExecutor(worker_storage, poll_interval=30.0)
        started = trio.Event()

        @worker.task(id="noop", timeout=10)
        async def noop(ctx, input):
            started.set()

        client = DurableExecutor(client_storage, max_concurrent_task_executions=0, poll_interval=30.0)
        client.task(id="noop", timeout=10, run=lambda ctx, input: None)
        async with worker, client:
            await trio.sleep(0.2)  # both idle: the worker polled once and sleeps for 30 s
            with trio.fail_after(5):
                handle = await client.enqueue_task("noop", None)
                await started.wait()
                finished = await handle.wait_and_get_finished_execution()
            assert finished.status == "completed"


def test_loading_the_plugin_does_not_import_psycopg():
    """Every durable process loads every plugin; only one that opens a postgres storage pays for
    psycopg (~120 ms, ~11 MB)."""
    script = ("import sys, inspect; from durable_core.plugins.manager import default_registry; "
              "factory = default_registry().storage_factory('postgres'); assert 'psycopg' not in sys.modules; "
              "assert 'dsn' in inspect.signature(factory).parameters; assert 'psycopg' in sys.modules")
    subprocess.run([sys.executable, "-c", script], check=True)
