"""docs/cli.md against the command line itself: every command ``durable --help`` lists, every
subcommand and every option has its place in the page, and so has every short name of
``durable install``; the README's test command is the one CI runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import click

from durable_core.cli import add_plugin_commands, cli
from durable_core.plugin_index import PLUGIN_DISTRIBUTIONS

ROOT = Path(__file__).resolve().parent.parent
PAGE = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")


def sections() -> dict[str, str]:
    """The page's ``## `` sections by heading, each with its text."""
    parts = re.split(r"^## ", PAGE, flags=re.MULTILINE)[1:]
    return {part.split("\n", 1)[0]: part for part in parts}


def section_of(name: str) -> str:
    """The section whose heading names ``durable NAME``."""
    found = [text for heading, text in sections().items() if re.search(rf"`durable {name}\b", heading)]
    assert found, f"docs/cli.md has no section '## `durable {name} …`'"
    return found[0]


def options(command: click.Command) -> list[list[str]]:
    """The spellings of each option of ``command`` (--help left out: every command has it)."""
    return [param.opts + param.secondary_opts for param in command.params
            if isinstance(param, click.Option) and param.name != "help"]


def undocumented(command: click.Command, text: str) -> list[str]:
    return [spellings[0] for spellings in options(command) if not any(f"{s}" in text for s in spellings)]


def test_every_command_durable_help_lists_has_a_section() -> None:
    result = subprocess.run([sys.executable, "-m", "durable_core.cli", "--help"], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    listed = re.findall(r"^  (\S+)", result.stdout.split("Commands:", 1)[1], flags=re.MULTILINE)
    assert {"demo", "worker", "enqueue", "executions", "install", "config", "conformance", "serve"} <= set(listed)
    for name in listed:
        section_of(name)
    assert "--config" in PAGE and "--version" in PAGE


def test_every_subcommand_and_option_is_documented_in_its_section() -> None:
    add_plugin_commands(cli)
    missing = {}
    for name, command in cli.commands.items():
        text = section_of(name)
        if isinstance(command, click.Group):
            for sub_name, sub in command.commands.items():
                rows = [line for line in text.splitlines() if line.startswith(f"| `{sub_name}")]
                where = rows[0] if rows else text if re.search(rf"\b{sub_name}\b", text) else ""
                if not where:
                    missing[f"{name} {sub_name}"] = ["(the command itself)"]
                elif gaps := undocumented(sub, where):
                    missing[f"{name} {sub_name}"] = gaps
        elif gaps := undocumented(command, text):
            missing[name] = gaps
    assert missing == {}, "docs/cli.md misses these commands and options"


def test_the_install_table_has_every_short_name() -> None:
    table = section_of("install")
    assert [row for row in PLUGIN_DISTRIBUTIONS.items() if f"| `{row[0]}` | `{row[1]}` |" not in table] == []


def test_the_readme_test_command_is_the_one_ci_runs_and_prints_skip_reasons() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").rstrip("\n").splitlines()[-1]
    assert ci in readme.splitlines() and ci.endswith(" -m pytest -q -rs")
