"""durable's PostgreSQL storage: claims with ``FOR UPDATE SKIP LOCKED``, group commit in connection
threads, LISTEN/NOTIFY wake-ups, a versioned schema; for executors on many machines."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._storage import PostgresStorage as PostgresStorage

__all__ = ["PostgresStorage"]


def __getattr__(name: str) -> Any:
    """``PostgresStorage`` on first use, so that loading the plugin does not import psycopg."""
    if name == "PostgresStorage":
        from ._storage import PostgresStorage

        return PostgresStorage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
