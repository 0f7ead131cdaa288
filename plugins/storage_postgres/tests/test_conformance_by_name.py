"""The conformance suite through the command line, ``durable conformance postgres``, against a
scratch database that is dropped afterwards (every check gets a schema of its own in it). The
model-based state machine, the slowest check by far, is left to conformance/tests/test_postgres.py,
which runs every check by the pytest route."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_the_suite_passes_through_durable_conformance(scratch_database: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    result = subprocess.run(
        [sys.executable, "-m", "durable_core.cli", "conformance", "postgres", "--option",
         f"dsn={scratch_database}", "--option", "pool_size=2", "--", "-q", "-k", "not agrees_with_the_model"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and "failed" not in result.stdout and "skipped" not in result.stdout


def test_a_wrong_dsn_is_one_line_before_any_check_runs(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "durable_core.cli", "conformance", "postgres", "--option", "dsn=nonsense"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: Invalid postgres storage option dsn:") and result.stderr.count("\n") == 1
