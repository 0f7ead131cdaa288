"""Every example runs and prints, as its last line, the output its docstring promises."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
EXAMPLES = sorted(p for p in EXAMPLES_DIR.glob("*.py") if not p.name.startswith("_"))  # _cli.py: their helper
MARKER = "Expected output:"


def expected_output(script: Path) -> str:
    """The one ``Expected output: ...`` line of the script's module docstring."""
    docstring = ast.get_docstring(ast.parse(script.read_text(encoding="utf-8"))) or ""
    found = [line.strip()[len(MARKER):].strip() for line in docstring.splitlines()
             if line.strip().startswith(MARKER)]
    assert len(found) == 1 and found[0], (
        f"{script.name}: its docstring needs exactly one non-empty '{MARKER} ...' line"
    )
    return found[0]


def run_example(script: Path, cwd: Path, *args: str) -> str:
    """Run the script and return its last line of output."""
    result = subprocess.run(
        [sys.executable, str(script), *args], cwd=cwd, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, f"{script.name} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    lines = result.stdout.strip().splitlines()
    assert lines, f"{script.name} printed nothing:\n{result.stderr}"
    return lines[-1]


def test_every_pattern_has_an_example():
    assert {p.name for p in EXAMPLES} >= {
        "upload_file.py", "retries.py", "run_context.py", "parent_with_children.py",
        "finalize_strict.py", "finalize_partial.py", "sequential.py", "sequential_of_parents.py",
        "task_tree.py", "recursive.py", "looping.py", "sleeping_webhook.py",
    }
    listed = (EXAMPLES_DIR / "README.md").read_text(encoding="utf-8")
    assert [p.name for p in EXAMPLES if f"`{p.name}`" not in listed] == []


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_prints_its_expected_output(script: Path, tmp_path: Path):
    expected = expected_output(script)
    assert run_example(script, tmp_path, "--storage", "memory") == expected
    assert list(tmp_path.iterdir()) == []  # the memory storage leaves no file behind


def test_upload_file_defaults_to_sqlite_in_the_working_directory(tmp_path: Path):
    if importlib.util.find_spec("durable_storage_sqlite") is None:
        pytest.skip("the sqlite storage plugin (durable_storage_sqlite) is not installed")
    script = EXAMPLES_DIR / "upload_file.py"
    assert run_example(script, tmp_path) == expected_output(script)
    assert (tmp_path / "durable.db").is_file()
