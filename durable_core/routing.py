"""Which executions a worker claims: only those of the tasks it defines, in the queues it serves.

A storage with ``Capabilities.routing`` is asked for those tasks alone, from an index, so that
executions of tasks defined elsewhere stay ``ready`` for a worker that knows them and cost this
one nothing. A storage without it (one written for storage API 4) claims any due execution:
what this executor does not define goes straight back to ``ready``, claimable again at once
by a worker that defines it (this one claims it again, to hand it back again, only at its next
claim, after the executions due before it). That is correct, never a "Task not found" failure,
but each such execution costs every other worker claims and writes: backends should implement
routing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from .status import TaskExecutionStatus as S
from .storage.contract import ExecutionRecord, RunCommit

if TYPE_CHECKING:
    from .engine import Engine


class Routes(Protocol):
    """What a worker claims (``TaskDefinitions`` is one)."""

    @property
    def task_ids(self) -> frozenset[str]:
        """The ids of the tasks it defines."""
        ...

    @property
    def queues(self) -> frozenset[str]:
        """The queues it claims from."""
        ...

    @property
    def limits(self) -> Mapping[str, int]:
        """``max_concurrency`` of its tasks that have one, by task id."""
        ...

    @property
    def rates(self) -> Mapping[str, tuple[int, float]]:
        """``rate_limit`` of its tasks that have one, by task id: (count, period in seconds)."""
        ...


async def claim_routed(engine: Engine, routes: Routes, limit: int) -> list[ExecutionRecord]:
    """Claim up to ``limit`` due executions of ``routes`` for ``engine``."""
    storage, options, now = engine.storage, engine.options, engine.now()
    task_ids, queues = routes.task_ids, routes.queues
    if storage.capabilities.routing:
        if routes.rates:  # the executor started only on a storage with rate_limits
            return await storage.claim_executions(engine.executor_id, now, limit, options.lease_duration,
                                                  task_ids=task_ids, queues=queues, limits=routes.limits,
                                                  rates=routes.rates)
        if routes.limits:  # the executor started only on a storage with concurrency_limits
            return await storage.claim_executions(engine.executor_id, now, limit, options.lease_duration,
                                                  task_ids=task_ids, queues=queues, limits=routes.limits)
        return await storage.claim_executions(engine.executor_id, now, limit, options.lease_duration,
                                              task_ids=task_ids, queues=queues)
    claimed = await storage.claim_executions(engine.executor_id, now, limit, options.lease_duration)
    mine = [record for record in claimed if record.task_id in task_ids and record.queue in queues]
    if len(mine) < len(claimed):
        await storage.commit_runs([RunCommit(_handed_back(record, now)) for record in claimed
                                   if record.task_id not in task_ids or record.queue not in queues], now)
    return mine


def _handed_back(claimed: ExecutionRecord, ready_at: float) -> ExecutionRecord:
    """A claimed execution of a task not defined here, as it was before the claim, due at ``ready_at``."""
    if claimed.status is S.RUNNING:  # it was ready: the claim set started_at
        return claimed.copy(status=S.READY, start_at=ready_at, ready_at=ready_at, started_at=None, executor_id=None)
    return claimed.copy(ready_at=ready_at, executor_id=None)  # a waiting parent keeps its status
