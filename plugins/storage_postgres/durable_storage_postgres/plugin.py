"""Registers the ``postgres`` storage with durable (entry-point group ``durable``), with its options.

psycopg is imported only when a postgres storage is opened (or its factory's signature is looked
at): importing it costs every durable process ~120 ms and ~11 MB, used or not.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from durable_core import Option
from durable_core.plugins import hookimpl
from durable_core.plugins.hookspecs import RegisterStorage

OPTIONS = (
    Option("dsn", str, None, "Required: a libpq connection string or URI, e.g. postgresql://durable@db/app."),
    Option("schema", str, "durable", "The schema holding durable's tables (created if missing); a lowercase identifier."),
    Option("pool_size", int, 1, "Connection threads committing calls side by side.", minimum=1),
    Option("max_batch_size", int, 1000, "Most calls committed in one transaction.", minimum=1),
    Option("connect_timeout", float, 10.0, "Seconds to wait for the server when connecting.", minimum=1),
    Option("notify", bool, True, "LISTEN/NOTIFY for others' writes (the change feed)."),
    Option("max_retries", int, 5, "Runs again of a transaction aborted as a deadlock or serialization failure.",
           minimum=0),
    Option("application_name", str, "durable", "Shown in pg_stat_activity."),
)
"""The keyword arguments of ``PostgresStorage.open``, which checks them with these declarations."""


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
def durable_register_storages(register: RegisterStorage) -> None:
    """``postgres``: ``open_storage("postgres", dsn="postgresql://...", **tuning)``; see the README."""
    register("postgres", _OpenPostgres(), options=OPTIONS)
