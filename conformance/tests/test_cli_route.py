"""``durable conformance NAME`` runs the suite through the ``durable`` command line."""

import subprocess
import sys


def test_durable_conformance_runs_the_suite_by_name(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "durable_core.cli", "conformance", "memory", "--", "-q", "-k", "claim"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout and "failed" not in result.stdout


def test_durable_conformance_reports_an_unknown_storage(tmp_path):
    result = subprocess.run([sys.executable, "-m", "durable_core.cli", "conformance", "nosuch"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "nosuch" in result.stderr + result.stdout
