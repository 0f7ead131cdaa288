"""Recognising our schema and bringing it up to date.

Every table lives in one PostgreSQL schema of its own (the storage option ``schema``). The numbered
files in ``migrations/`` build it; ``schema_migrations`` records those applied and carries a
comment that marks the schema as ours, so that tables durable did not create are never touched.
Opening takes a transaction-level advisory lock, so that executors starting together migrate once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import psycopg
from psycopg import sql

from durable_core.storage.contract import StorageError

MARKER = "durable-storage-postgres schema"
"""The comment on ``schema_migrations`` that marks a schema as created by this storage."""


@dataclass(frozen=True, slots=True)
class Migration:
    """``migrations/NNNN_name.sql``: version ``NNNN`` (from 1, no gaps) and the SQL script."""

    version: int
    name: str
    sql: str


_MIGRATION_FILE = re.compile(r"(\d{4})_(\w+)\.sql")


def _load_migrations() -> tuple[Migration, ...]:
    found = {}
    for entry in (resources.files(__package__) / "migrations").iterdir():
        if match := _MIGRATION_FILE.fullmatch(entry.name):
            found[int(match[1])] = Migration(int(match[1]), match[2], entry.read_text())
    assert sorted(found) == list(range(1, len(found) + 1)), f"migrations are numbered 1..n: {sorted(found)}"
    return tuple(found[version] for version in sorted(found))


MIGRATIONS = _load_migrations()

_OBJECTS = """
SELECT count(*) FILTER (WHERE c.relname = 'schema_migrations'
                          AND obj_description(c.oid, 'pg_class') = %(marker)s),
       count(*) FILTER (WHERE c.relname = 'executions' AND c.relkind = 'r'),
       count(*)
FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s"""


def schema_version(conn: psycopg.Connection, schema: str, where: str,
                   migrations: tuple[Migration, ...] = MIGRATIONS) -> int:
    """The version of ``schema`` (0: absent or empty); raises, touching nothing, if the schema holds
    tables durable did not create, is newer than ``migrations``, or is damaged. Only reads."""
    [(marked, executions, objects)] = conn.execute(_OBJECTS, {"marker": MARKER, "schema": schema}).fetchall()
    if objects == 0:
        return 0
    if not marked:
        raise StorageError(
            f"Schema {schema!r} of {where} holds tables that durable did not create; it was left "
            "untouched. Give the postgres storage a schema of its own (storage option schema).",
            is_retryable=False,
        )
    table = sql.Identifier(schema, "schema_migrations")
    version: int
    [(version,)] = conn.execute(sql.SQL("SELECT coalesce(max(version), 0) FROM {}").format(table)).fetchall()
    if version > len(migrations):
        raise StorageError(
            f"Schema {schema!r} of {where} has schema version {version}, written by a newer "
            f"durable-storage-postgres (this one knows versions up to {len(migrations)}); it was left "
            "untouched. Upgrade: pip install -U durable-storage-postgres",
            is_retryable=False,
        )
    if not executions:
        raise StorageError(
            f"Schema {schema!r} of {where} is damaged: it records schema version {version} but has no "
            "executions table; it was left untouched. Restore it from a backup, or use a new schema.",
            is_retryable=False,
        )
    return version


def migrate(conn: psycopg.Connection, schema: str, version: int,
            migrations: tuple[Migration, ...] = MIGRATIONS) -> None:
    """Apply the migrations after ``version`` to ``schema``, inside the caller's transaction."""
    name = sql.Identifier(schema)
    if version == 0:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(name))
        conn.execute(sql.SQL("CREATE TABLE {}.schema_migrations (version integer PRIMARY KEY, name text NOT NULL)")
                     .format(name))
        conn.execute(sql.SQL("COMMENT ON TABLE {}.schema_migrations IS {}").format(name, sql.Literal(MARKER)))
    conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(name))
    for migration in migrations[version:]:
        conn.execute(migration.sql)  # a script without parameters: sent by the simple query protocol
        conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                     (migration.version, migration.name))


def open_schema(conn: psycopg.Connection, schema: str, where: str) -> None:
    """Create or migrate ``schema`` in one transaction; concurrent openers wait for each other."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"durable-storage-postgres:{schema}",))
        version = schema_version(conn, schema, where)
        if version < len(MIGRATIONS):
            migrate(conn, schema, version)
