"""The web plugin's API under real HTTP load, on SQLite (`durable serve` in a process of its own).

    .venv/bin/python bench/web.py [--executions 100000] [--list-rows 1000000] [--seconds 5] [--clients 4]

* ``GET /api/v1/executions/{id}``: requests per second with ``--executions`` stored, random ids,
  on keep-alive connections: from wrk (``apt-get install wrk``; ``--clients`` connections) when it
  is installed, else from ``--clients`` Python processes (http.client), which take more of the
  CPU the server would use;
* the list's first page (50 rows) with ``--list-rows`` stored: the median and p95 of sequential
  requests, unfiltered, by status, by task, and a later page through the cursor.

Targets (docs/web.md): at least 1,000 requests/s for one execution; the first page under 50 ms.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

from durable_core.models import RetryOptions
from durable_core.status import TaskExecutionStatus as S
from durable_core.storage.contract import ExecutionRecord, Payload
from durable_storage_sqlite import SqliteStorage

STATUSES = [S.COMPLETED] * 8 + [S.FAILED, S.READY]
SERVER = """
import sys
from durable_web.command import serve_command
serve_command(["--port", "0"])
"""


def record(n: int, start: float) -> ExecutionRecord:
    status = STATUSES[n % len(STATUSES)]
    created = start + n * 0.001
    return ExecutionRecord(
        execution_id=f"te_{n:024d}", task_id=f"task_{n % 7}", status=status,
        input=Payload("json", b'{"order": 1234, "items": ["a", "b"]}'), retry=RetryOptions(), timeout=30.0,
        sleep_before_run=0.0, created_at=created, updated_at=created, start_at=created,
        ready_at=created if status is S.READY else None, finished_at=None if status is S.READY else created,
        output=Payload("json", b'{"ok": true}') if status is S.COMPLETED else None)


async def fill(path: Path, count: int) -> None:
    storage = await SqliteStorage.open(str(path))
    try:
        start = time.time() - count * 0.001
        for first in range(0, count, 10_000):
            await storage.insert_executions([record(n, start) for n in range(first, min(first + 10_000, count))])
    finally:
        await storage.aclose()


def start_server(directory: Path, db: Path) -> tuple[subprocess.Popen[str], str, int]:
    config = directory / "durable.toml"
    config.write_text(f'[storage]\nname = "sqlite"\n\n[storage.options]\npath = "{db.as_posix()}"\n')
    server = subprocess.Popen([sys.executable, "-c", SERVER], cwd=directory, text=True, stderr=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, env={**os.environ, "DURABLE_CONFIG": str(config)})
    assert server.stderr is not None
    for line in server.stderr:
        found = re.search(r"at http://([\d.]+):(\d+)/ and", line)
        if found:
            return server, found[1], int(found[2])
    raise SystemExit(f"durable serve did not start (exit code {server.wait()})")


def load(host: str, port: int, count: int, seconds: float, results: multiprocessing.Queue[int]) -> None:
    """One client process: GET random executions on one keep-alive connection for ``seconds``."""
    connection = http.client.HTTPConnection(host, port)
    done = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        connection.request("GET", f"/api/v1/executions/te_{random.randrange(count):024d}")
        response = connection.getresponse()
        assert response.status == 200, response.read()
        response.read()
        done += 1
    results.put(done)


def gets_per_second(host: str, port: int, count: int, seconds: float, clients: int) -> float:
    results: multiprocessing.Queue[int] = multiprocessing.Queue()
    processes = [multiprocessing.Process(target=load, args=(host, port, count, seconds, results))
                 for _ in range(clients)]
    started = time.perf_counter()
    for process in processes:
        process.start()
    total = sum(results.get() for _ in processes)
    elapsed = time.perf_counter() - started
    for process in processes:
        process.join()
    return total / max(elapsed, seconds)


WRK_SCRIPT = """
math.randomseed(os.time())
request = function()
  return wrk.format("GET", string.format("/api/v1/executions/te_%%024d", math.random(0, %d)))
end
"""


def wrk_gets_per_second(wrk: str, directory: Path, host: str, port: int, count: int, seconds: float,
                        clients: int) -> float:
    script = directory / "ids.lua"
    script.write_text(WRK_SCRIPT % (count - 1))
    out = subprocess.run([wrk, "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s", "-s", str(script),
                          f"http://{host}:{port}"], capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"wrk saw errors:\n{out}")
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert found, out
    return float(found[1])


def page_times(host: str, port: int, query: str, samples: int) -> tuple[float, float]:
    """Median and p95 of ``samples`` sequential requests of the list, in ms."""
    connection = http.client.HTTPConnection(host, port)
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        connection.request("GET", f"/api/v1/executions?{query}")
        response = connection.getresponse()
        body = json.loads(response.read())
        times.append((time.perf_counter() - started) * 1e3)
        assert response.status == 200 and len(body["executions"]) == 50, body
    times.sort()
    return statistics.median(times), times[int(0.95 * (len(times) - 1))]


def measure(directory: Path, rows: int, body: str) -> None:
    db = directory / f"web-{rows}.db"
    started = time.perf_counter()
    trio.run(fill, db, rows)
    print(f"stored {rows:,} executions in SQLite in {time.perf_counter() - started:.1f} s", flush=True)
    server, host, port = start_server(directory, db)
    try:
        if body == "get":
            wrk = shutil.which("wrk")
            if wrk:
                figure = wrk_gets_per_second(wrk, directory, host, port, rows, ARGS.seconds, ARGS.clients)
            else:
                figure = gets_per_second(host, port, rows, ARGS.seconds, ARGS.clients)
            print(f"GET /api/v1/executions/{{id}} with {rows:,} stored, {ARGS.clients} connections "
                  f"({'wrk' if wrk else 'Python clients'}): {figure:,.0f} requests/s")
        else:
            connection = http.client.HTTPConnection(host, port)
            connection.request("GET", "/api/v1/executions?limit=50")
            cursor = json.loads(connection.getresponse().read())["next_cursor"]
            for name, query in [("first page", "limit=50"), ("first page, status=completed", "limit=50&status=completed"),
                                ("first page, status=ready", "limit=50&status=ready"),
                                ("first page, task_id=task_3", "limit=50&task_id=task_3"),
                                ("second page (cursor)", f"limit=50&cursor={cursor}")]:
                median, p95 = page_times(host, port, query, ARGS.samples)
                print(f"GET /api/v1/executions {name:<30} with {rows:,} stored: median {median:6.2f} ms, "
                      f"p95 {p95:6.2f} ms")
    finally:
        server.terminate()
        server.wait(30)


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        measure(Path(directory), ARGS.executions, "get")
        measure(Path(directory), ARGS.list_rows, "list")


parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
parser.add_argument("--executions", type=int, default=100_000, help="stored for the GET of one execution")
parser.add_argument("--list-rows", type=int, default=1_000_000, help="stored for the list's first page")
parser.add_argument("--seconds", type=float, default=5.0, help="of GET load")
parser.add_argument("--clients", type=int, default=4, help="load processes, one connection each")
parser.add_argument("--samples", type=int, default=50, help="requests of each list shape")
ARGS = parser.parse_args()

if __name__ == "__main__":
    main()
