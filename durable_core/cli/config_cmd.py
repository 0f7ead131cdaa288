"""``durable config init|show|get|set|unset``: the configuration file (see docs/config.md)."""

from __future__ import annotations

import difflib
import tomllib
from typing import Any

import click
import tomlkit

from ..config import load_config
from .common import UserError
from .config_file import init_config, location_to_edit, set_config_value, unset_config_value


def _flatten(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        flat[prefix + key] = value
        if isinstance(value, dict):
            flat |= _flatten(value, f"{prefix}{key}.")
    return flat


def _toml_value(text: str) -> Any:
    """``text`` as a TOML value (``5``, ``0.5``, ``true``, ``"x"``), else as a plain string, so that
    ``durable config set storage.name memory`` needs no quotes."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def _inline(value: object) -> str:
    """``value`` as TOML on one line."""
    if isinstance(value, dict):
        table = tomlkit.inline_table()
        table.update(value)
        return table.as_string()
    return tomlkit.item(value).as_string()


@click.group("config")
def config_group() -> None:
    """Create, show and edit the configuration: durable.toml, or [tool.durable] in pyproject.toml."""


@config_group.command("init")
@click.option("--force", is_flag=True, help="Overwrite an existing durable.toml.")
def init(force: bool) -> None:
    """Write a commented configuration with the defaults."""
    location = location_to_edit()
    init_config(location, force=force)
    click.echo(f"wrote {location}")


@config_group.command("show")
def show() -> None:
    """Print the effective configuration (defaults included) and where it comes from."""
    config = load_config()
    click.echo(f"# from {config.source}")
    click.echo(tomlkit.dumps(config.effective()).rstrip())


@config_group.command("get")
@click.argument("key")
def get(key: str) -> None:
    """Print the effective value of KEY, e.g. storage.name or executor.poll_interval."""
    settings = _flatten(load_config().effective())
    if key not in settings:
        close = difflib.get_close_matches(key, settings, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UserError(f"unknown config key {key!r}; {hint}see them all with: durable config show")
    value = settings[key]
    click.echo(value if isinstance(value, str) else _inline(value))


@config_group.command("set")
@click.argument("key")
@click.argument("value")
def set_(key: str, value: str) -> None:
    """Set KEY to VALUE (a TOML value; a bare word is a string), keeping the file's comments and
    layout. Creates ./durable.toml when there is no configuration yet."""
    location = location_to_edit()
    parsed = _toml_value(value)
    _, note = set_config_value(location, key, parsed)
    click.echo(f"{location}: {key} = {_inline(parsed)}" + (f" ({note})" if note else ""))


@config_group.command("unset")
@click.argument("key")
def unset(key: str) -> None:
    """Remove KEY from the file, e.g. storage.options.path, so that its default applies again."""
    location = location_to_edit()
    unset_config_value(location, key)
    click.echo(f"{location}: removed {key}")
