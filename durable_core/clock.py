"""The engine's one clock: every timestamp passed to a storage comes from here."""

from __future__ import annotations

import sys
import time

import trio

_virtual_anchor: trio.lowlevel.RunVar[tuple[float, float]] = trio.lowlevel.RunVar("durable_virtual_anchor")


class Clock:
    """Wall time anchored once, advanced by trio's clock.

    Under ``trio.testing.MockClock`` the whole engine therefore runs in virtual time: retries,
    backoff, timeouts and lease expiry all move with the mock clock, never with the wall. There
    every executor of the run shares one anchor, so that an executor started after a virtual day
    of downtime sees that day passed, as its stored executions do.
    """

    def __init__(self) -> None:
        self._trio_anchor = trio.current_time()
        self._wall_anchor = time.time()
        testing = sys.modules.get("trio.testing")  # imported only by who made a MockClock
        if testing is not None and isinstance(trio.lowlevel.current_clock(), testing.MockClock):
            try:
                self._trio_anchor, self._wall_anchor = _virtual_anchor.get()
            except LookupError:
                _virtual_anchor.set((self._trio_anchor, self._wall_anchor))

    def now(self) -> float:
        """Seconds since the epoch, as the engine sees them."""
        return self._wall_anchor + (trio.current_time() - self._trio_anchor)

    def to_trio(self, wall: float) -> float:
        """The trio time at which the engine's clock reads ``wall``: for deadlines."""
        return wall - self._wall_anchor + self._trio_anchor
