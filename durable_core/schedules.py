"""Periodic schedules: ``executor.schedule(task, cron="*/5 * * * *", input=None, timezone="UTC")``.

Every worker defining a schedule enqueues each of its ticks with the idempotency key
``schedule:<id>:<tick in UTC>``, so a tick is enqueued exactly once however many workers run it:
the others' inserts return the execution already stored. A worker that starts enqueues the
latest tick that has passed (``catch_up="latest"``, the default), so a tick missed while no
worker ran runs once, however many were missed; ``catch_up="none"`` skips missed ticks. Cron
expressions are parsed by ``cronsim``, time zones by ``zoneinfo``. See docs/tasks.md.

Pausing must hold across processes and restarts without a storage of its own: a paused schedule
has an active *pause marker*, a sleeping execution of the reserved task ``durable_schedule_pause``
whose unique id names the schedule (``pause:<id>:<random>``). Workers look for markers before each
tick; resuming wakes the schedule's markers (finished, they go the way of every finished
execution). Sleeping executions are never claimed, and retention deletes only finished trees, so
a pause lasts until it is resumed (or for a century, its timeout).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import trio
from cronsim import CronSim, CronSimError

from .durations import MAX_SECONDS
from .errors import DurableExecutionError
from .ids import new_id
from .models import RetryOptions
from .payloads import PayloadCodec
from .records import new_record
from .retrying import is_permanent
from .status import TaskExecutionStatus as S
from .storage.contract import ExecutionRecord, SleepingWakeup, Storage, list_key
from .tasks import Task, TaskKind

log = logging.getLogger("durable.executor")

CATCH_UP = ("latest", "none")
"""``latest``: a worker starting enqueues the latest tick that passed (once, if several did);
``none``: ticks that passed while no worker ran are skipped."""
SCHEDULE_ID = re.compile(r"[A-Za-z0-9_]{1,200}")
"""A schedule id: short enough for the idempotency key of its ticks (at most 255 characters)."""


@dataclass(frozen=True)
class Schedule:
    """A checked schedule: ``task_id`` enqueued with ``input`` at every tick of ``cron`` in ``timezone``."""

    id: str
    task_id: str
    cron: str
    input: Any
    timezone: str
    catch_up: str

    def _ticks(self, wall: float, reverse: bool) -> CronSim:
        start = datetime.fromtimestamp(wall, ZoneInfo(self.timezone))
        return CronSim(self.cron, start + timedelta(milliseconds=1) if reverse else start, reverse=reverse)

    def next_tick(self, after: float) -> float:
        """The first tick strictly after the wall time ``after`` (seconds since the epoch)."""
        return next(self._ticks(after, reverse=False)).timestamp()

    def last_tick(self, at: float) -> float | None:
        """The latest tick at or before ``at``; None if the expression never matched before."""
        tick = next(self._ticks(at, reverse=True), None)
        return None if tick is None else tick.timestamp()

    def idempotency_key(self, tick: float) -> str:
        """The key of ``tick``'s execution: the same on every worker."""
        return f"schedule:{self.id}:{datetime.fromtimestamp(tick, timezone.utc):%Y-%m-%dT%H:%M:%SZ}"


def make_schedule(task_id: str, cron: object, input: Any = None, timezone: object = "UTC", *,
                  id: object = None, catch_up: object = "latest") -> Schedule:
    """A ``Schedule`` from what a user wrote, or ``ValueError`` naming the field that is wrong."""
    schedule_id = task_id if id is None else id
    owner = f"Invalid schedule {schedule_id!r}"
    if not isinstance(schedule_id, str) or not SCHEDULE_ID.fullmatch(schedule_id):
        raise ValueError(f"{owner}: id must be 1..200 characters of letters, digits and underscores")
    if not isinstance(cron, str):
        raise ValueError(f"{owner}: cron must be a cron expression such as \"*/5 * * * *\", got {cron!r}")
    if not isinstance(timezone, str) or not timezone:
        raise ValueError(f"{owner}: timezone must be an IANA time zone name such as \"Europe/Paris\", got {timezone!r}")
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{owner}: timezone {timezone!r} is not a known time zone; use an IANA name "
                         f"such as \"UTC\" or \"Europe/Paris\"") from None
    try:
        next(CronSim(cron, datetime.now(zone)))
    except (CronSimError, StopIteration) as exc:
        reason = str(exc) or "it never matches"
        raise ValueError(f"{owner}: cron {cron!r} is not a valid cron expression ({reason}); write five fields: "
                         f"minute hour day-of-month month day-of-week, e.g. \"*/5 * * * *\"") from None
    if catch_up not in CATCH_UP:
        raise ValueError(f"{owner}: catch_up must be one of {', '.join(map(repr, CATCH_UP))}, got {catch_up!r}")
    return Schedule(schedule_id, task_id, cron, input, timezone, str(catch_up))


Enqueue = Callable[[Schedule, float], Awaitable[None]]
"""Enqueue one tick of a schedule (with its idempotency key)."""


async def schedule_loop(schedules: Sequence[Schedule], now: Callable[[], float], to_trio: Callable[[float], float],
                        enqueue: Enqueue, paused: Callable[[], Awaitable[set[str]]],
                        retention: float | None = None) -> None:
    """Enqueue every tick of ``schedules`` when it comes, and at start the latest one passed for
    those with ``catch_up="latest"``; the ticks of ``paused`` schedules pass without an execution.
    Storage faults are logged and the tick tried again.

    With ``retention`` (``finished_after``), a tick older than that is not caught up: its
    execution may have run and been deleted since, and its idempotency key with it."""
    start = now()
    pending: dict[str, float] = {}
    for schedule in schedules:
        last = schedule.last_tick(start) if schedule.catch_up == "latest" else None
        if last is not None and retention is not None and start - last >= retention:
            last = None
        pending[schedule.id] = last if last is not None else schedule.next_tick(start)
    by_id = {schedule.id: schedule for schedule in schedules}
    while pending:
        due = min(pending.values())
        await trio.sleep_until(to_trio(due))
        current = max(now(), due)  # woken at ``due``: the clock's rounding must not make it early
        for schedule_id, tick in sorted(pending.items(), key=lambda item: item[1]):
            if tick > current:
                continue
            schedule = by_id[schedule_id]
            latest = schedule.last_tick(current)  # ticks passed while this worker was held up: once
            if latest is not None and latest > tick:
                tick = latest
            try:
                if schedule_id not in await paused():
                    await enqueue(schedule, tick)
            except DurableExecutionError as exc:
                if is_permanent(exc) or not exc.is_retryable:
                    raise
                log.warning("schedule %s: enqueuing the tick of %s failed, trying again: %s", schedule_id,
                            schedule.idempotency_key(tick), exc.message)
                await trio.sleep(1.0)
                continue
            pending[schedule_id] = schedule.next_tick(tick)



PAUSE_TASK = Task("durable_schedule_pause", TaskKind.SLEEPING, MAX_SECONDS, RetryOptions(), 0.0)
"""The reserved sleeping task of pause markers (see the module doc); no executor defines it."""


async def _markers(storage: Storage) -> list[tuple[str, ExecutionRecord]]:
    """Every active pause marker, with the id of the schedule it pauses."""
    markers = []
    cursor = None
    while page := await storage.list_executions(task_id=PAUSE_TASK.id, statuses=[S.RUNNING], limit=500,
                                                before=cursor):
        markers += [((r.sleeping_unique_id or "::").split(":")[1], r) for r in page]
        cursor = list_key(page[-1])
    return markers


async def paused_schedules(storage: Storage) -> dict[str, float]:
    """The ids of the paused schedules, each with when it was paused (its first active marker)."""
    paused: dict[str, float] = {}
    for schedule_id, record in await _markers(storage):
        paused[schedule_id] = min(record.created_at, paused.get(schedule_id, record.created_at))
    return paused


async def pause_schedule(storage: Storage, codec: PayloadCodec, schedule_id: str, now: float) -> bool:
    """Pause ``schedule_id`` for every worker; False if it was paused already."""
    if schedule_id in await paused_schedules(storage):
        return False
    marker = new_record(PAUSE_TASK, f"pause:{schedule_id}:{new_id('', 12)}", now, codec)
    await storage.insert_executions([marker])
    return True


async def resume_schedule(storage: Storage, codec: PayloadCodec, schedule_id: str, now: float) -> bool:
    """Resume ``schedule_id``: wake its pause markers; False if it was not paused."""
    markers = [record.execution_id for paused, record in await _markers(storage) if paused == schedule_id]
    if markers:
        output = codec.encode(None, PAUSE_TASK.id, "output")
        await storage.wake_sleeping_executions([SleepingWakeup(m, S.COMPLETED, output=output) for m in markers], now)
    return bool(markers)
