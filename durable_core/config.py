"""The configuration file: where it is found, what it may contain, and the executor it builds.

Discovery, first match wins: ``DURABLE_CONFIG`` (which ``durable --config PATH`` sets),
``./durable.toml``, ``[tool.durable]`` in ``./pyproject.toml``; without any, the defaults (SQLite
in ``./durable.db``, JSON). Files are read with ``tomllib`` into a ``DurableConfig`` and edited
with tomlkit, so that an edit changes one value and keeps every comment. Every error names the
file, the key path and the value expected. See docs/config.md.
"""

from __future__ import annotations

import difflib
import inspect
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomlkit

from .executor import DEFAULT_STORAGE, DEFAULT_STORAGE_OPTIONS, DurableExecutor
from .options import EXECUTOR_OPTIONS as DECLARED

CONFIG_ENV = "DURABLE_CONFIG"
"""Environment variable naming the configuration file; ``durable --config PATH`` sets it, so that
``DurableExecutor.from_config()`` in the user's modules reads the same file as the command."""

CONFIG_FILE = "durable.toml"
PYPROJECT_TABLE = ("tool", "durable")


EXECUTOR_OPTIONS = {name: (option.type, option.default) for name, option in DECLARED.items()}


class ConfigError(ValueError):
    """The configuration is missing, unreadable or has a bad value; the message names the file,
    the key path and what is expected."""


@dataclass(frozen=True)
class StorageConfig:
    name: str = DEFAULT_STORAGE
    """An installed storage plugin (``durable plugins`` lists them)."""
    options: Mapping[str, Any] = field(default_factory=lambda: dict(DEFAULT_STORAGE_OPTIONS))
    """Keyword arguments of the plugin's factory; relative paths are relative to the working
    directory, as the plugin receives them unchanged."""


@dataclass(frozen=True)
class ConfigLocation:
    """A configuration file and the table in it that holds durable's keys."""

    path: Path
    table: tuple[str, ...] = ()
    """``()`` for durable.toml, ``("tool", "durable")`` for pyproject.toml."""

    def key(self, *parts: str) -> str:
        """The full dotted key path of ``parts``, as the user would find it in the file."""
        return ".".join((*self.table, *parts))

    def __str__(self) -> str:
        return f"{self.path} [{self.key()}]" if self.table else str(self.path)


@dataclass(frozen=True)
class DurableConfig:
    """What the configuration selects: storage and its options, serializer, executor options."""

    storage: StorageConfig = field(default_factory=StorageConfig)
    serializer: str = "json"
    executor: Mapping[str, int | float] = field(default_factory=dict)
    """The executor options the file sets (``DurableExecutor`` keyword arguments)."""
    location: ConfigLocation | None = None
    """Where it was read from; None when no file was found and these are the defaults."""

    @property
    def source(self) -> str:
        return str(self.location) if self.location else "the defaults (no durable.toml found)"

    def executor_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments of ``DurableExecutor``; ``overrides`` win, and the configured
        storage options are dropped when ``storage`` is overridden by another storage."""
        kwargs: dict[str, Any] = {
            "storage": self.storage.name,
            "storage_options": dict(self.storage.options),
            "serializer": self.serializer,
            **self.executor,
        }
        if overrides.get("storage", self.storage.name) != self.storage.name:
            del kwargs["storage_options"]
        return kwargs | overrides

    def effective(self) -> dict[str, Any]:
        """Every setting with its effective value, executor defaults included (``config show``)."""
        return {
            "serializer": self.serializer,
            "storage": {"name": self.storage.name, "options": dict(self.storage.options)},
            "executor": {name: self.executor.get(name, default) for name, (_, default) in EXECUTOR_OPTIONS.items()},
        }


# ----------------------------------------------------------------------------- discovery and reading


def locate_config(path: str | os.PathLike[str] | None = None) -> ConfigLocation | None:
    """The file to read: ``path``, else ``$DURABLE_CONFIG``, else ./durable.toml, else
    ./pyproject.toml if it has ``[tool.durable]``; None when there is none."""
    explicit = path or os.environ.get(CONFIG_ENV)
    if explicit:
        explicit = Path(explicit)
        return ConfigLocation(explicit, PYPROJECT_TABLE if explicit.name == "pyproject.toml" else ())
    if Path(CONFIG_FILE).is_file():
        return ConfigLocation(Path(CONFIG_FILE))
    pyproject = ConfigLocation(Path("pyproject.toml"), PYPROJECT_TABLE)
    if pyproject.path.is_file() and _durable_table(_read(pyproject), pyproject) is not None:
        return pyproject
    return None


def location_to_edit() -> ConfigLocation:
    """The file that discovery finds, or ./durable.toml, to be created."""
    return locate_config() or ConfigLocation(Path(CONFIG_FILE))


def load_config(path: str | os.PathLike[str] | None = None) -> DurableConfig:
    """Find (see ``locate_config``), read and check the configuration."""
    location = locate_config(path)
    if location is None:
        return DurableConfig()
    if not location.path.is_file():
        raise ConfigError(
            f"config file {location.path} (named by --config or {CONFIG_ENV}) does not exist; "
            f"create it with: durable --config {location.path} config init"
        )
    return parse_config(_durable_table(_read(location), location) or {}, location)


def _read(location: ConfigLocation) -> dict[str, Any]:
    try:
        return tomllib.loads(location.path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{location.path}: not valid TOML: {exc}; fix the file at that line") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {location.path}: {exc}") from None


def _durable_table(data: dict[str, Any], location: ConfigLocation) -> dict[str, Any] | None:
    """The table holding durable's keys (the whole file, or ``[tool.durable]``); None if absent."""
    for depth, part in enumerate(location.table):
        data = data.get(part)  # type: ignore[assignment]
        if data is None:
            return None
        _expect(isinstance(data, dict), ConfigLocation(location.path), location.table[: depth + 1], "a table", data)
    return data


# ----------------------------------------------------------------------------- checking


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    kind = {bool: "boolean", str: "string", int: "integer", float: "float", list: "array"}.get(type(value), type(value).__name__)
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} {tomlkit.item(value).as_string()}"


def _expect(ok: bool, location: ConfigLocation, key: tuple[str, ...], expected: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{location.path}: {location.key(*key)}: expected {expected}, got {_describe(value)}")


def _known_keys(table: dict[str, Any], known: list[str], location: ConfigLocation, *parent: str) -> None:
    for key in table:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(
                f"{location.path}: unknown key {location.key(*parent, key)!r}; {hint}"
                f"expected one of: {', '.join(known)}"
            )


def _name(table: dict[str, Any], key: str, default: str, location: ConfigLocation, *parent: str) -> str:
    value = table.get(key, default)
    _expect(isinstance(value, str) and value != "", location, (*parent, key),
            f"the name of an installed {parent[0] if parent else key} plugin (a string; see: durable plugins)", value)
    return value


def parse_config(data: dict[str, Any], location: ConfigLocation) -> DurableConfig:
    """Check the durable table of a file and turn it into a ``DurableConfig``."""
    _known_keys(data, ["serializer", "storage", "executor"], location)
    storage = data.get("storage", {})
    _expect(isinstance(storage, dict), location, ("storage",), 'a table, e.g. [storage] name = "sqlite"', storage)
    _known_keys(storage, ["name", "options"], location, "storage")
    name = _name(storage, "name", DEFAULT_STORAGE, location, "storage")
    default_options = DEFAULT_STORAGE_OPTIONS if name == DEFAULT_STORAGE else {}
    options = storage.get("options", default_options)
    _expect(isinstance(options, dict), location, ("storage", "options"),
            "a table of the storage plugin's options", options)
    executor = data.get("executor", {})
    _expect(isinstance(executor, dict), location, ("executor",), "a table of executor options", executor)
    _known_keys(executor, list(EXECUTOR_OPTIONS), location, "executor")
    for key, value in executor.items():
        kind, default = EXECUTOR_OPTIONS[key]
        number = isinstance(value, kind | int) and not isinstance(value, bool)  # an int is a fine float
        _expect(number and value >= 0, location, ("executor", key),
                f"{'an integer' if kind is int else 'a number'} >= 0 (default {default!r})", value)
    return DurableConfig(
        storage=StorageConfig(name, dict(options)),
        serializer=_name(data, "serializer", "json", location),
        executor=dict(executor),
        location=location,
    )


def executor_from_config(path: str | os.PathLike[str] | None = None, **overrides: Any) -> DurableExecutor:
    """``DurableExecutor.from_config``: an executor with the storage, serializer and options of
    the configuration (see ``load_config``); keyword ``overrides`` win over the file."""
    config = load_config(path)
    try:
        return DurableExecutor(**config.executor_kwargs(**overrides))
    except ValueError as exc:
        raise ConfigError(f"{config.source}: {exc}") from None


# ----------------------------------------------------------------------------- writing


def default_config_text(table: tuple[str, ...] = ()) -> str:
    """A commented configuration with the defaults, for ``durable config init``; its keys sit
    under ``table`` (``("tool", "durable")`` in pyproject.toml)."""
    prefix = "".join(f"{part}." for part in table)
    header = f"\n[{'.'.join(table)}]" if table else ""
    storage_options = "\n".join(f"{key} = {tomlkit.item(value).as_string()}" for key, value in DEFAULT_STORAGE_OPTIONS.items())
    executor = "\n".join(f"# {name} = {default!r}" for name, (_, default) in EXECUTOR_OPTIONS.items())
    return f"""\
# durable configuration (docs/config.md). Found as: --config PATH, $DURABLE_CONFIG,
# ./durable.toml, or [tool.durable] in ./pyproject.toml. Edit it by hand or with
# `durable config set KEY VALUE`, which keeps comments and layout.
{header}
# Serializer of new payloads: "json" (built in) or an installed plugin such as "cbor".
serializer = "json"

[{prefix}storage]
# An installed storage plugin: "sqlite" (one file, any number of processes) or "memory"
# (tests). `durable plugins` lists them; `durable install NAME --use` adds and selects one.
name = "{DEFAULT_STORAGE}"

[{prefix}storage.options]
# Keyword arguments of the storage plugin (see its README); paths are relative to the
# working directory.
{storage_options}

[{prefix}executor]
# Options of DurableExecutor; uncomment a line to change its default.
{executor}
"""


def init_config(location: ConfigLocation, *, force: bool = False) -> None:
    """Write the commented defaults to ``location``: a new durable.toml, or a ``[tool.durable]``
    section appended to pyproject.toml."""
    if location.path.is_file() and not location.table and not force:
        raise ConfigError(f"{location.path} already exists; overwrite it with: durable config init --force")
    if location.table and location.path.is_file() and _durable_table(_read(location), location) is not None:
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
    return _edit(location, lambda table: _set(table, key.split("."), value))


def select_plugin(location: ConfigLocation, kind: str, name: str) -> str | None:
    """Make the file select the storage or serializer ``name`` (``durable install --use``).
    Returns a note when the previous storage's options had to go, as they belong to it."""
    note: list[str] = []

    def select(table: Any) -> None:
        if kind == "serializer":
            table["serializer"] = name
            return
        storage = table.setdefault("storage", tomlkit.table())
        if storage.get("name", DEFAULT_STORAGE) != name and "options" in storage:
            note.append(f"removed {location.key('storage', 'options')}, which were options of "
                        f"{storage.get('name', DEFAULT_STORAGE)!r}")
            del storage["options"]
        storage["name"] = name

    _edit(location, select)
    return note[0] if note else None


def _edit(location: ConfigLocation, change: typing.Callable[[Any], None]) -> DurableConfig:
    """Apply ``change`` to the durable table of the file and write it, if the result is valid."""
    has_table = location.path.is_file() and _durable_table(_read(location), location) is not None
    document = tomlkit.parse(location.path.read_text(encoding="utf-8") if has_table else _with_defaults(location))
    table: Any = document
    for part in location.table:
        table = table[part]
    change(table)
    text = tomlkit.dumps(document)
    config = parse_config(_durable_table(tomllib.loads(text), location) or {}, location)
    location.path.write_text(text, encoding="utf-8")
    return config


def _set(table: Any, parts: list[str], value: Any) -> None:
    for depth, part in enumerate(parts[:-1]):
        table = table.setdefault(part, tomlkit.table())
        if not isinstance(table, dict):
            raise ConfigError(f"cannot set {'.'.join(parts)}: {'.'.join(parts[:depth + 1])} is not a table")
    table[parts[-1]] = value
