"""Clients from plain Python and asyncio, against one ``durable worker`` process running a no-op.

    python bench/clients.py [sqlite|postgres] [--executions 3000] [--tasks 10000] [--samples 300]
                            [--option KEY=VALUE ...]

A standalone ``Client`` and ``AsyncClient`` (no task definitions) and a worker process
(``durable worker _noop_worker:executor``) share a fresh SQLite file (or the storage given).
Measured, one after the other, each once the worker has run everything enqueued before:

- ``Client.enqueue``, one call at a time from a plain thread: executions/s;
- ``AsyncClient.enqueue``, one call at a time from an asyncio task: executions/s;
- end to end: ``--tasks`` enqueues by ``Client.enqueue``, one call at a time, into the worker
  once it is idle, until it has run them all (asked only once the enqueues are over): the enqueue
  rate and tasks/s from the first enqueue to the last finish;
- round trip, ``Client.enqueue`` → the worker runs the no-op → ``Client.wait`` returns: p50, p99;
- finish → ``wait`` returns: the no-op returns ``time.time()`` as it ends; the client subtracts it
  from the time ``wait`` returned (one machine, one wall clock): p50, p99.

Round trips are made one at a time, 20 ms apart, so that the worker is idle when each arrives.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import tomlkit

from _harness import EndToEnd, parser, poll_until, storage_options
from durable_core.client import AsyncClient, Client
from durable_core.client.operations import ClientOperations, EnqueueOptions
from durable_core.metrics import unmetered

BENCH = Path(__file__).parent


def start_worker(storage: str, options: dict[str, Any] | None) -> subprocess.Popen[bytes]:
    """``durable worker _noop_worker:executor`` on the storage, through a ``durable.toml`` of its own."""
    config = Path(tempfile.mkdtemp()) / "durable.toml"
    config.write_text(tomlkit.dumps({"storage": {"name": storage, "options": options or {}}}), encoding="utf-8")
    return subprocess.Popen([sys.executable, "-m", "durable_core.cli", "worker", "_noop_worker:executor", "--quiet"],
                            cwd=BENCH, env={**os.environ, "DURABLE_CONFIG": str(config)})


@contextmanager
def worker_process(storage: str, options: dict[str, Any] | None) -> Iterator[None]:
    """A ``durable worker`` process while the block runs, then stopped as an operator would (SIGTERM)."""
    worker = start_worker(storage, options)
    try:
        yield
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait()


def end_to_end(client: Client, n: int) -> EndToEnd:
    """``n`` no-op tasks by ``Client.enqueue`` one at a time into the running worker, until it has
    run them all: a first one, waited for, makes sure that the worker is up and idle."""
    client.wait(client.enqueue("noop", -1), timeout=120)
    started = time.perf_counter()
    for i in range(n):
        client.enqueue("noop", i)
    enqueued = time.perf_counter()
    poll_until(lambda: not client.list(status=["ready", "running"], limit=1), "the worker's run")
    return EndToEnd(n, enqueued - started, time.perf_counter() - started)


def client_end_to_end(storage: str, options: dict[str, Any] | None, n: int) -> EndToEnd:
    """``end_to_end`` from a client in this process into a ``durable worker`` started for it."""
    with Client(storage, storage_options=options) as client, worker_process(storage, options):
        return end_to_end(client, n)


def wait_all(client: Client, execution_ids: list[str]) -> None:
    """Until the worker has run them all (so that the next figure starts with an idle worker)."""
    for execution_id in execution_ids:
        assert client.wait(execution_id, timeout=120).status == "completed"


def enqueue_rate(client: Client, n: int) -> tuple[float, list[str]]:
    started = time.perf_counter()
    ids = [client.enqueue("noop", i) for i in range(n)]
    return n / (time.perf_counter() - started), ids


async def async_enqueue_rate(storage: str, options: dict[str, Any] | None, n: int) -> tuple[float, list[str]]:
    async with AsyncClient(storage, storage_options=options) as client:
        started = time.perf_counter()
        ids = [await client.enqueue("noop", i) for i in range(n)]
        return n / (time.perf_counter() - started), ids


def round_trips(client: Client, samples: int) -> tuple[list[float], list[float]]:
    """Seconds from enqueue to ``wait`` returning, and from the no-op's end to ``wait`` returning."""
    round_trip, finish_to_wait = [], []
    for i in range(samples):
        started = time.perf_counter()
        finished = client.wait(client.enqueue("noop", i), timeout=60)
        returned_at = time.time()
        round_trip.append(time.perf_counter() - started)
        finish_to_wait.append(returned_at - finished.output)
        time.sleep(0.02)
    return round_trip, finish_to_wait


def percentiles(seconds: list[float]) -> str:
    ordered = sorted(seconds)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return f"p50 {statistics.median(ordered) * 1e3:6.2f} ms, p99 {p99 * 1e3:6.2f} ms ({len(ordered)} samples)"


def bare_write_rate(client: Client, n: int) -> float:
    """The ceiling of one enqueue per transaction: the same records written and committed one by
    one on a connection of the storage's (``TransactionalInserts``), with no client around them."""
    storage = unmetered(client.executor.engine.storage)
    records = ClientOperations(client.executor, on_caller_thread=True).build_records(
        "noop", list(range(n)), EnqueueOptions(), time.time())
    connection = storage.connect()
    try:
        started = time.perf_counter()
        for record in records:
            storage.insert_executions_on(connection, [record])
            connection.commit()
        return n / (time.perf_counter() - started)
    finally:
        connection.close()


def enqueue_rates(client: Client, storage: str, options: dict[str, Any] | None,
                  n: int) -> tuple[tuple[float, float], list[str]]:
    """``Client.enqueue`` and ``AsyncClient.enqueue`` rates, and the executions they enqueued."""
    sync_rate, sync_ids = enqueue_rate(client, n)
    async_rate, async_ids = asyncio.run(async_enqueue_rate(storage, options, n))
    return (sync_rate, async_rate), sync_ids + async_ids


def main(storage: str, options: dict[str, Any] | None, n: int, tasks: int, samples: int) -> None:
    with Client(storage, storage_options=options) as client:
        ceiling = bare_write_rate(client, n)
        alone, queued = enqueue_rates(client, storage, options, n)
        with worker_process(storage, options):
            wait_all(client, queued)  # the worker runs what was enqueued before it started
            busy, queued = enqueue_rates(client, storage, options, n)
            wait_all(client, queued)
            one_by_one = end_to_end(client, tasks)
            round_trip, finish_to_wait = round_trips(client, samples)
    targets = {"enqueue": "; target >= 3,000/s", "finish": "; target p50 < 50 ms"} if storage == "sqlite" else {}
    print(f"{storage}, clients in this process (no task definitions), one `durable worker` process:")
    print(f"  one insert + commit at a time, no client (the ceiling):{ceiling:>22,.0f} executions/s ({n} executions)")
    for what, (sync_rate, async_rate) in (("no worker running", alone), ("the worker running them", busy)):
        print(f"  Client.enqueue, one at a time, plain thread, {what}:{sync_rate:>{32 - len(what)},.0f} "
              f"executions/s ({n} executions{targets.get('enqueue', '')})")
        print(f"  AsyncClient.enqueue, one at a time, asyncio task, {what}:{async_rate:>{26 - len(what)},.0f} "
              f"executions/s ({n} executions)")
    print(f"  Client.enqueue one at a time into the worker, until it ran them all: {one_by_one}")
    print(f"  round trip, enqueue -> run -> wait returns:        {percentiles(round_trip)}")
    print(f"  finish -> wait returns:                            {percentiles(finish_to_wait)}{targets.get('finish', '')}")


if __name__ == "__main__":
    arguments = parser(__doc__)
    arguments.set_defaults(storage="sqlite")
    arguments.add_argument("--executions", type=int, default=3000, help="enqueues per client (default 3000)")
    arguments.add_argument("--tasks", type=int, default=10_000, help="end to end: tasks enqueued (default 10000)")
    arguments.add_argument("--samples", type=int, default=300, help="round trips (default 300)")
    args = arguments.parse_args()
    if args.storage == "memory":
        raise SystemExit("clients.py needs a storage shared by processes (sqlite, postgres); memory is not")
    main(args.storage, storage_options(args), args.executions, args.tasks, args.samples)
