"""Registers the ``memory`` storage with durable (entry-point group ``durable``)."""

from __future__ import annotations

from durable_core.plugins import hookimpl
from durable_core.plugins.hookspecs import RegisterStorage

from .storage import MemoryStorage


@hookimpl
def durable_register_storages(register: RegisterStorage) -> None:
    """``memory``: ``open_storage("memory")``; it takes no options."""
    register("memory", MemoryStorage, options=[])
