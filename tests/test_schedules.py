"""Periodic schedules (``executor.schedule``): each tick enqueued exactly once however many workers
run, a missed tick run once after downtime, and bad definitions refused naming the field; in
virtual time."""

from __future__ import annotations

import time
from typing import Any

import pytest
import trio
from click.testing import CliRunner

from durable_core import DurableExecutor, DurableExecutionNotFoundError, TaskExecutionStatus
from durable_core.cli import cli
from durable_core.plugins.manager import PluginRegistry
from durable_storage_memory import MemoryStorage

S = TaskExecutionStatus
MINUTE = 60.0


def worker(make: Any, cron: str = "*/5 * * * *", **schedule: Any) -> DurableExecutor:
    ex: DurableExecutor = make(poll_interval=300, lease_duration=600, heartbeat_interval=200)

    @ex.task(id="report", timeout=5)
    async def report(ctx, input):
        return input

    ex.schedule("report", cron=cron, input={"kind": "daily"}, **schedule)
    return ex


async def reports(storage) -> list[Any]:
    return sorted((r for r in await storage.list_executions(task_id="report")), key=lambda r: r.idempotency_key)


async def test_each_tick_is_enqueued_once_however_many_workers_run(shared_storage, wall_phase):
    await wall_phase(5 * MINUTE, 150)  # started half-way between two ticks
    workers = [worker(shared_storage.executor) for _ in range(2)]
    async with workers[0], workers[1], shared_storage.open() as storage:
        start = workers[0].now()
        await trio.sleep(30 * MINUTE + 1)
        schedule = workers[0].schedules["report"]
        expected, tick = [], schedule.last_tick(start)
        while tick is not None and tick <= workers[0].now():
            expected.append(schedule.idempotency_key(tick))
            tick = schedule.next_tick(tick)
        stored = await reports(storage)
    assert len(expected) == 7  # the tick before the start (caught up), then one every 5 minutes
    assert [r.idempotency_key for r in stored] == expected
    assert {r.status for r in stored} == {S.COMPLETED}
    assert workers[0].decode(stored[0].input) == {"kind": "daily"}


@pytest.mark.parametrize(("catch_up", "after_restart"), [("latest", 1), ("none", 0)])
async def test_ticks_missed_during_downtime_run_once_unless_catch_up_is_none(catch_up, after_restart, wall_phase):
    await wall_phase(5 * MINUTE, 150)  # no tick falls in the second after the restart
    storage = MemoryStorage()
    async with worker(lambda **o: DurableExecutor(storage, **o), catch_up=catch_up):
        await trio.sleep(10 * MINUTE)
    before = len(await reports(storage))
    await trio.sleep(2 * 3600 + MINUTE)  # no worker for 2 hours: 24 ticks missed
    async with worker(lambda **o: DurableExecutor(storage, **o), catch_up=catch_up):
        await trio.sleep(1)
        assert len(await reports(storage)) == before + after_restart
        await trio.sleep(5 * MINUTE)
        assert len(await reports(storage)) == before + after_restart + 1  # the next tick, as usual


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(cron="61 * * * *"), r"Invalid schedule 'report': cron '61 \* \* \* \*' is not a valid cron expression"),
    (dict(cron="* * *"), r"Invalid schedule 'report': cron '\* \* \*' is not a valid cron expression"),
    (dict(cron=5), r"Invalid schedule 'report': cron must be a cron expression"),
    (dict(cron="* * * * *", timezone="Mars/Olympus"), r"Invalid schedule 'report': timezone 'Mars/Olympus' is not a known time zone"),
    (dict(cron="* * * * *", catch_up="all"), r"Invalid schedule 'report': catch_up must be one of 'latest', 'none'"),
    (dict(cron="* * * * *", id="no spaces"), r"Invalid schedule 'no spaces': id must be"),
    (dict(cron="* * * * *", input=object()), r"Cannot serialize input of task report"),
])
def test_an_invalid_schedule_is_refused_at_definition_naming_the_field(kwargs, message):
    ex = DurableExecutor(MemoryStorage())
    ex.task(id="report", timeout=5, run=lambda ctx, input: input)
    with pytest.raises(Exception, match=message):
        ex.schedule("report", **kwargs)


def test_a_second_schedule_of_a_task_needs_its_own_id():
    ex = DurableExecutor(MemoryStorage())
    report = ex.task(id="report", timeout=5, run=lambda ctx, input: input)
    ex.schedule(report, cron="0 * * * *")
    with pytest.raises(ValueError, match="a schedule with this id exists; give this one an id="):
        ex.schedule(report, cron="30 * * * *")
    assert ex.schedule(report, cron="30 * * * *", id="half_past").task_id == "report"
    with pytest.raises(DurableExecutionNotFoundError):
        DurableExecutor(MemoryStorage()).schedule(report, cron="0 * * * *")  # defined on another executor


async def test_a_schedule_of_a_task_the_executor_does_not_define_stops_its_start():
    ex = DurableExecutor(MemoryStorage())
    ex.schedule("missing", cron="0 * * * *")
    with pytest.raises(ValueError, match="Invalid schedule 'missing': task 'missing' is not defined on this executor"):
        async with ex:
            pass


@pytest.mark.parametrize(("entry", "message"), [
    ('task = "report"\ncron = "61 * * * *"', "durable.toml: schedules[0]: Invalid schedule 'report': cron '61 * * * *' is not"),
    ('task = "report"\ncron = "0 3 * * *"\ntimezone = "Mars/X"', "durable.toml: schedules[0]: Invalid schedule 'report': timezone 'Mars/X'"),
    ('task = "report"', "durable.toml: schedules[0].cron is missing; each schedule names its task and cron"),
    ('task = "report"\ncorn = "0 3 * * *"', "durable.toml: unknown key 'schedules[0].corn'; did you mean 'cron'?"),
])
def test_schedules_in_durable_toml_are_checked_naming_the_entry(tmp_path, monkeypatch, entry, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "durable.toml").write_text(f"[[schedules]]\n{entry}\n")
    with pytest.raises(ValueError) as caught:
        DurableExecutor.from_config(storage="memory")
    assert str(caught.value).startswith(message)


async def test_schedules_in_durable_toml_are_defined_on_the_executor(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "durable.toml").write_text(
        '[[schedules]]\ntask = "report"\ncron = "0 3 * * *"\ntimezone = "Europe/Paris"\ninput = {kind = "nightly"}\n'
        'catch_up = "none"\n')
    monkeypatch.setenv("DURABLE_DISABLE_PLUGINS", "prometheus")  # its polls would make a virtual day last long
    ex = DurableExecutor.from_config(storage="memory", poll_interval=300, lease_duration=600, heartbeat_interval=200,
                                     plugins=PluginRegistry.load())

    @ex.task(id="report", timeout=5)
    async def report(ctx, input):
        return input

    (schedule,) = ex.schedules.values()
    assert (schedule.id, schedule.cron, schedule.timezone, schedule.input) == (
        "report", "0 3 * * *", "Europe/Paris", {"kind": "nightly"})
    async with ex:
        await trio.sleep(24 * 3600)
        (stored,) = await ex.storage.list_executions(task_id="report")
    assert stored.status is S.COMPLETED and stored.idempotency_key.endswith(("T02:00:00Z", "T01:00:00Z"))  # 3:00 in Paris


async def test_a_pause_holds_for_every_worker_and_across_restarts_until_resumed():
    storage = MemoryStorage()

    def make(**options: Any) -> DurableExecutor:
        return DurableExecutor(storage, **options)

    async with worker(make, catch_up="none") as first, worker(make, catch_up="none") as second:
        assert await first.pause_schedule("report") is True
        assert await second.pause_schedule("report") is False  # already paused, whoever paused it
        await trio.sleep(20 * MINUTE)
        assert await reports(storage) == []
    async with worker(make) as restarted:  # catch_up="latest": the paused ticks are not caught up either
        await trio.sleep(10 * MINUTE)
        assert await reports(storage) == []
        assert list(await restarted.paused_schedules()) == ["report"]
        assert await restarted.resume_schedule("report") is True
        assert await restarted.resume_schedule("report") is False
        await trio.sleep(5 * MINUTE)
        assert len(await reports(storage)) == 1  # from the next tick on
        assert await restarted.paused_schedules() == {}


def test_durable_schedules_list_pause_resume(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "durable.toml").write_text(
        '[storage.options]\npath = "jobs.db"\n\n[[schedules]]\ntask = "report"\ncron = "0 3 * * *"\n')
    runner = CliRunner()
    listed = runner.invoke(cli, ["schedules", "list"])
    assert listed.exit_code == 0 and "report    report  0 3 * * *  UTC" in listed.output
    assert listed.output.rstrip().endswith("active")
    assert runner.invoke(cli, ["schedules", "pause", "report"]).output.startswith("paused schedule report")
    again = runner.invoke(cli, ["schedules", "pause", "report"])
    assert again.exit_code != 0 and "schedule 'report' is paused already; resume it with" in str(again.exception)
    assert "paused since" in runner.invoke(cli, ["schedules", "list"]).output  # another process sees it
    assert runner.invoke(cli, ["schedules", "resume", "report"]).output == "resumed schedule report\n"
    assert runner.invoke(cli, ["schedules", "list"]).output.rstrip().endswith("active")
    assert runner.invoke(cli, ["schedules", "pause", "not an id"]).exit_code == 2


async def test_a_tick_older_than_retention_is_not_caught_up_as_its_execution_may_be_deleted(monkeypatch):
    monkeypatch.setenv("DURABLE_DISABLE_PLUGINS", "prometheus")  # its storage polls would make hours last long
    storage, plugins = MemoryStorage(), PluginRegistry.load()
    coming_hour = time.gmtime(time.time() + 3600).tm_hour  # virtual time starts at the wall's time

    def daily() -> DurableExecutor:
        return worker(lambda **o: DurableExecutor(storage, retention_finished_after="1h", plugins=plugins, **o),
                      cron=f"0 {coming_hour} * * *")

    async with daily():
        await trio.sleep(3 * 3600)
        assert await reports(storage) == []  # the tick ran, and retention deleted it an hour later
    async with daily():
        await trio.sleep(MINUTE)
        assert await reports(storage) == []  # not run a second time by the catch-up
