"""Editing the configuration file with tomlkit, so that an edit changes one value and keeps every
comment, blank line and key order (``durable config init|set``, ``durable install --use``).

Every edit is checked as ``load_config`` would read it before the file is written, and an edit of
``storage.options`` against the options the selected storage plugin declares: a refused value
leaves the file alone.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, MutableMapping
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

[{prefix}retention]
# Workers delete, one at a time, the trees of executions that finished longer ago than this:
# a duration from 1m to 36500d such as "7d", "12h" or "2w". Unset, finished executions stay.
# finished_after = "7d"
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


def set_config_value(location: ConfigLocation, key: str, value: Any) -> tuple[DurableConfig, str | None]:
    """Set the dotted ``key`` to ``value`` in the file (created with the defaults if missing),
    changing nothing else in it; a commented-out ``# key = ...`` line of its table (as ``config
    init`` writes them) is uncommented in place. Returns the new configuration, and a note when
    selecting another storage reset the options of the previous one, which it does not take.
    A value the configuration does not accept raises ``ConfigError`` and leaves the file alone."""
    parts = key.split(".")
    notes: list[str] = []

    def change(table: TomlTable) -> None:
        storage = table.get("storage")
        if parts == ["storage", "name"] and isinstance(storage, dict) and storage.get("name", DEFAULT_STORAGE) != value:
            notes.extend(_reset_storage_options(storage, location, str(value)))
        _set(table, parts, value)

    text, config = _edited(location, change, uncomment=parts)
    if parts[:2] == ["storage", "options"]:
        check_storage_options(config)
    location.path.write_text(text, encoding="utf-8")
    return config, "; ".join(notes) or None


def unset_config_value(location: ConfigLocation, key: str) -> DurableConfig:
    """Remove the dotted ``key`` from the file, changing nothing else: its default applies again."""
    parts = key.split(".")

    def change(document: TomlTable) -> None:
        table: MutableMapping[str, Any] = document
        for part in parts[:-1]:
            inner = table.get(part)
            if not isinstance(inner, dict):
                break
            table = inner
        else:
            if parts[-1] in table:
                del table[parts[-1]]
                return
        raise ConfigError(f"{location} sets no {location.key(*parts)!r}; see what it sets with: durable config show")

    if locate_config() is None:
        raise ConfigError(f"there is no configuration file to remove {key!r} from (no {CONFIG_FILE} found)")
    text, config = _edited(location, change)
    location.path.write_text(text, encoding="utf-8")
    return config


def _reset_storage_options(storage: MutableMapping[str, Any], location: ConfigLocation, name: str) -> list[str]:
    """Empty ``[storage.options]`` (its comments stay) for the newly selected storage ``name``:
    the options there belong to the previous one. Says what went and what ``name`` takes."""
    options = storage.get("options")
    old = storage.get("name", DEFAULT_STORAGE)
    notes = []
    if isinstance(options, dict) and options:
        removed = list(options)
        for option in removed:
            del options[option]
        notes.append(f"removed {', '.join(location.key('storage', 'options', option) for option in removed)}, "
                     f"options of {old!r}")
    try:
        declared = default_registry().storage_options(name) or ()
    except DurableExecutionNotFoundError:
        declared = ()
    if declared:
        notes.append(f"{name!r} takes: {', '.join(option.name for option in declared)} "
                     f"(set one with: durable config set storage.options.NAME VALUE)")
    return notes


def _edited(location: ConfigLocation, change: Callable[[TomlTable], None],
            uncomment: list[str] | None = None) -> tuple[str, DurableConfig]:
    """The file's text with ``change`` applied to its durable table, and the configuration that
    text means; ``ConfigError`` if it is not valid. The key ``uncomment``, when the file lacks it,
    is first uncommented in place if its table has it commented out."""
    has_table = location.path.is_file() and durable_table(read_toml(location), location) is not None
    text = location.path.read_text(encoding="utf-8") if has_table else _with_defaults(location)
    if uncomment is not None and not _has_key(tomllib.loads(text), (*location.table, *uncomment)):
        text = _uncommented(text, (*location.table, *uncomment[:-1]), uncomment[-1])
    document = tomlkit.parse(text)
    table: TomlTable = document
    for part in location.table:
        table = table[part]
    change(table)
    text = tomlkit.dumps(document)
    return text, parse_config(durable_table(tomllib.loads(text), location) or {}, location)


def _has_key(data: dict[str, Any], parts: tuple[str, ...]) -> bool:
    for part in parts:
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True


_HEADER = re.compile(r"\s*\[([^\[\]]+)\]\s*(#.*)?")


def _uncommented(text: str, table: tuple[str, ...], key: str) -> str:
    """``text`` with the first ``# key = ...`` line of ``table`` turned into ``key = ...`` (its
    value is set next); unchanged if that table has no such line."""
    lines = text.splitlines(keepends=True)
    current: tuple[str, ...] = ()
    commented = re.compile(rf"(\s*)#\s*{re.escape(key)}\s*=")
    for index, line in enumerate(lines):
        if header := _HEADER.fullmatch(line.rstrip("\r\n")):
            current = tuple(part.strip().strip('"') for part in header[1].split("."))
        elif current == table and (match := commented.match(line)):
            ending = line[len(line.rstrip("\r\n")):]
            lines[index] = f"{match[1]}{key} = 0{ending}"  # a placeholder value, set next
            return "".join(lines)
    return text


def check_storage_options(config: DurableConfig) -> None:
    """Check the storage options against the selected plugin's declarations, when it is installed
    and declares them (a plugin selected before it is installed is checked when it is opened).
    ``config set`` checks only an edit of the options (selecting another storage resets them)."""
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
