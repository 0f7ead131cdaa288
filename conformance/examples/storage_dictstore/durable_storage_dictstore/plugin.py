"""Registers the ``dictstore`` storage with durable (entry-point group ``durable``)."""

from __future__ import annotations

from pathlib import Path

from durable_core import Option
from durable_core.plugins import hookimpl
from durable_core.plugins.hookspecs import RegisterStorage

from ._storage import open_dictstore

OPTIONS = (
    Option("path", Path, None, "A snapshot file kept across close and reopen; without it, nothing outlives the storage."),
)
"""The keyword arguments of ``open_dictstore``."""


@hookimpl
def durable_register_storages(register: RegisterStorage) -> None:
    """``dictstore``: ``open_storage("dictstore", path=None)``; with ``path``, a snapshot file."""
    register("dictstore", open_dictstore, options=OPTIONS)
