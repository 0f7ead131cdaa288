"""The conformance suite through the command line, ``durable conformance postgres``, against a
scratch database that is dropped afterwards (every check gets a schema of its own in it). The
model-based state machine, the slowest check by far, is left to conformance/tests/test_postgres.py,
which runs every check by the pytest route."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg


def test_the_suite_passes_through_durable_conformance(scratch_database: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    result = subprocess.run(
        [sys.executable, "-m", "durable_core.cli", "conformance", "postgres", "--option",
         f"dsn={scratch_database}", "--option", "pool_size=2", "--", "-q", "-k", "not agrees_with_the_model"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and "failed" not in result.stdout and "skipped" not in result.stdout
    assert schemas_made(scratch_database) == []  # each check's schema was dropped


def schemas_made(dsn: str) -> list[str]:
    """The schemas that the conformance suite's by-name route made (``conformance_<random>``)."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT schema_name FROM information_schema.schemata "
                            "WHERE schema_name LIKE 'conformance%' ORDER BY 1").fetchall()
    return [name for (name,) in rows]


def test_ctrl_c_drops_the_schemas_made_so_far(scratch_database: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    with (tmp_path / "out.log").open("wb") as out:
        run = subprocess.Popen([sys.executable, "-m", "durable_core.cli", "conformance", "postgres", "-o",
                                f"dsn={scratch_database}", "--", "-q", "-k", "not agrees_with_the_model"],
                               cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            seen: set[str] = set()
            while len(seen) < 2:  # the opening probe's schema, then a check's (each has a schema of its own)
                assert run.poll() is None and time.monotonic() < deadline, (tmp_path / "out.log").read_text()
                seen.update(schemas_made(scratch_database))
                time.sleep(0.01)
            run.send_signal(signal.SIGINT)
            assert run.wait(timeout=60) == 2  # pytest's code for an interrupted run
        finally:
            run.kill()
    assert "KeyboardInterrupt" in (tmp_path / "out.log").read_text()
    assert schemas_made(scratch_database) == []


def test_a_wrong_dsn_is_one_line_before_any_check_runs(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "durable_core.cli", "conformance", "postgres", "--option", "dsn=nonsense"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: Invalid postgres storage option dsn:") and result.stderr.count("\n") == 1
