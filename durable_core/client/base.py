"""What ``Client`` and ``AsyncClient`` share: opening, and each operation's arguments checked in
the caller's thread (a bad argument raises there, before anything is sent to the trio run)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Self, TypeVar

from ..executor import DurableExecutor
from ..models import TaskExecution
from ..serialization import Serializer
from ..storage.contract import Storage
from ..tasks import check_task_id
from .operations import (
    ClientOperations,
    EnqueueOptions,
    check_inputs,
    check_limit,
    check_statuses,
    check_wait_timeout,
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Operation(Generic[T]):
    """A trio-side call and its checked arguments, ready for the portal."""

    fn: Callable[..., Awaitable[T]]
    args: tuple[Any, ...]


def client_executor(storage: Storage | str | None, storage_options: dict[str, Any] | None,
                    serializer: Serializer | str | None, executor_options: dict[str, Any]) -> DurableExecutor:
    """The executor a standalone client runs: it runs no task; it watches the storage for the
    executions the client waits for."""
    return DurableExecutor(storage, storage_options=storage_options, serializer=serializer,
                           **executor_options, max_concurrent_task_executions=0)


def config_executor(path: str | None) -> DurableExecutor:
    """The client executor ``durable.toml`` (or ``path``) configures; see ``client_executor``."""
    return DurableExecutor.from_config(path, max_concurrent_task_executions=0)


class ClientBase:
    """Holds the executor the client works through and prepares each operation."""

    def __init__(self, executor: DurableExecutor, *, on_caller_thread: bool = True):
        self._operations = ClientOperations(executor, on_caller_thread=on_caller_thread)

    @classmethod
    def from_config(cls, path: str | None = None) -> Self:
        """A client of the storage ``durable.toml`` (or ``path``) configures."""
        return cls(executor=config_executor(path))

    @property
    def executor(self) -> DurableExecutor:
        """The executor this client works through (its own, or the one it was attached to)."""
        return self._operations.executor

    def _enqueue(self, task_id: str, inputs: object, **options: Any) -> Operation[list[str]]:
        """The enqueue of ``inputs``, its ``options`` (those of ``EnqueueOptions``) checked here, on the caller's side."""
        checked = EnqueueOptions(**options, context=self.executor.plugins.execution_context())
        return Operation(self._operations.enqueue, (check_task_id(task_id), check_inputs(inputs), checked))

    def _get(self, execution_id: str) -> Operation[TaskExecution]:
        return Operation(self._operations.get, (_check_id(execution_id),))

    def _wait(self, execution_id: str, timeout: float | None) -> Operation[TaskExecution]:
        return Operation(self._operations.wait, (_check_id(execution_id), check_wait_timeout(timeout)))

    def _cancel(self, execution_id: str) -> Operation[None]:
        return Operation(self._operations.cancel, (_check_id(execution_id),))

    def _wakeup(self, task_id: str, unique_id: str, output: Any, error: str | None) -> Operation[TaskExecution]:
        return Operation(self._operations.wakeup, (check_task_id(task_id), unique_id, output, error))

    def _list(self, status: object, task_id: str | None, limit: int) -> Operation[list[TaskExecution]]:
        return Operation(self._operations.list_executions, (check_statuses(status), task_id, check_limit(limit)))


def _check_id(execution_id: object) -> str:
    if not isinstance(execution_id, str) or not execution_id:
        raise TypeError(f"execution_id must be a non-empty string, got {execution_id!r}")
    return execution_id
