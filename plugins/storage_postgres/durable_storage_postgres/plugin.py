"""Registers the ``postgres`` storage with durable (entry-point group ``durable``)."""

from __future__ import annotations

from collections.abc import Callable

from durable_core.plugins import hookimpl
from durable_core.plugins.hookspecs import StorageFactory

from ._storage import PostgresStorage


@hookimpl
def durable_register_storages(register: Callable[[str, StorageFactory], None]) -> None:
    """``postgres``: ``open_storage("postgres", dsn="postgresql://...", **tuning)``; see the README."""
    register("postgres", PostgresStorage.open)
