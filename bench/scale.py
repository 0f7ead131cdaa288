"""Scale: does the cost of a task grow with history, and what does a big backlog cost in memory?

    python bench/scale.py history [sqlite|postgres] [--history 0 1000000] [--tasks 10000] [--iterations 2]
                                  [--rounds 2] [--option KEY=VALUE ...]
    python bench/scale.py backlog [memory|sqlite|...] [--pending 100000]

``history``: for each size, a fresh database (a new SQLite file, or a new PostgreSQL schema,
dropped afterwards) gets that many finished executions (not timed: one stored through the
storage, copied by one ``INSERT ... SELECT``), then on it, one after the other: the in-process
throughput run, one at a time and batched (``throughput.run_modes``); ``Client.enqueue`` one at
a time into a ``durable worker`` process, end to end (``clients.client_end_to_end``); the reference
workload with one executor (``reference_workload.run``). The last lines give each figure with the
largest history as a share of that with the smallest (a rate's ratio, or the inverse of a
duration's: above 100 % is faster), from the medians of ``--rounds`` rounds in which the sizes
alternate, each size measured in a process of its own.
``backlog``: enqueue ``--pending`` tasks while no executor claims, report the process's peak RSS,
then run them all to completion and report the peak RSS and tasks/s again.
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import os
import shutil
import statistics
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor

import trio

from _harness import peak_rss_mb, storage_options
from clients import client_end_to_end
from durable_core import DurableExecutor, open_storage
from durable_core.records import new_record
from durable_core.status import TaskExecutionStatus as S
from reference_workload import run as reference_workload
from throughput import MODES, define_noop, run_modes

SEED_BATCH = 2000
TIMES = ("created_at", "updated_at", "start_at", "started_at", "finished_at")
# Copies of the template row, numbered 1..count. Their ids sort before any id made now (``te_-``
# then the time), so that, as with a real history, new executions go to the end of the index.
COPY = {
    "sqlite": ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
               "INSERT INTO executions ({columns}) SELECT {values} FROM executions, n WHERE execution_id = ?",
               "'te_--' || printf('%019d', n.i)"),
    "postgres": ('INSERT INTO "{schema}".executions ({columns}) SELECT {values} '
                 'FROM "{schema}".executions, generate_series(1, %s) AS n(i) WHERE execution_id = %s',
                 "'te_--' || lpad(n.i::text, 19, '0')"),
}
COLUMNS = {
    "sqlite": "SELECT name FROM pragma_table_info('executions')",
    "postgres": ("SELECT column_name FROM information_schema.columns WHERE table_schema = '{schema}' "
                 "AND table_name = 'executions' AND is_identity = 'NO' AND is_generated = 'NEVER' "
                 "ORDER BY ordinal_position"),
}


def copy_statement(storage: str, schema: str, columns: list[str]) -> str:
    """``INSERT ... SELECT`` of the template row once per number, with its own id and times."""
    statement, new_id = COPY[storage]
    values = [new_id if c == "execution_id" else f"{c} + n.i * 1e-5" if c in TIMES else c for c in columns]
    return statement.format(schema=schema, columns=", ".join(columns), values=", ".join(values))


async def seed_history(storage: str, options: dict, count: int) -> None:
    """``count`` completed executions, as if run a day ago (the schema is created either way)."""
    if storage not in COPY:
        raise SystemExit(f"scale.py history needs a storage in a database ({', '.join(COPY)}), not {storage}")
    async with open_storage(storage, **options) as opened:
        if not count:
            return
        executor = DurableExecutor(opened)
        now = time.time() - 86_400
        template = new_record(define_noop(executor), 0, now, executor.codec).copy(
            status=S.COMPLETED, output=executor.encode("done", "noop", "output"), started_at=now, finished_at=now,
            ready_at=None, retry_attempts=0)
        await opened.insert_executions([template])
        connection = opened.connect()
        try:
            schema = options.get("schema", "durable")
            columns = [row[0] for row in connection.execute(COLUMNS[storage].format(schema=schema)).fetchall()]
            connection.execute(copy_statement(storage, schema, columns), (count - 1, template.execution_id))
            connection.commit()
        finally:
            connection.close()


def fresh_database(storage: str, options: dict, size: int) -> dict:
    """The options of a database of its own: a new SQLite file, or a new PostgreSQL schema."""
    if storage == "sqlite":
        return {**options, "path": os.path.join(tempfile.mkdtemp(), "history.db")}
    return {**options, "schema": f"{options.get('schema', 'bench')}_h{size}_{uuid.uuid4().hex[:6]}"}


def drop_database(storage: str, options: dict) -> None:
    if storage == "sqlite":
        shutil.rmtree(os.path.dirname(options["path"]))
        return
    import psycopg

    with psycopg.connect(options["dsn"], autocommit=True) as connection:
        connection.execute(f'DROP SCHEMA "{options["schema"]}" CASCADE')


def measure(storage: str, options: dict, tasks: int, iterations: int) -> dict[str, tuple[float, str]]:
    """Every figure on one database, with its unit (rates, and the reference workload's seconds)."""
    figures = {}
    for mode, result in trio.run(run_modes, storage, options, tasks, MODES).items():
        figures[f"in process, {mode}: enqueue"] = (result.enqueue_rate, "/s")
        figures[f"in process, {mode}: end to end"] = (result.per_second, "tasks/s")
    remote = client_end_to_end(storage, options, tasks)
    print(f"{storage}, Client.enqueue one at a time into a durable worker: {remote}", flush=True)
    figures["Client.enqueue into a worker: enqueue"] = (remote.enqueue_rate, "/s")
    figures["Client.enqueue into a worker: end to end"] = (remote.per_second, "tasks/s")
    seconds = trio.run(functools.partial(reference_workload, storage, options, iterations, 1, details=False))
    figures["reference workload, per timed iteration"] = (statistics.mean(seconds[1:] or seconds), "s")
    return figures


def measure_size(storage: str, options: dict, size: int, tasks: int, iterations: int) -> dict[str, tuple[float, str]]:
    """``measure`` on a fresh database holding ``size`` finished executions, dropped afterwards."""
    database = fresh_database(storage, options, size)
    try:
        seeding = time.perf_counter()
        trio.run(seed_history, storage, database, size)
        print(f"--- {storage} with {size:,} finished executions (seeded in {time.perf_counter() - seeding:.1f} s"
              + (f", file {os.path.getsize(database['path']) / 2**20:,.0f} MiB)" if storage == "sqlite" else ")"),
              flush=True)
        return measure(storage, database, tasks, iterations)
    finally:
        drop_database(storage, database)


def history(storage: str, options: dict, sizes: list[int], tasks: int, iterations: int, rounds: int) -> None:
    """Each size measured ``rounds`` times, the sizes alternating, each time in a process of its own:
    measured once each in one process, the second size ran in a process that had run everything
    once already, and the figures moved more between runs than the target's margin (one sitting:
    51-83 % that way, 84-101 % this way)."""
    measured: dict[int, list[dict[str, tuple[float, str]]]] = {size: [] for size in sizes}
    spawn = multiprocessing.get_context("spawn")
    for _ in range(rounds):
        for size in sizes:
            with ProcessPoolExecutor(1, mp_context=spawn) as process:
                measured[size].append(process.submit(measure_size, storage, options, size, tasks, iterations).result())
    low, high = min(sizes), max(sizes)
    print(f"{storage}: each figure with {high:,} finished executions, as a share of that with {low:,} "
          f"(medians of {rounds} round(s); target >= 95 %):")
    for name, (_, unit) in measured[high][0].items():
        base, value = (statistics.median(figures[name][0] for figures in measured[size]) for size in (low, high))
        share = base / value if unit == "s" else value / base
        print(f"  {name:45} {base:>10,.2f} -> {value:>10,.2f} {unit:8} {share:5.0%}")


async def backlog(storage: str, options: dict | None, pending: int) -> None:
    async with open_storage(storage, **(options or {})) as shared:
        client = DurableExecutor(shared, max_concurrent_task_executions=0)
        define_noop(client)
        async with client:
            for start in range(0, pending, SEED_BATCH):
                await client.enqueue_tasks("noop", range(start, min(pending, start + SEED_BATCH)))
        print(f"{storage}: {pending:,} pending executions enqueued; peak RSS {peak_rss_mb():.0f} MB")
        worker = DurableExecutor(shared)
        define_noop(worker)
        started = time.perf_counter()
        async with worker:
            while await shared.list_executions(statuses=[S.READY, S.RUNNING], limit=1):
                await trio.sleep(0.05)
        elapsed = time.perf_counter() - started
    print(f"{storage}: ran them all in {elapsed:.1f} s ({pending / elapsed:,.0f} tasks/s); "
          f"peak RSS {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("mode", choices=("history", "backlog"))
    arguments.add_argument("storage", nargs="?", default="sqlite")
    arguments.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE")
    arguments.add_argument("--history", type=int, nargs="+", default=[0, 1_000_000])
    arguments.add_argument("--tasks", type=int, default=10_000)
    arguments.add_argument("--iterations", type=int, default=2, help="of the reference workload, after its warm-up")
    arguments.add_argument("--rounds", type=int, default=2, help="of history: each size measured this often")
    arguments.add_argument("--pending", type=int, default=100_000)
    args = arguments.parse_args()
    if args.rounds < 1:
        arguments.error(f"--rounds: expected at least 1 (each size measured this often), got {args.rounds}")
    if args.mode == "history":
        history(args.storage, storage_options(args) or {}, args.history, args.tasks, args.iterations, args.rounds)
    else:
        trio.run(backlog, args.storage, storage_options(args), args.pending)
