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
