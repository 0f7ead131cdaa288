"""The type check of CI: mypy, configured in pyproject.toml's ``[tool.mypy]`` (strict, over the core
and the packages shipped beside it), must report no error; the few ``type: ignore`` left say why."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_TYPE_IGNORES = 10
IGNORE = re.compile(r"#\s*type:\s*ignore\b")
EXPLAINED_INLINE = re.compile(r"#\s*type:\s*ignore\[[^\]]+\]\s*#\s*\S")


def test_mypy_finds_no_error(tmp_path: Path) -> None:
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", "pyproject.toml", "--cache-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True,
    )
    if checked.returncode != 0:
        pytest.fail(f"mypy reports errors:\n{checked.stdout}{checked.stderr}", pytrace=False)


def _type_ignores() -> list[tuple[str, bool]]:
    """Every ``type: ignore`` of the repository's Python files: where, and whether a comment says why
    (after it on its line, or on the line above)."""
    found = []
    for top in sorted(ROOT.iterdir()):
        if top.name.startswith(".") or (not top.is_dir() and top.suffix != ".py"):
            continue
        for path in sorted(top.rglob("*.py") if top.is_dir() else [top]):
            lines = path.read_text(encoding="utf-8").splitlines()
            for n, line in enumerate(lines):
                if IGNORE.search(line):
                    explained = bool(EXPLAINED_INLINE.search(line)) or lines[n - 1].lstrip().startswith("#")
                    found.append((f"{path.relative_to(ROOT)}:{n + 1}", explained))
    return found


def test_type_ignores_are_few_and_each_says_why() -> None:
    ignores = _type_ignores()
    assert len(ignores) <= MAX_TYPE_IGNORES, f"{len(ignores)} type: ignore (at most {MAX_TYPE_IGNORES}): {ignores}"
    unexplained = [where for where, explained in ignores if not explained]
    assert not unexplained, f"type: ignore without a comment saying why (after it, or on the line above): {unexplained}"
