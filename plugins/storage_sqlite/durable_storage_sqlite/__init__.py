"""durable's SQLite storage: WAL, group commit in one connection thread, versioned schema, safe
for several processes on one file."""

from ._storage import SqliteStorage as SqliteStorage

__all__ = ["SqliteStorage"]
