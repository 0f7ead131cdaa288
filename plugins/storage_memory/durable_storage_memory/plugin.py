"""Registers the ``memory`` storage with durable (entry-point group ``durable``)."""

from __future__ import annotations

from collections.abc import Callable

from durable_core.plugins import hookimpl
from durable_core.plugins.hookspecs import StorageFactory

from .storage import MemoryStorage


@hookimpl
def durable_register_storages(register: Callable[[str, StorageFactory], None]) -> None:
    """``memory``: ``open_storage("memory")``; it takes no options."""
    register("memory", MemoryStorage)
