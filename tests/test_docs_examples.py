"""The code a user copies from the docs runs as written."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).parent.parent / "docs"


def code_blocks(name: str, language: str = "python") -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", (DOCS / name).read_text(), flags=re.S)


def files_of(blocks: list[str]) -> dict[str, str]:
    """The blocks that start with ``# NAME.py``, by file name."""
    return {match.group(1): block for block in blocks if (match := re.match(r"# (\w+\.py)\n", block))}


@pytest.mark.parametrize("storage", ["memory", "sqlite"])
def test_the_testing_guides_worked_example_passes(tmp_path, storage):
    files = files_of(code_blocks("testing.md"))
    assert set(files) == {"orders.py", "test_orders.py"}
    for name, code in files.items():
        (tmp_path / name).write_text(code)
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--durations=1",
                             "--durable-storage", storage, "test_orders.py"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
    print(result.stdout)  # with -s: the real time it took (--durations)


def test_integration_guide_quotes_the_examples_as_they_are():
    """A block of docs/integration.md whose first line names an example file is that file's code."""
    quoted = 0
    for block in code_blocks("integration.md"):
        first, _, code = block.partition("\n")
        if first.startswith("# examples/"):
            source = (DOCS.parent / first.removeprefix("# ")).read_text(encoding="utf-8")
            assert code in source, f"docs/integration.md quotes {first} as it no longer is:\n{code}"
            quoted += 1
    assert quoted >= 5
