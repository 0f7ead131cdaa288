"""Handles: what ``enqueue_task`` returns, a reference to one execution usable from any executor
sharing the storage."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from .models import TaskExecution


class ExecutionAccess(Protocol):
    """What a handle asks of the running executor (``Engine`` implements it)."""

    async def get_execution(self, execution_id: str) -> TaskExecution:
        """The execution as stored now; ``DurableExecutionNotFoundError`` if there is none."""
        ...

    async def wait_until_finished(self, execution_id: str) -> TaskExecution:
        """The execution once it is finished."""
        ...

    async def cancel(self, execution_ids: Sequence[str]) -> None:
        """Cancel the executions and their unfinished descendants."""
        ...


class TaskExecutionHandle:
    """A reference to one execution, usable from any executor sharing the storage."""

    __slots__ = ("_access", "task_id", "execution_id")

    def __init__(self, access: ExecutionAccess, task_id: str, execution_id: str):
        self._access = access
        self.task_id = task_id
        self.execution_id = execution_id

    def __repr__(self) -> str:
        return f"<TaskExecutionHandle {self.task_id} {self.execution_id}>"

    async def get_execution(self) -> TaskExecution:
        """The execution as stored now."""
        return await self._access.get_execution(self.execution_id)

    async def wait_and_get_finished_execution(self) -> TaskExecution:
        """Wait until the execution is finished and return it.

        Wakes at once when this executor finishes it; executions finished elsewhere are noticed
        by the executor's watcher, which reads every awaited execution in one batch per
        ``poll_interval`` (or at once, with a storage that has a change feed). Bound the wait
        with a trio cancel scope.
        """
        return await self._access.wait_until_finished(self.execution_id)

    async def cancel(self) -> None:
        """Cancel the execution and every unfinished descendant; no-op if already finished."""
        await self._access.cancel([self.execution_id])
