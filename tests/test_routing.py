"""Routing: named queues (a task's, an enqueue's override, workers serving some only), and a
storage without ``Capabilities.routing`` (one written for storage API 4), where a worker hands back
at once what it does not serve, never failing it. Storages with routing are checked by the
conformance suite (``test_scenario_a_worker_runs_only_the_tasks_it_defines``)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio

from durable_core import DurableExecutionError, DurableExecutor, TaskExecutionStatus
from durable_core.storage import Capabilities, ExecutionRecord, RunCommit, StatusChange
from durable_storage_memory import MemoryStorage

S = TaskExecutionStatus


class Api4Storage(MemoryStorage):
    """The memory storage as a backend written for storage API 4 sees it: claims take no task ids."""

    storage_api = 4
    capabilities = Capabilities()

    def __init__(self) -> None:
        super().__init__()
        self.claimed: list[str] = []
        self.handed_back: list[str] = []

    async def claim_executions(  # type: ignore[override]  # API 4: no task_ids
        self, executor_id: str, now: float, limit: int, lease_duration: float
    ) -> list[ExecutionRecord]:
        claimed = await super().claim_executions(executor_id, now, limit, lease_duration)
        self.claimed += [r.task_id for r in claimed]
        return claimed

    async def commit_runs(self, commits: Sequence[RunCommit], now: float) -> list[StatusChange]:
        self.handed_back += [c.record.task_id for c in commits if c.record.status is S.READY]
        return await super().commit_runs(commits, now)


async def test_without_routing_a_worker_hands_back_what_it_does_not_define():
    storage = Api4Storage()
    mailer = DurableExecutor(storage, poll_interval=1.0)
    client, reporter = DurableExecutor(storage, max_concurrent_task_executions=0), DurableExecutor(storage)

    @mailer.task(id="send_mail", timeout=5)
    async def send_mail(ctx, input):
        return input

    async def report(ctx, input):
        return f"report {input}"

    client.task(id="report", timeout=5, run=report)
    report_task = reporter.task(id="report", timeout=5, run=report)
    async with mailer:
        async with client:
            waiting = [await client.enqueue_task("report", i) for i in range(3)]
        sent = await (await mailer.enqueue_task(send_mail, 7)).wait_and_get_finished_execution()
        await trio.sleep(3.5)
        stored = await storage.get_executions([h.execution_id for h in waiting])
        assert all(r is not None and r.status is S.READY and r.started_at is None and r.error is None
                   and r.retry_attempts == 0 and r.executor_id is None for r in stored), stored
        assert storage.handed_back.count("report") >= 3  # claimed, and handed back to ready
    async with reporter:  # (after the mailer: in virtual time a later executor's clock lags behind)
        done = [await (await reporter.get_task_execution_handle(report_task, h.execution_id))
                .wait_and_get_finished_execution() for h in waiting]
    assert sent.output == 7
    assert [(e.status, e.output) for e in done] == [(S.COMPLETED, f"report {i}") for i in range(3)]


def define(ex: DurableExecutor) -> None:
    @ex.task(id="send_mail", timeout=5, queue="emails")
    async def send_mail(ctx, input):
        return f"mail {input}"

    @ex.task(id="resize", timeout=5)
    async def resize(ctx, input):
        return f"resized {input}"


async def test_a_worker_serves_its_queues_only_and_an_enqueue_may_name_another():
    storage = MemoryStorage()
    client, mailer, other = (DurableExecutor(storage, max_concurrent_task_executions=0), DurableExecutor(storage),
                             DurableExecutor(storage))
    for ex in (client, mailer, other):
        define(ex)
    assert mailer.queues == {"emails", "default"}
    mailer.serve_queues(["emails"])
    other.serve_queues(["default", "bulk"])
    async with client:
        mail = await client.enqueue_task("send_mail", 1)
        bulk_mail = await client.enqueue_task("send_mail", 2, queue="bulk")
        image = await client.enqueue_task("resize", 3)
    async with mailer:
        mailed = await (await mailer.get_task_execution_handle("send_mail", mail.execution_id)
                        ).wait_and_get_finished_execution()
        assert mailed.output == "mail 1"
        await trio.sleep(5)
    stored = await storage.get_executions([bulk_mail.execution_id, image.execution_id])
    assert [(r.queue, r.status, r.lease_token) for r in stored if r] == [("bulk", S.READY, 0), ("default", S.READY, 0)]
    async with other:
        outputs = [(await (await other.get_task_execution_handle(h.task_id, h.execution_id))
                    .wait_and_get_finished_execution()).output for h in (bulk_mail, image)]
    assert outputs == ["mail 2", "resized 3"]
    assert [r.execution_id for r in await storage.list_executions(queue="bulk")] == [bulk_mail.execution_id]


def test_a_bad_queue_is_refused_at_definition_naming_the_field():
    ex = DurableExecutor(MemoryStorage())
    with pytest.raises(ValueError, match=r"Invalid queue for task t: .* got 'no spaces'"):
        ex.task(id="t", timeout=1, queue="no spaces", run=lambda ctx, input: None)
    with pytest.raises(ValueError, match=r"Invalid queue for the worker: .* got ''"):
        ex.serve_queues([""])


async def test_a_storage_without_queues_refuses_an_enqueue_on_another_queue():
    ex = DurableExecutor(Api4Storage())
    define(ex)
    async with ex:
        assert (await (await ex.enqueue_task("resize", 1)).wait_and_get_finished_execution()).output == "resized 1"
        with pytest.raises(DurableExecutionError, match="storage API 4, which stores no queues"):
            await ex.enqueue_task("resize", 1, queue="bulk")
