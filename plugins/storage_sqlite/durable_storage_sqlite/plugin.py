"""Registers the ``sqlite`` storage with durable (entry-point group ``durable``), with its options."""

from __future__ import annotations

from pathlib import Path

from durable_core import Option
from durable_core.plugins import hookimpl
from durable_core.plugins.hookspecs import RegisterStorage

OPTIONS = (
    Option("path", Path, "durable.db", "The database file; created (with its schema) if missing."),
    Option("synchronous", str, "NORMAL", "PRAGMA synchronous: OFF, NORMAL (survives a crash of the process), "
                                         "FULL (survives power loss, 3-4x fewer commits per second) or EXTRA."),
    Option("busy_timeout", float, 5.0, "Seconds to wait for a write lock held by another process.", minimum=0),
    Option("busy_retries", int, 5, "Retries of a transaction that still found the database locked.", minimum=0),
    Option("max_batch_size", int, 1000, "Most calls committed in one transaction.", minimum=1),
    Option("watch_interval", float, 0.005, "Seconds between looks for other processes' commits while idle.",
           minimum=0.0001),
    Option("file_mode", int, 0o600, "Permission bits of a database file it creates (SQLite gives its -wal and "
                                    "-shm files the same); 0o600: its owner only.", minimum=0, maximum=0o777),
)
"""The keyword arguments of ``SqliteStorage.open``, which checks them with these declarations."""


@hookimpl
def durable_register_storages(register: RegisterStorage) -> None:
    """``sqlite``: ``open_storage("sqlite", path="durable.db", **tuning)``; see the README."""
    from ._storage import SqliteStorage  # here, not above: it reads OPTIONS from this module

    register("sqlite", SqliteStorage.open, options=OPTIONS)
