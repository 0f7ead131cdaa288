"""The engine's one clock: every timestamp passed to a storage comes from here."""

from __future__ import annotations

import time

import trio


class Clock:
    """Wall time anchored once, advanced by trio's clock.

    Under ``trio.testing.MockClock`` the whole engine therefore runs in virtual time: retries,
    backoff, timeouts and lease expiry all move with the mock clock, never with the wall.
    """

    def __init__(self) -> None:
        self._trio_anchor = trio.current_time()
        self._wall_anchor = time.time()

    def now(self) -> float:
        """Seconds since the epoch, as the engine sees them."""
        return self._wall_anchor + (trio.current_time() - self._trio_anchor)

    def to_trio(self, wall: float) -> float:
        """The trio time at which the engine's clock reads ``wall``: for deadlines."""
        return wall - self._wall_anchor + self._trio_anchor
