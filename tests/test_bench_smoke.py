"""Seconds-long runs of the benchmarks, so they keep working (their figures are not checked)."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parent.parent / "bench"


@pytest.mark.parametrize("args", [
    ["throughput.py", "memory", "--tasks", "300"],
    ["throughput.py", "sqlite", "--tasks", "300"],
    ["latency.py", "sqlite", "--samples", "5"],
    ["latency.py", "sqlite", "--samples", "5", "--from-process"],
    ["reference_workload.py", "memory", "--iterations", "0"],
    ["reference_workload.py", "sqlite", "--iterations", "0", "--executors", "2"],
    ["scale.py", "history", "--history", "100", "300", "--tasks", "200"],
    ["scale.py", "backlog", "memory", "--pending", "300"],
    ["sqlite_storage_ops.py", "--records", "300"],
    ["serializers.py", "0.001"],
], ids=lambda args: " ".join(args))
def test_benchmark_runs_and_prints_figures(args, tmp_path):
    result = subprocess.run([sys.executable, str(BENCH / args[0]), *args[1:]], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert any(ch.isdigit() for ch in result.stdout)
