"""Heartbeats: every ``heartbeat_interval``, one storage call renews the leases of all this
executor's runs and refreshes its entry in the storage's registry of executors.

A lease lasts ``lease_duration`` from its claim or its last renewal, so the executions of an
executor that died (SIGKILL, a lost machine) are claimed again within ``lease_duration`` +
``poll_interval``, whatever their timeout. A run whose lease was not renewed (cancelled, or expired
and claimed elsewhere) is stopped at once and never writes. A run that ignores the cancellation
of its timeout is renewed for ``expire_leeway`` seconds past it, then given up to another executor.
"""

from __future__ import annotations

import logging
import os
import socket

import trio

from .engine import Engine
from .errors import DurableExecutionError
from .storage.contract import ExecutorInfo, StorageError

log = logging.getLogger("durable.executor")


async def heartbeat_loop(engine: Engine) -> None:
    """``beat`` now and every ``heartbeat_interval``; a storage fault is ridden out as every other
    call's (``retrying``), and a permanent one ends the loop: the runner stops the executor."""
    interval = engine.options.heartbeat_interval
    started_at = engine.now()
    while True:
        try:
            await engine.faults.call("renewing leases", lambda: beat(engine, started_at))
        except StorageError:
            return
        except DurableExecutionError as exc:
            log.warning("heartbeat failed, retrying in %ss: %s", interval, exc.message)
        await trio.sleep(interval)


async def beat(engine: Engine, started_at: float) -> None:
    """Renew the leases of the runs still within their timeout and ``expire_leeway``, give up the
    others, and stop the runs whose lease no longer holds."""
    runs = list(engine.runs.values())
    for run in runs:
        if not run.revoked and trio.current_time() >= run.renew_until:
            log.warning("%s %s overran its timeout by expire_leeway (%ss) and ignores cancellation: "
                        "given up to another executor", run.record.task_id, run.record.execution_id,
                        engine.options.expire_leeway)
            run.revoke()
    held = [run for run in runs if not run.revoked]
    now = engine.now()
    executor = ExecutorInfo(engine.executor_id, socket.gethostname(), os.getpid(), started_at, now, len(held))
    leases = [run.record.lease for run in held]
    duration = engine.options.lease_duration
    engine.stop_revoked(held, await engine.storage.renew_leases(executor, leases, now, duration))
    for run in held:
        run.lease_expires_at = now + duration
