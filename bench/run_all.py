"""Every benchmark, one after another, printing its figures (docs/benchmarks.md has the results).

    python bench/run_all.py [--quick] [--postgres DSN]

``--quick`` runs each at a size of seconds (what CI does, so that they keep working; the figures
then mean nothing). ``--postgres DSN`` adds the PostgreSQL runs, each in a schema of its own (made and dropped by the run).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parent


def runs(postgres: str | None) -> list[tuple[list[str], list[str]]]:
    """Each benchmark run: its arguments in full, and at a size of seconds."""
    storages = [["memory"], ["sqlite"]]
    if postgres:
        storages.append(["postgres", "--option", f"dsn={postgres}"])
    listed: list[tuple[list[str], list[str]]] = []
    for storage in storages:
        listed += [
            (["reference_workload.py", *storage], ["reference_workload.py", *storage, "--iterations", "0"]),
            (["throughput.py", *storage], ["throughput.py", *storage, "--tasks", "300"]),
            (["routing.py", *storage], ["routing.py", *storage, "--tasks", "100", "--foreign", "300", "--repeat", "1"]),
            (["priorities.py", *storage], ["priorities.py", *storage, "--backlog", "300", "--rounds", "2"]),
            (["observability.py", *storage], ["observability.py", *storage, "--tasks", "200", "--rounds", "1"]),
            (["latency.py", *storage], ["latency.py", *storage, "--samples", "5"]),
            (["scale.py", "backlog", *storage], ["scale.py", "backlog", *storage, "--pending", "300"]),
        ]
        if storage[0] != "memory":
            listed += [
                (["reference_workload.py", *storage, "--executors", "2"],
                 ["reference_workload.py", *storage, "--iterations", "0", "--executors", "2"]),
                (["latency.py", *storage, "--from-process"],
                 ["latency.py", *storage, "--samples", "5", "--from-process"]),
                (["clients.py", *storage],
                 ["clients.py", *storage, "--executions", "100", "--tasks", "200", "--samples", "5"]),
                (["scale.py", "history", *storage],
                 ["scale.py", "history", *storage, "--history", "300", "--tasks", "200", "--iterations", "0"]),
            ]
    listed += [
        (["reference_workload.py", "memory", "--executors", "2"],
         ["reference_workload.py", "memory", "--iterations", "0", "--executors", "2"]),
        (["peer_huey.py"], ["peer_huey.py", "--tasks", "200", "--rounds", "1"]),
        (["sqlite_storage_ops.py"], ["sqlite_storage_ops.py", "--records", "300"]),
        (["serializers.py"], ["serializers.py", "0.001"]),
        (["web.py"], ["web.py", "--executions", "2000", "--list-rows", "3000", "--seconds", "1", "--clients", "2",
                      "--samples", "5"]),
    ]
    return listed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="seconds-long runs (figures mean nothing)")
    parser.add_argument("--postgres", metavar="DSN", help="also run on PostgreSQL at DSN")
    args = parser.parse_args()
    for full, quick in runs(args.postgres):
        command = quick if args.quick else full
        print(f"$ python bench/{' '.join(command)}", flush=True)
        if subprocess.run([sys.executable, str(BENCH / command[0]), *command[1:]]).returncode:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
