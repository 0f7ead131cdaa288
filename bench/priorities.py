"""Priorities: what a claim costs beside a backlog it must not read.

    python bench/priorities.py [memory|sqlite|...] [--backlog 10000] [--rounds 50] [--option KEY=VALUE ...]

Each round inserts 100 due executions at priority 5 and claims 100 (the engine's routed claim:
one task, one queue), alone and beside a backlog of ``--backlog`` executions at priority 9 not
due for an hour plus ``--backlog`` due ones at priority 0. A claim reads one priority level at a
time, never an entry not due, nor a level below those it takes: its cost should not move.
"""

from __future__ import annotations

import argparse
import time

import trio

from _harness import drop_schema, parser, storage_options
from durable_core import Storage, open_storage
from durable_core.models import RetryOptions
from durable_core.status import TaskExecutionStatus
from durable_core.storage import ExecutionRecord, Payload

CLAIM = 100
ROUTE = {"task_ids": frozenset({"task"}), "queues": frozenset({"default"})}


def record(execution_id: str, ready_at: float, priority: int) -> ExecutionRecord:
    return ExecutionRecord(execution_id=execution_id, task_id="task", status=TaskExecutionStatus.READY,
                           input=Payload("json", b"null"), retry=RetryOptions(), timeout=60.0, sleep_before_run=0.0,
                           created_at=0.0, updated_at=0.0, start_at=ready_at, ready_at=ready_at, priority=priority)


async def insert(storage: Storage, prefix: str, count: int, ready_at: float, priority: int) -> None:
    for start in range(0, count, 500):
        await storage.insert_executions([record(f"te_{prefix}_{i}", ready_at, priority)
                                         for i in range(start, min(count, start + 500))])


async def claims(name: str, options: dict | None, backlog: int, rounds: int) -> float:
    """Mean seconds per claim of ``CLAIM``, beside ``backlog`` (0: alone)."""
    async with open_storage(name, **(options or {})) as storage:
        await insert(storage, "later", backlog, 3600.0, 9)
        await insert(storage, "low", backlog, 0.0, 0)
        spent = 0.0
        for r in range(rounds):
            await insert(storage, f"r{r}", CLAIM, 1.0 + r, 5)
            started = time.perf_counter()
            claimed = await storage.claim_executions("de_bench", 2.0 + r, CLAIM, 60.0, **ROUTE)
            spent += time.perf_counter() - started
            assert len(claimed) == CLAIM and all(c.priority == 5 for c in claimed), "a claim took the wrong level"
    return spent / rounds


async def main(storage: str, args: argparse.Namespace) -> None:
    for label, backlog in (("alone", 0), (f"beside {args.backlog:,} not due at priority 9 and {args.backlog:,} due "
                                           "at priority 0", args.backlog)):
        options = storage_options(args)
        try:
            seconds = await claims(storage, options, backlog, args.rounds)
        finally:
            drop_schema(options)
        print(f"{storage} claim of {CLAIM} at priority 5, {label}: {seconds * 1e3:.2f} ms "
              f"({seconds / CLAIM * 1e6:.1f} µs per execution claimed)")


if __name__ == "__main__":
    arguments = parser(__doc__)
    arguments.add_argument("--backlog", type=int, default=10_000)
    arguments.add_argument("--rounds", type=int, default=50)
    args = arguments.parse_args()
    trio.run(main, args.storage, args)
