"""Seconds-long runs of every benchmark, so they keep working (their figures are not checked)."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parent.parent / "bench"


def quick_runs() -> list[list[str]]:
    """The seconds-long runs ``bench/run_all.py --quick`` makes (bench/ is scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("bench_run_all", BENCH / "run_all.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return [quick for _, quick in module.runs(postgres=None)]


@pytest.mark.parametrize("args", quick_runs(), ids=lambda args: " ".join(args))
def test_benchmark_runs_and_prints_figures(args, tmp_path):
    result = subprocess.run([sys.executable, str(BENCH / args[0]), *args[1:]], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert any(ch.isdigit() for ch in result.stdout)
