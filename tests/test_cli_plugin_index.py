"""``durable_core/plugin_index.py`` matches the plugins of this repository.

Regenerate it with ``python tests/test_cli_plugin_index.py`` after adding a plugin folder or
renaming an entry point.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INDEX = ROOT / "durable_core" / "plugin_index.py"
PROJECTS = [*sorted(ROOT.glob("plugins/*/pyproject.toml")), ROOT / "conformance" / "pyproject.toml"]


def generated_index() -> str:
    """The module text: each ``durable`` entry-point name and its distribution, by name."""
    table: dict[str, str] = {}
    for path in PROJECTS:
        if path.is_file():
            project = tomllib.loads(path.read_text(encoding="utf-8"))["project"]
            table |= {name: project["name"] for name in project.get("entry-points", {}).get("durable", {})}
    entries = "".join(f'    "{name}": "{table[name]}",\n' for name in sorted(table))
    docstring = INDEX.read_text(encoding="utf-8").split('"""')[1]
    return f'"""{docstring}"""\n\nPLUGIN_DISTRIBUTIONS: dict[str, str] = {{\n{entries}}}\n'


def test_plugin_index_is_up_to_date() -> None:
    assert INDEX.read_text(encoding="utf-8") == generated_index(), (
        "durable_core/plugin_index.py is out of date; run: python tests/test_cli_plugin_index.py"
    )


def test_every_plugin_folder_has_a_short_name() -> None:
    from durable_core.plugin_index import PLUGIN_DISTRIBUTIONS

    folders = {tomllib.loads(p.read_text(encoding="utf-8"))["project"]["name"] for p in ROOT.glob("plugins/*/pyproject.toml")}
    assert folders <= set(PLUGIN_DISTRIBUTIONS.values())


if __name__ == "__main__":
    INDEX.write_text(generated_index(), encoding="utf-8")
    print(f"wrote {INDEX.relative_to(ROOT)}", file=sys.stderr)
