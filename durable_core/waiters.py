"""Handles waiting for executions to finish, and what wakes them."""

from __future__ import annotations

from collections.abc import Iterator

import trio

from .storage.contract import ExecutionRecord


class Finish:
    """What the handles waiting for one execution wait on: set once it finished, with its
    finished record when the engine has it already (then they need not read it again)."""

    __slots__ = ("event", "record")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.record: ExecutionRecord | None = None


class Waiters:
    """One ``Finish`` per execution some handle waits for, however many handles wait."""

    def __init__(self) -> None:
        self._finishes: dict[str, Finish] = {}

    def __iter__(self) -> Iterator[str]:
        """The ids of the executions waited for."""
        return iter(self._finishes)

    def __contains__(self, execution_id: object) -> bool:
        return execution_id in self._finishes

    def watch(self, execution_id: str) -> Finish:
        """The ``Finish`` of ``execution_id``, made when its first waiter comes."""
        finish = self._finishes.get(execution_id)
        if finish is None:
            finish = self._finishes[execution_id] = Finish()
        return finish

    def forget(self, execution_id: str, finish: Finish) -> None:
        """Stop watching: the waiter found the execution finished on its own."""
        if self._finishes.get(execution_id) is finish:
            del self._finishes[execution_id]

    def finished(self, execution_id: str, record: ExecutionRecord | None) -> None:
        """Wake every waiter of ``execution_id``, handing them ``record`` if it is the stored one."""
        finish = self._finishes.pop(execution_id, None)
        if finish is not None:
            finish.record = record
            finish.event.set()
