"""Coalescing storage calls: what many trio tasks ask for in one scheduling tick goes to the
storage in one batch call.

Why: 10,000 handles waiting at once, or a thousand runs finishing together, would otherwise make
one storage call each — each a checkpoint and, for SQLite, a trip through the connection
thread's queue. Batched, they make a few; every batch operation of the contract handles each
element as if alone, so batching changes no outcome.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import trio

T = TypeVar("T")
R = TypeVar("R")


class _Batch(Generic[T, R]):
    __slots__ = ("items", "done", "results", "error")

    def __init__(self) -> None:
        self.items: list[T] = []
        self.done = trio.Event()
        self.results: list[R] | None = None
        self.error: Exception | None = None

    @property
    def settled(self) -> bool:
        """False if its leader was cancelled during the call: nothing was done."""
        return self.results is not None or self.error is not None

    def result(self, index: int) -> R:
        if self.error is not None:
            raise self.error
        assert self.results is not None
        return self.results[index]


class Coalescer(Generic[T, R]):
    """``await submit(item)`` from many tasks; ``call(items)`` returns one result per item.

    The first task of a tick leads: it yields once so that the others join, then makes the call
    for all of them. If the leader is cancelled before the call completes, the call did nothing
    (storage calls are atomic when cancelled) and each follower submits again on its own.
    """

    def __init__(self, call: Callable[[Sequence[T]], Awaitable[Sequence[R]]], max_batch: int = 500):
        self._call = call
        self._max_batch = max_batch
        self._open: _Batch[T, R] | None = None

    async def submit(self, item: T) -> R:
        while True:
            batch = self._open
            if batch is None or len(batch.items) >= self._max_batch:
                return await self._lead(item)
            index = len(batch.items)
            batch.items.append(item)
            await batch.done.wait()
            if batch.settled:
                return batch.result(index)

    async def _lead(self, item: T) -> R:
        batch: _Batch[T, R] = _Batch()
        self._open = batch
        batch.items.append(item)
        try:
            await trio.lowlevel.cancel_shielded_checkpoint()  # the others of this tick join
            if self._open is batch:  # later comers make a batch of their own
                self._open = None
            batch.results = list(await self._call(batch.items))
        except Exception as exc:
            batch.error = exc
        finally:
            if self._open is batch:  # never leave a finished batch open, whatever was raised
                self._open = None
            batch.done.set()
        return batch.result(0)
