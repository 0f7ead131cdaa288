"""Runs ``async def`` tests under ``trio.run``; provides the storages the behaviour checks run on."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence
from operator import attrgetter

import pytest
import trio

from durable_core.status import TaskExecutionStatus as S
from durable_core.storage import ExecutionRecord, ExecutorInfo, Lease, LockedStorage, RunCommit, SingleOperationStorage
from durable_core.storage import SleepingWakeup, StatusChange, Storage, transitions
from durable_storage_memory import MemoryStorage


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    kwargs = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    trio.run(functools.partial(pyfuncitem.obj, **kwargs))
    return True


class DictStorage(SingleOperationStorage):
    """A deliberately naive backend on ``SingleOperationStorage``: a dict, every operation awaits
    between reading and writing, and there is no closure or cascade (the checks run on it need
    none). Atomic only inside ``LockedStorage``."""

    def __init__(self) -> None:
        self.records: dict[str, ExecutionRecord] = {}

    async def _read(self, execution_id: str) -> ExecutionRecord | None:
        record = self.records.get(execution_id)
        await trio.lowlevel.checkpoint()
        return record

    async def _find(self, **fields: object) -> ExecutionRecord | None:
        await trio.lowlevel.checkpoint()
        matches = (r for r in self.records.values() if all(getattr(r, k) == v for k, v in fields.items()))
        return next((r.copy() for r in matches), None)

    def _write(self, old: ExecutionRecord, new: ExecutionRecord) -> list[StatusChange]:
        self.records[new.execution_id] = new
        return [StatusChange(new.execution_id, new.task_id, old.status, new.status)]

    async def get_execution(self, execution_id: str) -> ExecutionRecord | None:
        record = await self._read(execution_id)
        return None if record is None else record.copy()

    async def get_execution_by_sleeping_unique_id(self, unique_id: str) -> ExecutionRecord | None:
        return await self._find(sleeping_unique_id=unique_id)

    async def get_execution_by_idempotency_key(self, task_id: str, idempotency_key: str) -> ExecutionRecord | None:
        return await self._find(task_id=task_id, idempotency_key=idempotency_key)

    async def insert_execution(self, record: ExecutionRecord) -> None:
        await trio.lowlevel.checkpoint()
        self.records[record.execution_id] = record.copy()

    async def commit_run(self, commit: RunCommit, now: float) -> list[StatusChange]:
        if await self.is_lease_revoked(commit.record.lease):
            return []
        changes = self._write(self.records[commit.record.execution_id], transitions.commit(commit.record, now))
        for record in commit.new_executions:
            self.records[record.execution_id] = record.copy()
            changes.append(StatusChange(record.execution_id, record.task_id, None, record.status))
        return changes

    async def release_lease(self, lease: Lease, now: float) -> list[StatusChange]:
        if await self.is_lease_revoked(lease):
            return []
        record = self.records[lease.execution_id]
        return self._write(record, transitions.release(record, now))

    async def is_lease_revoked(self, lease: Lease) -> bool:
        return not transitions.lease_holds(await self._read(lease.execution_id), lease)

    async def cancel_execution(self, execution_id: str, now: float) -> list[StatusChange]:
        record = await self._read(execution_id)
        if record is None or not transitions.accepts_cancel(record):
            return []
        return self._write(record, transitions.cancel(record, now))

    async def wake_sleeping_execution(self, wakeup: SleepingWakeup, now: float) -> list[StatusChange]:
        record = await self._read(wakeup.execution_id)
        if record is None or not transitions.accepts_wake(record):
            return []
        return self._write(record, transitions.wake(record, wakeup, now))

    async def retry_execution(self, execution_id: str, now: float) -> list[StatusChange]:
        raise NotImplementedError("not needed by the checks that run on DictStorage")

    async def list_executions(
        self, *, statuses: Sequence[S] | None = None, task_id: str | None = None, executor_id: str | None = None,
        limit: int = 100,
    ) -> list[ExecutionRecord]:
        await trio.lowlevel.checkpoint()
        matches = [
            r.copy()
            for r in reversed(self.records.values())
            if (statuses is None or r.status in statuses) and task_id in (None, r.task_id)
            and executor_id in (None, r.executor_id)
        ]
        return sorted(matches, key=attrgetter("created_at"), reverse=True)[:limit]

    async def claim_executions(
        self, executor_id: str, now: float, limit: int, lease_duration: float
    ) -> list[ExecutionRecord]:
        due = sorted((r for r in self.records.values() if transitions.is_due(r, now)),
                     key=attrgetter("ready_at"))[:limit]
        await trio.lowlevel.checkpoint()
        claimed = []
        for record in due:
            new = self.records[record.execution_id] = transitions.claim(record, executor_id, now, lease_duration)
            claimed.append(new.copy())
        return claimed

    async def renew_leases(
        self, executor: ExecutorInfo, leases: Sequence[Lease], now: float, lease_duration: float
    ) -> list[str]:
        raise NotImplementedError("not needed by the checks that run on DictStorage")

    async def list_executors(self, heartbeat_after: float) -> list[ExecutorInfo]:
        raise NotImplementedError("not needed by the checks that run on DictStorage")

    async def expire_leases(self, now: float, max_lease_expirations: int, limit: int) -> list[StatusChange]:
        raise NotImplementedError("not needed by the checks that run on DictStorage")

    async def delete_finished_executions(self, finished_before: float, limit: int) -> int:
        raise NotImplementedError("not needed by the checks that run on DictStorage")

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


@pytest.fixture
def memory() -> MemoryStorage:
    return MemoryStorage()


@pytest.fixture
def naive() -> DictStorage:
    return DictStorage()


@pytest.fixture(params=["memory", "locked_dict"])
def storage(request: pytest.FixtureRequest) -> Storage:
    """The storages the shared behaviour checks run on: MemoryStorage, and the helpers together."""
    return MemoryStorage() if request.param == "memory" else LockedStorage(DictStorage())
