"""``durable install`` / ``uninstall``: plugins by short name, distribution name or local path.

pip runs as a subprocess of this very Python (``sys.executable -m pip``; ``uv pip`` when pip is
missing), and afterwards a fresh process checks that the plugins load: this process has already
imported the old state of the environment.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from ..config import load_config
from ..plugin_index import PLUGIN_DISTRIBUTIONS
from .common import UserError
from .config_file import location_to_edit, set_config_value
from .plugins_cmd import load_plugins

SELECTING_KEY = {"storage": "storage.name", "serializer": "serializer"}
"""The configuration key that selects a plugin of each kind."""
_SHORT_NAME = re.compile(r"[a-z0-9_]+")
_DISTRIBUTION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def canonical(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Requirement:
    """One NAME of the command line, resolved."""

    argument: str
    """What pip receives: a distribution name or requirement, or an absolute path."""
    distribution: str | None
    """The distribution it installs, to check afterwards; None if unknown (e.g. a URL)."""
    short_name: str | None = None


def resolve(name: str) -> Requirement:
    """A short name (``sqlite``), a local path (a project folder or a wheel) or a requirement.
    A name starting with ``-`` is refused: pip would take it for one of its options."""
    if name.startswith("-"):
        raise UserError(f"{name!r} is not a plugin name: pip would read it as an option; give a short name, "
                        "a distribution name or a path (./NAME for a file whose name starts with '-')")
    if name in PLUGIN_DISTRIBUTIONS:
        return Requirement(PLUGIN_DISTRIBUTIONS[name], PLUGIN_DISTRIBUTIONS[name], name)
    path = Path(name)
    if path.exists():
        return Requirement(str(path.resolve()), _distribution_at(path))
    if _SHORT_NAME.fullmatch(name):
        close = difflib.get_close_matches(name, PLUGIN_DISTRIBUTIONS, n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
        raise UserError(
            f"unknown plugin {name!r}; {hint}short names: {', '.join(PLUGIN_DISTRIBUTIONS)} "
            f"(installed ones: durable plugins --all); for another distribution give its full name "
            f"(e.g. durable-storage-{name}) or a path"
        )
    match = _DISTRIBUTION_NAME.match(name)
    return Requirement(name, match.group() if match else None)


def _distribution_at(path: Path) -> str | None:
    """The distribution a wheel or a project folder holds."""
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as wheel:
            metadata = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
            return next(line.split(":", 1)[1].strip() for line in wheel.read(metadata).decode().splitlines()
                        if line.startswith("Name:"))
    pyproject = path / "pyproject.toml"
    if pyproject.is_file():
        name = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {}).get("name")
        return name if isinstance(name, str) else None
    return None


def pip(subcommand: str, *args: str) -> list[str]:
    """The command running ``pip SUBCOMMAND ARGS`` for this Python: pip, or uv when pip is missing."""
    if importlib.util.find_spec("pip") is not None:
        confirm = ["-y"] if subcommand == "uninstall" else []
        return [sys.executable, "-m", "pip", subcommand, *confirm, *args]
    uv = shutil.which("uv")
    if uv is None:
        raise UserError("neither pip nor uv is available for this Python; add pip with: "
                        f"{sys.executable} -m ensurepip")
    return [uv, "pip", subcommand, "--python", sys.executable, *args]


SPINNER = "|/-\\"


def _run(command: list[str], dry_run: bool) -> None:
    """Run pip with its output in a log file, showing a spinner on a terminal meanwhile; the log
    is kept, and its last error shown, if pip fails."""
    click.echo(f"{'would run' if dry_run else 'running'}: {shlex.join(command)}", err=True)
    if dry_run:
        return
    with tempfile.NamedTemporaryFile("w+", prefix="durable-pip-", suffix=".log", delete=False) as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            code = _spin(process)
        except KeyboardInterrupt:  # pip got the Ctrl-C too
            process.wait()
            raise click.Abort() from None
        log.seek(0)
        output = log.read()
    if code != 0:
        errors = [line for line in output.splitlines() if line.startswith("ERROR:")] or output.splitlines()[-1:]
        raise click.ClickException(f"pip failed (exit code {code}){': ' + errors[-1] if errors else ''}; "
                                   f"its whole output: {log.name}")
    os.unlink(log.name)


def _spin(process: subprocess.Popen[bytes]) -> int:
    """Wait for ``process``; on a terminal, turn a spinner with the seconds elapsed meanwhile."""
    if not sys.stderr.isatty():
        return process.wait()
    start = time.monotonic()
    frame = 0
    while (code := process.poll()) is None:
        click.echo(f"\r{SPINNER[frame % len(SPINNER)]} pip is working ({time.monotonic() - start:.0f}s)", nl=False, err=True)
        frame += 1
        time.sleep(0.1)
    click.echo("\r\033[K", nl=False, err=True)  # clear the spinner's line
    return code


def plugins_in_fresh_process() -> list[dict[str, Any]]:
    """``durable plugins --all --json`` as a new process of this Python sees them."""
    result = subprocess.run([sys.executable, "-m", "durable_core.cli", "plugins", "--all", "--json"],
                            capture_output=True, text=True, check=False)
    try:
        plugins: list[dict[str, Any]] = json.loads(result.stdout)
    except json.JSONDecodeError:
        raise click.ClickException(f"could not list the plugins after installing: {result.stderr.strip()}") from None
    return plugins


def _check(requirement: Requirement, plugins: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Report the plugins of the installed distribution; raise if one of them is broken."""
    if requirement.distribution is None:
        return []
    mine = [p for p in plugins if p["distribution"] and canonical(p["distribution"]) == canonical(requirement.distribution)]
    if not mine:
        click.echo(f"warning: {requirement.distribution} is installed but registers no durable plugin "
                   "(no entry point in the group 'durable')", err=True)
    for plugin in mine:
        if plugin["status"] == "error":
            raise click.ClickException(f"{requirement.distribution} is installed, but its plugin "
                                       f"{plugin['name']!r} fails to load: {plugin['error']}")
        click.echo(f"installed {plugin['distribution']} {plugin['version']}: plugin {plugin['name']!r} "
                   f"provides {', '.join(plugin['provides']) or 'nothing'}")
    return mine


def _selectable(requirement: Requirement, plugins: list[dict[str, Any]]) -> tuple[str, str]:
    """What ``--use`` selects: (``storage`` or ``serializer``, name)."""
    offered = [tuple(item.split(":", 1)) for plugin in plugins for item in plugin["provides"]
               if item.startswith(("storage:", "serializer:"))]
    preferred = [offer for offer in offered if offer[1] == requirement.short_name]
    if len(preferred or offered) != 1:
        found = ", ".join(":".join(offer) for offer in offered) or "no storage or serializer"
        raise UserError(f"--use: {requirement.distribution} provides {found}; select one with: "
                        "durable config set storage.name NAME (or: serializer NAME)")
    kind, name = (preferred or offered)[0]
    return kind, name


@click.command("install")
@click.argument("names", nargs=-1, required=True)
@click.option("--find-links", "-f", "find_links", multiple=True, metavar="DIR",
              help="Also look for distributions (e.g. wheels) in DIR.")
@click.option("--upgrade", "-U", is_flag=True, help="Upgrade to the newest version.")
@click.option("--use", is_flag=True, help="Select the installed storage or serializer in the configuration.")
@click.option("--dry-run", is_flag=True, help="Print what would be installed and run nothing.")
def install(names: tuple[str, ...], find_links: tuple[str, ...], upgrade: bool, use: bool, dry_run: bool) -> None:
    """Install plugins: short names (memory, sqlite, cbor, ...), distribution names or local paths."""
    requirements = [resolve(name) for name in names]
    for name, requirement in zip(names, requirements):
        if requirement.argument != name:
            click.echo(f"{name} -> {requirement.argument}", err=True)
    links = [arg for directory in find_links for arg in ("--find-links", str(Path(directory).resolve()))]
    _run(pip("install", *(["--upgrade"] if upgrade else []), *links, *(r.argument for r in requirements)), dry_run)
    if dry_run:
        return
    plugins = plugins_in_fresh_process()
    for requirement in requirements:
        mine = _check(requirement, plugins)
        if use:
            kind, name = _selectable(requirement, mine)
            location = location_to_edit()
            _, note = set_config_value(location, SELECTING_KEY[kind], name)
            click.echo(f'{location}: {SELECTING_KEY[kind]} = "{name}"' + (f" ({note})" if note else ""))


@click.command("uninstall")
@click.argument("names", nargs=-1, required=True)
@click.option("--dry-run", is_flag=True, help="Print what would be removed and run nothing.")
def uninstall(names: tuple[str, ...], dry_run: bool) -> None:
    """Remove plugins given by short name or distribution name."""
    distributions = [resolve(name).distribution or name for name in names]
    removed = {canonical(d) for d in distributions}
    provided = {item for plugin in load_plugins()[0]
                if plugin.distribution and canonical(plugin.distribution) in removed for item in plugin.provides}
    _run(pip("uninstall", *distributions), dry_run)
    if dry_run:
        return
    config = load_config()
    for item in (f"storage:{config.storage.name}", f"serializer:{config.serializer}"):
        if item in provided:
            kind, name = item.split(":")
            click.echo(f"warning: {config.source} still selects {kind} {name!r}, which was just removed; "
                       f"select another with: durable config set {SELECTING_KEY[kind]} NAME",
                       err=True)
