"""``DurableTestKit``: what the ``durable`` pytest fixture gives a user's tests (docs/testing.md).

A fresh storage per test (memory by default; SQLite, PostgreSQL or any installed storage by a
pytest option), executors on it that run an application's tasks, a virtual clock, and helpers
that run the engine until nothing is left to do or until one execution finishes.
"""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from ..client import AsyncClient, Client
from ..executor import DurableExecutor
from ..models import TaskExecution
from ..status import ACTIVE_TASK_EXECUTION_STATUSES
from ..storage.contract import ExecutionRecord, Storage
from ..tasks import Task

TEST_OPTIONS: dict[str, Any] = {"poll_interval": 5.0, "heartbeat_interval": 20.0, "lease_duration": 60.0}
"""Executor options for tests: hours of virtual time cost few storage round trips (each poll is
one on a real storage), and the engine wakes on its own changes at once anyway."""

MAX_ACTIVE_CHECKED = 10_000


class DurableTestKit:
    """One test's storage and clock, and the helpers that drive executors on them."""

    def __init__(self, storage: Storage | str, storage_options: dict[str, Any] | None,
                 clock: trio.testing.MockClock):
        self.storage = storage
        """The storage executors of this test use: an object (memory), or a plugin's name."""
        self.storage_options = dict(storage_options or {})
        self.clock = clock
        """The test's virtual clock (``MockClock(autojump_threshold=0)``)."""

    def executor(self, tasks_from: DurableExecutor | None = None, **options: Any) -> DurableExecutor:
        """A new executor on the test's storage, defining the tasks of ``tasks_from`` (your
        application's executor) if given; ``options`` win over ``TEST_OPTIONS``."""
        storage_options = self.storage_options if isinstance(self.storage, str) else None
        executor = DurableExecutor(self.storage, storage_options=storage_options, **(TEST_OPTIONS | options))
        if tasks_from is not None:
            executor.include(tasks_from)
        return executor

    def client(self, executor: DurableExecutor) -> Client:
        """A ``Client`` that runs ``executor`` on the test's virtual clock, for sync tests: time
        moves only while a call (say ``wait``) is in flight. Use ``with``."""
        return Client(executor=executor, clock=self.clock)

    def async_client(self, executor: DurableExecutor) -> AsyncClient:
        """The ``AsyncClient`` twin of ``client``, for asyncio tests. Use ``async with``."""
        return AsyncClient(executor=executor, clock=self.clock)

    async def run_task(self, executor: DurableExecutor, task: Task | str, input: Any = None,
                       **enqueue_options: Any) -> TaskExecution:
        """Enqueue ``task`` on the running ``executor`` and return the execution once finished."""
        handle = await executor.enqueue_task(task, input, **enqueue_options)
        return await handle.wait_and_get_finished_execution()

    async def run_until_idle(self, executor: DurableExecutor) -> None:
        """Run the running ``executor`` until nothing is left to do: every execution in the
        storage is finished, or waits to be woken (a sleeping task) or for one that does. Virtual
        time jumps over backoffs, delays and sleeps meanwhile."""
        engine = executor.engine
        while True:
            engine.changed.clear()
            active = await engine.storage.list_executions(statuses=sorted(ACTIVE_TASK_EXECUTION_STATUSES),
                                                          limit=MAX_ACTIVE_CHECKED)
            if not any(_has_work(record) for record in active):
                return
            with trio.move_on_after(executor.options.poll_interval):  # others' changes: at the next poll
                await engine.changed.wait()


def _has_work(record: ExecutionRecord) -> bool:
    """Whether an active execution will move without help from outside: it is due (or will be),
    or it runs; not a sleeping task, nor a parent waiting for children that are not done."""
    return record.ready_at is not None or (record.lease_expires_at is not None and not record.is_sleeping)
