"""Throughput of the SQLite storage alone (no executor), in the shapes the engine uses it.

    .venv/bin/python bench/sqlite_storage_ops.py [--records 10000] [--batch 100] [--concurrency 1000]

* insert, batched: ``insert_executions`` with ``--batch`` records per call, one call at a time;
* insert, concurrent: ``--concurrency`` trio tasks each inserting one record per call (enqueue);
* claim + commit: one claimer claims ``--batch`` records per call and starts a trio task per
  record that commits it completed, as the executor does, at most ``--concurrency`` at once;
* lifecycle: concurrent single-record inserts, claims and commits all at once.

Group commit is what makes the concurrent figures high: every call pending while the connection
thread commits is committed together in the next transaction.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Awaitable, Callable

import trio

from durable_core.models import RetryOptions
from durable_core.status import TaskExecutionStatus as S
from durable_core.storage.contract import ExecutionRecord, Payload, RunCommit
from durable_storage_sqlite import SqliteStorage

NOW = 1_000.0


def record(n: int) -> ExecutionRecord:
    return ExecutionRecord(
        execution_id=f"te_{n:024d}", task_id="bench", status=S.READY, input=Payload("json", b'{"n": 1}'),
        retry=RetryOptions(), timeout=30.0, sleep_before_run=0.0, created_at=NOW, updated_at=NOW,
        start_at=NOW, ready_at=NOW,
    )


def report(name: str, count: int, seconds: float) -> None:
    print(f"{name:<44} {count:>7} in {seconds:6.2f} s = {count / seconds:>9,.0f}/s")


async def insert_batched(storage: SqliteStorage, first: int, count: int, batch: int) -> None:
    for start in range(first, first + count, batch):
        await storage.insert_executions([record(n) for n in range(start, min(start + batch, first + count))])


async def insert_concurrently(storage: SqliteStorage, first: int, count: int, concurrency: int) -> None:
    async def producer(worker: int) -> None:
        for n in range(first + worker, first + count, concurrency):
            await storage.insert_executions([record(n)])

    async with trio.open_nursery() as nursery:
        for worker in range(concurrency):
            nursery.start_soon(producer, worker)


async def claim_and_commit(storage: SqliteStorage, count: int, batch: int, concurrency: int) -> None:
    """Claim in batches, commit each record from its own task, like the executor."""
    claimed_total = in_flight = 0
    freed = trio.Event()

    async def commit(claimed: ExecutionRecord) -> None:
        nonlocal in_flight
        finished = claimed.copy(status=S.COMPLETED, output=Payload("json", b"1"), finished_at=NOW)
        await storage.commit_runs([RunCommit(finished)], NOW)
        in_flight -= 1
        freed.set()

    async with trio.open_nursery() as nursery:
        while claimed_total < count:
            limit = min(batch, concurrency - in_flight)
            claimed = await storage.claim_executions("bench", NOW, limit, 60.0) if limit else []
            claimed_total += len(claimed)
            in_flight += len(claimed)
            for each in claimed:
                nursery.start_soon(commit, each)
            if not claimed:  # wait for capacity, or poll again for records still being inserted
                if in_flight:
                    freed = trio.Event()
                    await freed.wait()
                else:
                    await trio.lowlevel.checkpoint()


async def phase(directory: str, name: str, count: int, work: Callable[[SqliteStorage], Awaitable[None]],
                setup: Callable[[SqliteStorage], Awaitable[None]] | None = None) -> None:
    """Time ``work`` on a new database (prepared by ``setup``, untimed)."""
    storage = await SqliteStorage.open(os.path.join(directory, f"{len(os.listdir(directory))}.db"))
    try:
        if setup is not None:
            await setup(storage)
        started = time.perf_counter()
        await work(storage)
        report(name, count, time.perf_counter() - started)
    finally:
        await storage.aclose()


async def main(records: int, batch: int, concurrency: int) -> None:
    async def lifecycle(storage: SqliteStorage) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(insert_concurrently, storage, 0, records, concurrency)
            nursery.start_soon(claim_and_commit, storage, records, batch, concurrency)

    with tempfile.TemporaryDirectory() as directory:
        await phase(directory, f"insert, {batch} per call", records,
                    lambda storage: insert_batched(storage, 0, records, batch))
        await phase(directory, f"insert, 1 per call, {concurrency} tasks", records,
                    lambda storage: insert_concurrently(storage, 0, records, concurrency))
        await phase(directory, f"claim {batch} per call + commit 1 per call, {concurrency} tasks", records,
                    lambda storage: claim_and_commit(storage, records, batch, concurrency),
                    setup=lambda storage: insert_batched(storage, 0, records, batch))
        await phase(directory, f"insert + claim + commit at once, {concurrency} tasks", records, lifecycle)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=1000)
    args = parser.parse_args()
    trio.run(main, args.records, args.batch, args.concurrency)
