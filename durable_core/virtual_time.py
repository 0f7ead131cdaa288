"""Virtual time stands still while work runs outside trio.

Why: under ``trio.testing.MockClock`` with an ``autojump_threshold`` the clock jumps to the next
deadline as soon as every trio task waits, also while a storage call runs in a connection thread
or on a server: the call would then last until the next lease expiry or timeout. Work outside trio
holds the clock here instead: while any is in flight, the clock's ``autojump_threshold`` is
infinite (``MockClock`` allows assigning it at any time), and it is back to what it was once none
is. The run loop then sleeps in its I/O wait until the thread hands its result back: no busy
loop competing with the thread for the GIL, and on the real clock nothing happens at all.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    import trio.testing


class ClockHold:
    """The work in flight outside trio under one ``MockClock``, and its threshold while none is.

    If a test assigns ``autojump_threshold`` while work is in flight, the hold restores the
    threshold it saw before that work.
    """

    __slots__ = ("_clock", "_threshold", "_in_flight")

    def __init__(self, clock: trio.testing.MockClock):
        self._clock = clock
        self._threshold = clock.autojump_threshold
        self._in_flight = 0

    def acquire(self) -> None:
        """One more piece of work in flight: the clock stands still."""
        if self._in_flight == 0:
            self._threshold = self._clock.autojump_threshold
            self._clock.autojump_threshold = math.inf
        self._in_flight += 1

    def release(self) -> None:
        """That work is done: with none left, the clock jumps again as it did."""
        self._in_flight -= 1
        if self._in_flight == 0:
            self._clock.autojump_threshold = self._threshold


_hold: trio.lowlevel.RunVar[ClockHold | None] = trio.lowlevel.RunVar("durable_clock_hold")


def current_clock_hold() -> ClockHold | None:
    """The hold of the current trio run's clock if it is a ``MockClock``; None on any other clock
    (nothing to hold). Call it in the run, once per object that lives in it."""
    try:
        return _hold.get()
    except LookupError:
        clock = trio.lowlevel.current_clock()
        # a MockClock exists only once trio.testing is imported: importing it here would cost every
        # process ~100 ms at start-up
        testing = sys.modules.get("trio.testing")
        hold = ClockHold(clock) if testing is not None and isinstance(clock, testing.MockClock) else None
        _hold.set(hold)
        return hold


@contextlib.contextmanager
def clock_held() -> Iterator[None]:
    """Virtual time stands still inside (work outside trio runs); on the real clock, nothing."""
    hold = current_clock_hold()
    if hold is None:
        yield
        return
    hold.acquire()
    try:
        yield
    finally:
        hold.release()
