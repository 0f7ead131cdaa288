"""Recognising our database files and bringing their schema up to date.

The numbered files in ``migrations/`` are the schema, one step each: a new database gets them
all, an existing one those it lacks. ``schema_migrations`` records every migration applied, and
the file is marked with our ``application_id`` so that a foreign SQLite file is never touched.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from durable_core.storage.contract import StorageError

APPLICATION_ID = 0x64757261
"""``PRAGMA application_id`` of our files ("dura")."""

SQLITE_HEADER = b"SQLite format 3\x00"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def _load_migrations() -> tuple[Migration, ...]:
    files = sorted(
        (f for f in (resources.files(__package__) / "migrations").iterdir() if f.name.endswith(".sql")),
        key=lambda f: f.name,
    )
    migrations = tuple(Migration(int(f.name[:4]), f.name[5:-4], f.read_text()) for f in files)
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1)), "migration numbers"
    return migrations


MIGRATIONS = _load_migrations()


def _statements(script: str) -> list[str]:
    """Split a script into statements (``executescript`` would commit our transaction)."""
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer)
            buffer = ""
    return statements


def check_header(path: Path) -> None:
    """Refuse, before SQLite opens it, a file that is not a SQLite database."""
    try:
        with path.open("rb") as file:
            header = file.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StorageError(f"Cannot open SQLite database {path}: {exc.strerror}", is_retryable=False) from exc
    if header and header != SQLITE_HEADER:
        raise StorageError(
            f"{path} is not a SQLite database (another kind of file, or a damaged one); it was "
            "left untouched. Point the sqlite storage's path at a new file, or restore the "
            "database from a backup.",
            is_retryable=False,
        )


def schema_version(conn: sqlite3.Connection, path: Path, migrations: tuple[Migration, ...]) -> int:
    """The schema version of the open database (0: empty); raises if the file is not ours or is
    newer than ``migrations``. Only reads."""
    (application_id,) = conn.execute("PRAGMA application_id").fetchone()
    (objects,) = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    if application_id == 0 and objects == 0:
        return 0
    if application_id != APPLICATION_ID:
        raise StorageError(
            f"{path} is a SQLite database that durable did not create; it was left untouched. "
            "Give the sqlite storage a file of its own.",
            is_retryable=False,
        )
    version: int
    (version,) = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
    if version > len(migrations):
        raise StorageError(
            f"{path} has schema version {version}, written by a newer durable-storage-sqlite "
            f"(this one knows versions up to {len(migrations)}); it was left untouched. Upgrade: "
            "pip install -U durable-storage-sqlite",
            is_retryable=False,
        )
    return version


def migrate(conn: sqlite3.Connection, version: int, migrations: tuple[Migration, ...] = MIGRATIONS) -> None:
    """Bring a database at ``version`` (0: empty) up to date, inside the caller's write transaction."""
    if version == 0:
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL)")
    pending = migrations[version:]
    for migration in pending:
        for statement in _statements(migration.sql):
            conn.execute(statement)
    conn.executemany(
        "INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [(m.version, m.name) for m in pending]
    )
