"""Riding out storage faults: the one rule for every storage call an executor makes on its own.

Why: a database restarts, a connection is killed, another process holds SQLite's write lock, the
disk fills up. None of that should end a worker: such a fault is *transient* (a ``StorageError``
with ``is_retryable``), and the call is made again after a capped exponential backoff with jitter
until it succeeds — or, for a call that is only worth making while a lease holds, until the lease
is gone. A *permanent* fault (a newer schema, a refused login, a database file deleted or
replaced, a damaged file) cannot heal by waiting: it is noted once, and the runner stops the
executor, handing back what it can.

An operator sees one line when the storage becomes unavailable ("storage unavailable: retrying
in N s; claiming executions failed: …") and one when it is back ("storage back after N s"), however many calls failed
and were retried in between.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

from .storage.contract import StorageError

log = logging.getLogger("durable.executor")

T = TypeVar("T")

FIRST_DELAY = 0.1
"""Seconds before the first retry of a failed call."""
MAX_DELAY = 5.0
"""Seconds between two retries, at most: a storage that returns is used again this soon."""


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a storage fault that may heal by itself (see the module doc)."""
    return isinstance(exc, StorageError) and exc.is_retryable


def is_permanent(exc: BaseException) -> bool:
    """Whether ``exc`` is a storage fault that waiting cannot heal."""
    return isinstance(exc, StorageError) and not exc.is_retryable


def backoff(attempt: int) -> float:
    """Seconds to wait before retry ``attempt`` (0 first): doubling from ``FIRST_DELAY`` up to
    ``MAX_DELAY``, each drawn from its upper half so that many executors do not retry in step."""
    ceiling: float = min(FIRST_DELAY * 2.0 ** min(attempt, 32), MAX_DELAY)
    return ceiling * random.uniform(0.5, 1.0)


class StorageFaults:
    """One executor's record of its storage's faults: the episode in progress, for the log,
    and the permanent fault that stops the executor, if one happened."""

    def __init__(self) -> None:
        self._down_since: float | None = None
        self._retrying = 0
        """Calls waiting to be made again: the episode lasts while there are any."""
        self._answered = False
        """A retried call of this episode succeeded."""
        self.permanent: StorageError | None = None
        """The first permanent fault: the executor stops (the runner waits on ``stopped``)."""
        self.stopped = trio.Event()

    async def call(self, what: str, fn: Callable[[], Awaitable[T]], *,
                   until: Callable[[], float] | None = None) -> T:
        """``await fn()``, made again while it fails with a transient fault; ``what`` says what it
        does, for the log ("claiming executions"). ``until`` gives the trio time after which a
        retry is pointless (a lease ends): then the fault is raised. A permanent fault is noted
        and raised at once."""
        attempt = 0
        try:
            while True:
                try:
                    result = await fn()
                except StorageError as exc:
                    if not exc.is_retryable:
                        self.note_permanent(exc)
                        raise
                    delay = backoff(attempt)
                    if until is not None and trio.current_time() + delay >= until():
                        raise
                    self._note_transient(what, exc, delay, first=attempt == 0)
                    attempt += 1
                    await trio.sleep(delay)
                else:
                    if attempt:
                        self._answered = True
                    return result
        finally:
            if attempt:
                self._retrying -= 1
                if not self._retrying:
                    self._end_episode()

    def note_permanent(self, exc: StorageError) -> None:
        if self.permanent is None:
            self.permanent = exc
            self.stopped.set()

    def _note_transient(self, what: str, exc: StorageError, delay: float, *, first: bool) -> None:
        self._retrying += first
        if self._down_since is None:
            self._down_since = trio.current_time()
            log.warning("storage unavailable: retrying in %.1f s; %s failed: %s", delay, what, exc.message)
        else:
            log.debug("%s failed again: %s; retrying in %.1f s", what, exc.message, delay)

    def _end_episode(self) -> None:
        """No call waits to be made again: the storage is back if a retried call succeeded (the
        last one waiting may have been cancelled instead, say by a shutdown)."""
        if self._answered and self._down_since is not None:
            log.warning("storage back after %.1f s", trio.current_time() - self._down_since)
        self._down_since = None
        self._answered = False
