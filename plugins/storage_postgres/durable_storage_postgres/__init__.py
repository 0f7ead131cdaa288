"""durable's PostgreSQL storage: claims with ``FOR UPDATE SKIP LOCKED``, group commit in connection
threads, LISTEN/NOTIFY wake-ups, a versioned schema; for executors on many machines."""

from ._storage import PostgresStorage as PostgresStorage

__all__ = ["PostgresStorage"]
