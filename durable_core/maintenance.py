"""The engine's watchers: expired leases, revoked runs, and what other processes changed.

Every executor sharing a storage recovers expired leases anywhere (not only its own), so a crashed
executor's work is taken over by whoever is alive. A storage with a change feed wakes the claimer
and the waiting handles at once when another process writes; without one, polling does it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import trio

from .engine import Engine
from .errors import DurableExecutionError
from .events import EventKind
from .errors import ErrorInfo
from .retrying import is_permanent
from .status import TaskExecutionStatus as S
from .storage.contract import (
    EXPIRED_ERROR,
    EXPIRED_TOO_OFTEN_ERROR,
    SLEEPING_TIMED_OUT_ERROR,
    ChangeNotifications,
    StatusChange,
)
from .storage.transitions import WAITING_STATUSES

log = logging.getLogger("durable.executor")

_WAITER_REFRESH_GAP = 0.01
"""Seconds between two batched reads for waiting handles, so a busy neighbour costs little."""


async def maintenance_loop(engine: Engine) -> None:
    """Every ``poll_interval``: ``maintain``, riding out storage faults (``retrying``) and
    logging (not raising) any other error."""
    interval = engine.options.poll_interval
    while True:
        await trio.sleep(interval)
        try:
            await engine.faults.call("maintenance", lambda: maintain(engine))
        except DurableExecutionError as exc:
            if is_permanent(exc):
                raise
            log.warning("maintenance failed, retrying in %ss: %s", interval, exc.message)


async def maintain(engine: Engine) -> None:
    """Recover expired leases anywhere, wake handles whose executions finished elsewhere, and
    stop local runs whose lease was revoked elsewhere."""
    options = engine.options
    while True:
        changes = await engine.storage.expire_leases(
            engine.now(), options.max_lease_expirations, options.max_task_executions_per_batch
        )
        engine.observe(EventKind.EXPIRED, changes, acted_on=expired(changes))
        if len(changes) < options.max_task_executions_per_batch:
            break
    await engine.wake_finished_waiters()
    runs = list(engine.runs.values())
    if runs:
        engine.stop_revoked(runs, await engine.storage.find_revoked_leases([r.record.lease for r in runs]))


_EXPIRY_ERRORS = {S.READY: EXPIRED_ERROR, S.FAILED: EXPIRED_TOO_OFTEN_ERROR, S.TIMED_OUT: SLEEPING_TIMED_OUT_ERROR}


def expired(changes: Sequence[StatusChange]) -> dict[str, ErrorInfo | None]:
    """The executions whose lease expired among the ``changes`` of ``expire_leases``, with the
    error each got; the others were closed by them. The storage does not say which is which: a
    cascade only cancels, and a parent keeps its waiting status whether its own lease expired
    or a child moved it along, which only an expiry that finished something can do."""
    finished = any(c.status in (S.FAILED, S.TIMED_OUT) for c in changes)
    return {
        c.execution_id: _EXPIRY_ERRORS.get(c.status) for c in changes
        if c.status is not S.CANCELLED and not (finished and c.status in WAITING_STATUSES)
    }


async def change_loop(engine: Engine, feed: ChangeNotifications) -> None:
    """Wake the claimer, and handles waiting for executions that may have finished elsewhere,
    as soon as another process changed the storage (its change feed)."""
    seen: int | None = None
    while True:
        try:  # polling goes on meanwhile
            changed = await engine.faults.call("watching for changes", lambda: feed.wait_for_changes(seen))
        except DurableExecutionError as exc:
            if is_permanent(exc):
                raise
            log.warning("change feed failed, retrying in %ss: %s", engine.options.poll_interval, exc.message)
            seen = None
            await trio.sleep(engine.options.poll_interval)
            continue
        # also after a (first, or new) baseline: it may already hold changes made since the
        # claimer and the waiters last looked, which no later change would announce
        engine.others_changed()
        engine.waiters_stale.set()
        seen = changed


async def waiter_refresh_loop(engine: Engine) -> None:
    """One batched read of the waited executions not running here, per burst of changes (at
    most every ``_WAITER_REFRESH_GAP`` seconds)."""
    while True:
        await engine.waiters_stale.wait()
        engine.waiters_stale.clear()
        try:
            await engine.faults.call("refreshing waiting handles",
                                     lambda: engine.wake_finished_waiters(skip_running=True))
        except DurableExecutionError as exc:
            if is_permanent(exc):
                raise
            log.warning("refreshing waiting handles failed: %s", exc.message)
        await trio.sleep(_WAITER_REFRESH_GAP)
