"""The configuration file: where it is found, what it may contain, and the executor arguments it gives.

Discovery, first match wins: ``DURABLE_CONFIG`` (which ``durable --config PATH`` sets),
``./durable.toml``, ``[tool.durable]`` in ``./pyproject.toml``; without any, the defaults (SQLite
in ``./durable.db``, JSON). Files are read with ``tomllib`` into a ``DurableConfig``; the core only
reads them (``durable config`` edits them, in ``durable_core.cli.config_file``). Every error names
the file, the key path and the value expected. See docs/config.md.
"""

from __future__ import annotations

import difflib
import json
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, time
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .options import EXECUTOR_OPTIONS as EXECUTOR_DECLARATIONS
from .options import Option, OptionType, OptionValue
from .retention import EXPECTED as RETENTION_EXPECTED
from .retention import check_finished_after
from .schedules import Schedule, make_schedule

CONFIG_ENV = "DURABLE_CONFIG"
"""Environment variable naming the configuration file; ``durable --config PATH`` sets it, so that
``DurableExecutor.from_config()`` in the user's modules reads the same file as the command."""

CONFIG_FILE = "durable.toml"
PYPROJECT_TABLE = ("tool", "durable")

DEFAULT_STORAGE = "sqlite"
DEFAULT_STORAGE_OPTIONS: Mapping[str, Any] = MappingProxyType({"path": "durable.db"})
DEFAULT_SERIALIZER = "json"
"""What applies without any configuration: SQLite in ./durable.db, JSON. Named here only, so that
``DurableExecutor()``, ``DurableExecutor.from_config()`` without a file, every ``durable`` command
and the file ``durable config init`` writes all mean the same storage."""

EXECUTOR_OPTIONS: dict[str, tuple[OptionType, OptionValue | None]] = {
    option.name: (option.type, option.default) for option in EXECUTOR_DECLARATIONS.values()
}
"""What ``[executor]`` may set: each option's type and default (the declarations, with their
bounds and help, are ``durable_core.options.EXECUTOR_OPTIONS``)."""


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
    serializer: str = DEFAULT_SERIALIZER
    executor: Mapping[str, int | float] = field(default_factory=dict)
    """The executor options the file sets (``DurableExecutor`` keyword arguments)."""
    retention: Mapping[str, str | int | float] = field(default_factory=dict)
    """``[retention]`` as the file writes it: ``finished_after``, a duration (``"7d"``) or seconds."""
    schedules: tuple[Schedule, ...] = ()
    """``[[schedules]]``, checked; ``DurableExecutor.from_config`` defines them on the executor."""
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
        if "finished_after" in self.retention:
            kwargs["retention_finished_after"] = self.retention["finished_after"]
        if overrides.get("storage", self.storage.name) != self.storage.name:
            del kwargs["storage_options"]
        return kwargs | overrides

    def error(self, exc: Exception) -> ConfigError:
        """``exc``, raised while applying this configuration (say, by the executor it configures),
        as a ``ConfigError`` that names where the configuration comes from."""
        return ConfigError(f"{self.source}: {exc}")

    def check_storage_options(self, options: Iterable[Option]) -> None:
        """Check ``storage.options`` against the options the selected storage plugin declares.

        Reading a file loads no plugin, so this is for who has them at hand: ``durable config
        set`` before writing, ``DurableExecutor.from_config`` and every command reading the
        file, so that an option left from another storage is named with the file and the fix.
        """
        if self.location is None:
            return
        declared = {option.name: option for option in options}
        for key in self.storage.options:
            if key not in declared:
                close = difflib.get_close_matches(key, declared, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                takes = f"it takes: {', '.join(declared)}" if declared else "it takes none"
                raise ConfigError(
                    f"{self.location.path}: {self.location.key('storage', 'options', key)} is not an option of "
                    f"storage {self.storage.name!r} ({hint}{takes}); remove it with: "
                    f"durable config unset storage.options.{key}")
        _options(dict(self.storage.options), declared, self.location, "storage", "options")

    def effective(self) -> dict[str, Any]:
        """Every setting with its effective value, executor defaults included (``config show``)."""
        return {
            "serializer": self.serializer,
            "storage": {"name": self.storage.name, "options": dict(self.storage.options)},
            "executor": {name: self.executor.get(name, default) for name, (_, default) in EXECUTOR_OPTIONS.items()},
            "retention": dict(self.retention),
            "schedules": [{key: value for key, value in vars(schedule).items() if value is not None}
                          for schedule in self.schedules],
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
    if pyproject.path.is_file() and durable_table(read_toml(pyproject), pyproject) is not None:
        return pyproject
    return None


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
    return parse_config(durable_table(read_toml(location), location) or {}, location)


def read_toml(location: ConfigLocation) -> dict[str, Any]:
    """The whole file at ``location``, parsed; a ``ConfigError`` if it is unreadable or not TOML."""
    try:
        return tomllib.loads(location.path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{location.path}: not valid TOML: {exc}; fix the file at that line") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {location.path}: {exc}") from None


def durable_table(data: dict[str, Any], location: ConfigLocation) -> dict[str, Any] | None:
    """The table holding durable's keys (the whole file, or ``[tool.durable]``); None if absent."""
    for depth, part in enumerate(location.table):
        inner = data.get(part)
        if inner is None:
            return None
        _expect(isinstance(inner, dict), ConfigLocation(location.path), location.table[: depth + 1], "a table", inner)
        data = inner
    return data


# ----------------------------------------------------------------------------- checking


def _toml(value: Any) -> str:
    """``value`` as TOML would write it, for messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return f"[{', '.join(_toml(item) for item in value)}]"
    if isinstance(value, date | time):
        return value.isoformat()
    return repr(value)


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    kind = {bool: "boolean", str: "string", int: "integer", float: "float", list: "array"}.get(type(value), type(value).__name__)
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} {_toml(value)}"


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
                + (f"expected one of: {', '.join(known)}" if known else f"{location.key(*parent)} takes none")
            )


def _options(table: dict[str, Any], options: Mapping[str, Option], location: ConfigLocation,
             *parent: str) -> None:
    """Check a table of options (``[executor]``, ``[storage.options]``) against their declarations."""
    _known_keys(table, list(options), location, *parent)
    for key, value in table.items():
        _expect(options[key].accepts(value), location, (*parent, key), options[key].expected(), value)


def _name(table: dict[str, Any], key: str, default: str, location: ConfigLocation, *parent: str) -> str:
    value = table.get(key, default)
    _expect(isinstance(value, str) and value != "", location, (*parent, key),
            f"the name of an installed {parent[0] if parent else key} plugin (a string; see: durable plugins)", value)
    return str(value)


def parse_config(data: dict[str, Any], location: ConfigLocation) -> DurableConfig:
    """Check the durable table of a file and turn it into a ``DurableConfig``."""
    _known_keys(data, ["serializer", "storage", "executor", "retention", "schedules"], location)
    storage = data.get("storage", {})
    _expect(isinstance(storage, dict), location, ("storage",), 'a table, e.g. [storage] name = "sqlite"', storage)
    _known_keys(storage, ["name", "options"], location, "storage")
    name = _name(storage, "name", DEFAULT_STORAGE, location, "storage")
    options = storage.get("options", DEFAULT_STORAGE_OPTIONS if name == DEFAULT_STORAGE else {})
    _expect(isinstance(options, Mapping), location, ("storage", "options"),
            "a table of the storage plugin's options", options)
    executor = data.get("executor", {})
    _expect(isinstance(executor, dict), location, ("executor",), "a table of executor options", executor)
    _options(executor, EXECUTOR_DECLARATIONS, location, "executor")
    return DurableConfig(
        storage=StorageConfig(name, dict(options)),
        serializer=_name(data, "serializer", DEFAULT_SERIALIZER, location),
        executor=dict(executor),
        retention=_retention(data.get("retention", {}), location),
        schedules=_schedules(data.get("schedules", []), location),
        location=location,
    )


_SCHEDULE_KEYS = ["task", "cron", "input", "timezone", "id", "catch_up"]


def _schedules(entries: Any, location: ConfigLocation) -> tuple[Schedule, ...]:
    """``[[schedules]]``: each a table with ``task`` and ``cron`` (and ``input``, ``timezone``,
    ``id``, ``catch_up``), checked as ``executor.schedule`` checks them."""
    example = 'an array of tables, e.g. [[schedules]] task = "report" cron = "0 3 * * *"'
    _expect(isinstance(entries, list), location, ("schedules",), example, entries)
    schedules = []
    for index, entry in enumerate(entries):
        key = f"schedules[{index}]"
        _expect(isinstance(entry, dict), location, (key,), 'a table with task = "..." and cron = "..."', entry)
        _known_keys(entry, _SCHEDULE_KEYS, location, key)
        for required in ("task", "cron"):
            if required not in entry:
                raise ConfigError(f"{location.path}: {location.key(key, required)} is missing; each schedule names "
                                  f"its task and cron, e.g. task = \"report\" cron = \"0 3 * * *\"")
        _expect(isinstance(entry["task"], str), location, (key, "task"), "the id of a task (a string)", entry["task"])
        try:
            schedules.append(make_schedule(entry["task"], entry["cron"], entry.get("input"),
                                           entry.get("timezone", "UTC"), id=entry.get("id"),
                                           catch_up=entry.get("catch_up", "latest")))
        except ValueError as exc:
            raise ConfigError(f"{location.path}: {location.key(key)}: {exc}") from None
    return tuple(schedules)


def _retention(table: Any, location: ConfigLocation) -> dict[str, Any]:
    """``[retention]``, checked: ``finished_after`` is a duration between 1m and 100 years."""
    _expect(isinstance(table, dict), location, ("retention",), 'a table, e.g. [retention] finished_after = "7d"', table)
    _known_keys(table, ["finished_after"], location, "retention")
    if "finished_after" in table:
        try:
            valid = isinstance(table["finished_after"], str | int | float) and (
                check_finished_after(table["finished_after"]) is not None)
        except ValueError:
            valid = False
        _expect(valid, location, ("retention", "finished_after"), RETENTION_EXPECTED, table["finished_after"])
    return dict(table)
