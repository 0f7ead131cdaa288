"""Registers the ``dictstore`` storage with durable (entry-point group ``durable``)."""

from __future__ import annotations

from collections.abc import Callable

from durable_core.plugins import hookimpl
from durable_core.plugins.hookspecs import StorageFactory

from ._storage import open_dictstore


@hookimpl
def durable_register_storages(register: Callable[[str, StorageFactory], None]) -> None:
    """``dictstore``: ``open_storage("dictstore", path=None)``; with ``path``, a snapshot file."""
    register("dictstore", open_dictstore)
