"""The code a user copies from the docs runs as written."""

import re
from pathlib import Path

DOCS = Path(__file__).parent.parent / "docs"


def python_blocks(name: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (DOCS / name).read_text(), flags=re.S)


def test_virtual_time_example_in_testing_guide_passes():
    (block,) = python_blocks("testing.md")
    namespace: dict = {}
    exec(compile(block, "docs/testing.md", "exec"), namespace)
    namespace["test_payment_retries_for_an_hour"]()


def test_integration_guide_quotes_the_examples_as_they_are():
    """A block of docs/integration.md whose first line names an example file is that file's code."""
    quoted = 0
    for block in python_blocks("integration.md"):
        first, _, code = block.partition("\n")
        if first.startswith("# examples/"):
            source = (DOCS.parent / first.removeprefix("# ")).read_text(encoding="utf-8")
            assert code in source, f"docs/integration.md quotes {first} as it no longer is:\n{code}"
            quoted += 1
    assert quoted >= 5
