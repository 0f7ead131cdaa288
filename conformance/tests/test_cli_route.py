"""``durable conformance NAME`` runs the suite through the ``durable`` command line."""

import subprocess
import sys

import pytest


def test_durable_conformance_runs_the_suite_by_name(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "durable_core.cli", "conformance", "memory", "--", "-q", "-k", "claim"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout and "failed" not in result.stdout


@pytest.mark.parametrize(("args", "message"), [
    ([], "error: Missing argument 'NAME'. (see: durable conformance --help)\n"),
    (["memory", "-x"], "error: No such option '-x'. (see: durable conformance --help)\n"),
    (["nosuch"], "error: storage 'nosuch' is not installed; run: durable install nosuch\n"),
])
def test_a_usage_error_is_one_line_and_exit_code_2_like_every_command(tmp_path, args, message):
    result = subprocess.run([sys.executable, "-m", "durable_core.cli", "conformance", *args],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stdout, result.stderr) == (2, "", message)
