"""Registers the ``sqlite`` storage with durable (entry-point group ``durable``)."""

from __future__ import annotations

from collections.abc import Callable

from durable_core.plugins import hookimpl
from durable_core.plugins.hookspecs import StorageFactory

from ._storage import SqliteStorage


@hookimpl
def durable_register_storages(register: Callable[[str, StorageFactory], None]) -> None:
    """``sqlite``: ``open_storage("sqlite", path="durable.db", **tuning)``; see the README."""
    register("sqlite", SqliteStorage.open)
