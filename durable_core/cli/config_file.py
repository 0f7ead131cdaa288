"""Editing the configuration file with tomlkit, so that an edit changes one value and keeps every
comment, blank line and key order (``durable config init|set``, ``durable install --use``).

Every edit is checked as ``load_config`` would read it before the file is written, and an edit of
``storage.options`` against the options the selected storage plugin declares: a refused value
leaves the file alone.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.container import Container
from tomlkit.items import Table

from ..config import (
    CONFIG_FILE,
    DEFAULT_SERIALIZER,
    DEFAULT_STORAGE,
    DEFAULT_STORAGE_OPTIONS,
    ConfigError,
    ConfigLocation,
    DurableConfig,
    durable_table,
    locate_config,
    parse_config,
    read_toml,
)
from ..errors import DurableExecutionNotFoundError
from ..options import EXECUTOR_OPTIONS
from ..plugins.manager import default_registry

TomlTable = Container | Table
"""A table of a tomlkit document: the document itself, or a table in it."""


def location_to_edit() -> ConfigLocation:
    """The file that discovery finds, or ./durable.toml, to be created."""
    return locate_config() or ConfigLocation(Path(CONFIG_FILE))


def default_config_text(table: tuple[str, ...] = ()) -> str:
    """A commented configuration with the defaults, for ``durable config init``; its keys sit
    under ``table`` (``("tool", "durable")`` in pyproject.toml)."""
    prefix = "".join(f"{part}." for part in table)
    header = f"\n[{'.'.join(table)}]" if table else ""
    storage_options = "\n".join(f"{key} = {tomlkit.item(value).as_string()}" for key, value in DEFAULT_STORAGE_OPTIONS.items())
    executor = "\n\n".join(f"# {option.help}\n# {option.name} = {option.default!r}"
                         for option in EXECUTOR_OPTIONS.values())
    return f"""\
# durable configuration (docs/config.md). Found as: --config PATH, $DURABLE_CONFIG,
# ./durable.toml, or [tool.durable] in ./pyproject.toml. Edit it by hand or with
# `durable config set KEY VALUE`, which keeps comments and layout.
{header}
# Serializer of new payloads: "json" (built in) or an installed plugin such as "cbor".
serializer = "{DEFAULT_SERIALIZER}"

[{prefix}storage]
# An installed storage plugin: "sqlite" (one file, any number of processes) or "memory"
# (tests). `durable plugins` lists them; `durable install NAME --use` adds and selects one.
name = "{DEFAULT_STORAGE}"

[{prefix}storage.options]
# Keyword arguments of the storage plugin (see its README, or `durable plugins --json`);
# paths are relative to the working directory.
{storage_options}

[{prefix}executor]
# Options of DurableExecutor, each with what it means; uncomment a line to change it.
{executor}
"""


def init_config(location: ConfigLocation, *, force: bool = False) -> None:
    """Write the commented defaults to ``location``: a new durable.toml, or a ``[tool.durable]``
    section appended to pyproject.toml."""
    if location.path.is_file() and not location.table and not force:
        raise ConfigError(f"{location.path} already exists; overwrite it with: durable config init --force")
    if location.table and location.path.is_file() and durable_table(read_toml(location), location) is not None:
        raise ConfigError(f"{location} already exists; edit it with: durable config set KEY VALUE")
    location.path.write_text(_with_defaults(location), encoding="utf-8")


def _with_defaults(location: ConfigLocation) -> str:
    """The file's text with the commented defaults added where it has no durable table."""
    if not location.table:
        return default_config_text()
    text = location.path.read_text(encoding="utf-8") if location.path.is_file() else ""
    return text + ("\n" if text else "") + default_config_text(location.table)


def set_config_value(location: ConfigLocation, key: str, value: Any) -> DurableConfig:
    """Set the dotted ``key`` to ``value`` in the file (created with the defaults if missing),
    changing nothing else in it, and return the new configuration. A value the configuration
    does not accept raises ``ConfigError`` and leaves the file alone."""
    parts = key.split(".")
    text, config = _edited(location, lambda table: _set(table, parts, value))
    if parts[:2] == ["storage", "options"]:
        check_storage_options(config)
    location.path.write_text(text, encoding="utf-8")
    return config


def select_plugin(location: ConfigLocation, kind: str, name: str) -> str | None:
    """Make the file select the storage or serializer ``name`` (``durable install --use``).
    Returns a note when the previous storage's options had to go, as they belong to it."""
    note: list[str] = []

    def select(table: TomlTable) -> None:
        if kind == "serializer":
            table["serializer"] = name
            return
        storage = table.setdefault("storage", tomlkit.table())
        if storage.get("name", DEFAULT_STORAGE) != name and "options" in storage:
            note.append(f"removed {location.key('storage', 'options')}, which were options of "
                        f"{storage.get('name', DEFAULT_STORAGE)!r}")
            del storage["options"]
        storage["name"] = name

    text, _ = _edited(location, select)
    location.path.write_text(text, encoding="utf-8")
    return note[0] if note else None


def _edited(location: ConfigLocation, change: Callable[[TomlTable], None]) -> tuple[str, DurableConfig]:
    """The file's text with ``change`` applied to its durable table, and the configuration that
    text means; ``ConfigError`` if it is not valid."""
    has_table = location.path.is_file() and durable_table(read_toml(location), location) is not None
    document = tomlkit.parse(location.path.read_text(encoding="utf-8") if has_table else _with_defaults(location))
    table: TomlTable = document
    for part in location.table:
        table = table[part]
    change(table)
    text = tomlkit.dumps(document)
    return text, parse_config(durable_table(tomllib.loads(text), location) or {}, location)


def check_storage_options(config: DurableConfig) -> None:
    """Check the storage options against the selected plugin's declarations, when it is installed
    and declares them (a plugin selected before it is installed is checked when it is opened).
    ``config set`` checks only an edit of the options: after ``storage.name`` changes, the old
    options may still be there, for the user to change next."""
    try:
        options = default_registry().storage_options(config.storage.name)
    except DurableExecutionNotFoundError:
        return
    if options is not None:
        config.check_storage_options(options)


def _set(table: TomlTable, parts: list[str], value: Any) -> None:
    for depth, part in enumerate(parts[:-1]):
        table = table.setdefault(part, tomlkit.table())
        if not isinstance(table, dict):
            raise ConfigError(f"cannot set {'.'.join(parts)}: {'.'.join(parts[:depth + 1])} is not a table")
    table[parts[-1]] = value
