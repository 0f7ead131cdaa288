"""Registers the ``postgres`` storage with durable (entry-point group ``durable``).

psycopg is imported only when a postgres storage is opened (or its options are looked at):
importing it costs every durable process ~120 ms and ~11 MB, used or not.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from durable_core.plugins import hookimpl
from durable_core.plugins.hookspecs import StorageFactory


class _OpenPostgres:
    """``PostgresStorage.open``, imported on first use; its signature is the real one."""

    @staticmethod
    def _open() -> Callable[..., Any]:
        from ._storage import PostgresStorage

        return PostgresStorage.open

    @property
    def __signature__(self) -> inspect.Signature:
        return inspect.signature(self._open())

    def __call__(self, *args: Any, **options: Any) -> Any:
        return self._open()(*args, **options)


@hookimpl
def durable_register_storages(register: Callable[[str, StorageFactory], None]) -> None:
    """``postgres``: ``open_storage("postgres", dsn="postgresql://...", **tuning)``; see the README."""
    register("postgres", _OpenPostgres())
