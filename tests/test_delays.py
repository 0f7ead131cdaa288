"""Delays: ``delay=`` seconds or ``at=`` a datetime on an enqueue makes the execution due then, not
before, on every storage and in virtual time; the task's ``sleep_before_run`` follows it, also
for a client's enqueue that the worker completes with the task's defaults."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta, timezone

import pytest
import trio
import trio.testing

from durable_core import DurableExecutor, TaskExecutionStatus
from durable_core.client import AsyncClient, Client
from durable_core.client.operations import ClientOperations, EnqueueOptions
from durable_core.records import deferred_record, with_task_defaults
from durable_core.tasks import MAX_DELAY
from durable_storage_memory import MemoryStorage

S = TaskExecutionStatus
HOUR = 3600


def define(ex: DurableExecutor, ran: list[float]) -> None:
    """``now`` runs at once; ``later`` sleeps 600 s before it runs; both note the time they ran."""

    async def note(ctx, input):
        ran.append(ex.now())

    ex.task(id="now", timeout=5, run=note)
    ex.task(id="later", timeout=5, sleep_before_run=600, run=note)


async def status(shared_storage, execution_id: str) -> S:
    async with shared_storage.open() as storage:
        (record,) = await storage.get_executions([execution_id])
    assert record is not None
    return record.status


@pytest.mark.parametrize("when", ["delay", "at"])
async def test_a_delayed_enqueue_runs_at_its_time_not_before(shared_storage, when):
    """The worker enqueues with a free slot: its claim on insert leaves the delayed one ready."""
    ran: list[float] = []
    worker = shared_storage.executor(**shared_storage.LONG_WAITS)
    define(worker, ran)
    async with worker:
        start, enqueued_at = trio.current_time(), worker.now()
        option = {"delay": HOUR} if when == "delay" else {"at": datetime.fromtimestamp(enqueued_at + HOUR, UTC)}
        handle = await worker.enqueue_task("now", **option)
        assert worker.running_task_executions_count == 0
        await trio.sleep_until(start + HOUR - 1)
        assert (ran, await status(shared_storage, handle.execution_id)) == ([], S.READY)
        await trio.sleep_until(start + HOUR + 1)
        assert await status(shared_storage, handle.execution_id) is S.COMPLETED
    assert ran[0] - enqueued_at >= HOUR - 1e-6  # at: a datetime holds microseconds


async def test_a_client_s_delay_is_followed_by_the_task_s_sleep_before_run(shared_storage):
    """A client without the task's definition enqueues with a delay; the worker applies the
    task's 600 s sleep_before_run after it, not from the enqueue."""
    ran: list[float] = []
    client = shared_storage.executor(max_concurrent_task_executions=0, **shared_storage.LONG_WAITS)
    worker = shared_storage.executor(**shared_storage.LONG_WAITS)
    define(worker, ran)
    async with client, worker:
        start, enqueued_at = trio.current_time(), client.now()
        (execution_id,) = await ClientOperations(client, on_caller_thread=False).enqueue(
            "later", [None], EnqueueOptions(delay=HOUR))
        await trio.sleep_until(start + HOUR + 599)
        assert (ran, await status(shared_storage, execution_id)) == ([], S.READY)
        await trio.sleep_until(start + HOUR + 601)
        assert await status(shared_storage, execution_id) is S.COMPLETED
    assert ran[0] - enqueued_at >= HOUR + 600


async def test_an_idle_executor_never_claims_a_delayed_enqueue_on_insert():
    """Claim on insert takes what is due now, not what is due later; run it at its time."""
    storage = MemoryStorage()
    ran: list[float] = []
    ex = DurableExecutor(storage, poll_interval=3600)
    define(ex, ran)
    async with ex:
        await trio.testing.wait_all_tasks_blocked()  # the claimer found nothing: it has caught up
        delayed = await ex.enqueue_task("now", delay=60)
        due = await ex.enqueue_task("now")
        stored = await storage.get_executions([delayed.execution_id, due.execution_id])
        assert [(r.status, r.executor_id) for r in stored if r] == [(S.READY, None), (S.RUNNING, ex.executor_id)]
        assert (await delayed.wait_and_get_finished_execution()).status is S.COMPLETED
    assert ran[1] - ran[0] == pytest.approx(60, abs=1)


def test_a_deferred_sleep_counts_from_the_delay_even_if_start_at_moved():
    """A lease lost or handed back before the worker applied the task's defaults resets
    ``start_at`` to that moment; the task's sleep still follows the enqueue's delay."""
    ex = DurableExecutor(MemoryStorage())
    define(ex, [])
    record = deferred_record("later", None, 1000.0, ex.codec, delay=HOUR)
    assert (record.start_at, record.ready_at) == (1000.0 + HOUR, 1000.0 + HOUR)
    moved = record.copy(start_at=1000.0 + 2 * HOUR, ready_at=1000.0 + 2 * HOUR)
    assert with_task_defaults(moved, ex.get_task("later")).start_at == 1000.0 + HOUR + 600
    given = deferred_record("later", None, 1000.0, ex.codec, delay=HOUR, sleep_before_run=5)
    assert with_task_defaults(given, ex.get_task("later")).start_at == 1000.0 + HOUR + 5


async def test_enqueue_tasks_delays_them_all_and_a_past_at_is_now():
    ran: list[float] = []
    ex = DurableExecutor(MemoryStorage())
    define(ex, ran)
    async with ex:
        now = ex.now()
        handles = await ex.enqueue_tasks("now", [1, 2], delay=60.5)
        past = await ex.enqueue_task("later", at=datetime(2000, 1, 1, tzinfo=timezone(timedelta(hours=2))))
        executions = [await handle.get_execution() for handle in handles]
        assert [e.start_at.timestamp() - now for e in executions] == pytest.approx([60.5, 60.5])
        assert (await past.get_execution()).start_at.timestamp() - now == pytest.approx(600)  # its sleep only
        for handle in [*handles, past]:
            assert (await handle.wait_and_get_finished_execution()).status is S.COMPLETED


@pytest.mark.parametrize(("options", "message"), [
    ({"delay": -1}, r"Invalid delay for task now: a number of seconds from 0 to 315,576,000 \(10 years\) .* got -1"),
    ({"delay": MAX_DELAY + 1}, r"Invalid delay for task now: .* got 315576001"),
    ({"delay": math.nan}, r"Invalid delay for task now: .* got nan"),
    ({"delay": "60"}, r"Invalid delay for task now: .* got '60'"),
    ({"delay": True}, r"Invalid delay for task now: .* got True"),
    ({"at": datetime(2030, 1, 1)}, r"Invalid at for task now: 2030-01-01T00:00:00 has no time zone; give it one"),
    ({"at": "2030-01-01T00:00:00Z"}, r"Invalid at for task now: a timezone-aware datetime is expected"),
    ({"at": datetime(2999, 1, 1, tzinfo=UTC)}, r"Invalid at for task now: at most 10 years from now"),
    ({"delay": 1, "at": datetime(2030, 1, 1, tzinfo=UTC)}, r"Invalid enqueue of task now: give delay .* or at .*, not both"),
])
async def test_a_bad_delay_is_refused_naming_the_field(options, message):
    storage = MemoryStorage()
    ex = DurableExecutor(storage)
    define(ex, [])
    async with ex:
        with pytest.raises(ValueError, match=message):
            await ex.enqueue_task("now", **options)
        with pytest.raises(ValueError, match=message):
            await ex.enqueue_tasks("now", [1], **options)
    with pytest.raises(ValueError, match=message.replace("task now", "an enqueue")):
        EnqueueOptions(**options)
    assert await storage.list_executions() == []


async def test_a_sleeping_task_cannot_be_delayed():
    ex = DurableExecutor(MemoryStorage())
    ex.sleeping_task(id="webhook", timeout=60)
    async with ex:
        with pytest.raises(Exception, match="Invalid enqueue of sleeping task webhook: .* delay and at do not apply"):
            await ex.enqueue_task("webhook", "id-1", delay=10)


def test_the_clients_enqueue_with_a_delay_and_refuse_a_naive_at_before_anything_is_sent():
    in_an_hour = datetime.now(UTC) + timedelta(hours=1)
    with Client(storage=MemoryStorage()) as client:
        with pytest.raises(ValueError, match="Invalid at for an enqueue: .* has no time zone"):
            client.enqueue("t", at=in_an_hour.replace(tzinfo=None))
        one = client.get(client.enqueue("t", delay=90))
        many = [client.get(i) for i in client.enqueue_many("t", [1, 2], at=in_an_hour)]
        assert client.list() and len(client.list()) == 3
    assert (one.start_at - one.created_at).total_seconds() == pytest.approx(90)
    assert [e.start_at for e in many] == [in_an_hour, in_an_hour]

    async def in_asyncio():
        async with AsyncClient(storage=MemoryStorage()) as client:
            with pytest.raises(ValueError, match="Invalid delay for an enqueue"):
                await client.enqueue("t", delay=-5)
            one = await client.get(await client.enqueue("t", delay=90))
            many = [await client.get(i) for i in await client.enqueue_many("t", [1, 2], at=in_an_hour)]
            return one, many

    one, many = asyncio.run(in_asyncio())
    assert (one.start_at - one.created_at).total_seconds() == pytest.approx(90)
    assert [e.start_at for e in many] == [in_an_hour, in_an_hour]
