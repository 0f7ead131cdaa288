"""Retention: workers delete the trees of executions that finished long ago, by themselves.

``[retention] finished_after = "7d"`` (``DurableExecutor(retention_finished_after=...)``) makes
every worker take part. Time is cut into turns of ``TURN`` seconds; at the start of each, every
worker reads the registry of live executors (the one its heartbeats keep, earliest start first)
and the one at position ``turn number % live executors`` deletes, in batches of ``BATCH`` trees
with a pause between them, until nothing is left or its turn ends. The turns rotate, so the work
is shared, and a worker without retention simply lets its turn pass.

Two workers deleting at once costs load, never correctness: each batch is one atomic storage call
that deletes only whole trees whose top-level execution finished before the cut-off, and a tree
deleted by one is not there for the other. It can happen only while workers disagree on the
registry (an executor joined or died in the last ``lease_duration``) or on the time (clocks of
different machines). See docs/config.md.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import trio

from .durations import MAX_DAYS, MAX_SECONDS, parse_duration
from .errors import DurableExecutionError
from .retrying import is_permanent

if TYPE_CHECKING:
    from .engine import Engine

log = logging.getLogger("durable.executor")

TURN = 60.0
"""Seconds a turn lasts: how often the live executors decide which of them deletes."""
BATCH = 100
"""Trees one storage call deletes at most: short enough never to hold up claims for long."""
PAUSE = 0.1
"""Seconds between two full batches, so that other writes pass in between."""
MIN_FINISHED_AFTER = 60.0
"""The shortest retention: handles and ``durable executions show`` read a finished execution for
a while after it finished."""
EXPECTED = f'a duration from 1m to {MAX_DAYS}d such as "7d", "12h" or "2w" (or a number of seconds)'


def check_finished_after(value: object) -> float | None:
    """The seconds of a ``finished_after`` setting (a duration such as ``"7d"``, or a number of
    seconds; None: keep finished executions forever); ``ValueError`` naming it when invalid."""
    if value is None:
        return None
    seconds: float | None = None
    if isinstance(value, str):
        try:
            seconds = parse_duration(value)
        except ValueError:
            seconds = None
    elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        seconds = float(value)
    if seconds is None or not MIN_FINISHED_AFTER <= seconds <= MAX_SECONDS:
        raise ValueError(f"Invalid retention option finished_after: expected {EXPECTED}, got {value!r}")
    return seconds


async def retention_loop(engine: Engine, finished_after: float) -> None:
    """At the start of every turn, ``take_turn``; storage faults are ridden out (a batch is retried
    until the turn ends) and logged, a permanent one ends the loop (and the executor)."""
    turn = math.floor(engine.now() / TURN)
    while True:
        turn = max(turn + 1, math.floor(engine.now() / TURN))  # counted, not read back: clocks round
        await trio.sleep_until(engine.clock.to_trio(turn * TURN))
        try:
            deleted = await take_turn(engine, turn, finished_after)
        except DurableExecutionError as exc:
            if is_permanent(exc):
                raise
            log.warning("retention: deleting finished executions failed, next turn in %ss: %s", TURN, exc.message)
        else:
            if deleted:
                log.info("retention: deleted %d executions of trees finished more than %ss ago", deleted,
                         finished_after)


async def take_turn(engine: Engine, turn: int, finished_after: float) -> int:
    """If ``turn`` (which starts at ``turn * TURN``) is this executor's, delete old finished trees
    until none is left or the turn ends; returns how many executions it deleted."""
    now = engine.now()
    live = await engine.faults.call(
        "listing executors", lambda: engine.storage.list_executors(now - engine.options.lease_duration))
    if not live or live[turn % len(live)].executor_id != engine.executor_id:
        return 0
    turn_ends = engine.clock.to_trio((turn + 1) * TURN)
    deleted = 0
    while trio.current_time() < turn_ends:
        before = engine.now() - finished_after
        count = await engine.faults.call(
            "deleting finished executions", lambda: engine.storage.delete_finished_executions(before, BATCH),
            until=lambda: turn_ends)
        deleted += count
        if count == 0:
            break
        await trio.sleep(PAUSE)
    return deleted
