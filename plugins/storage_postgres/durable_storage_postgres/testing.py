"""For tests against a real server: the DSN from the environment, and throwaway schemas.

``DURABLE_TEST_POSTGRES_DSN`` names the server (``plugins/storage_postgres/test-server.sh start``
starts a throwaway one and prints it). Without it tests skip, saying how to start one; with
``CI=true`` they fail instead, so that CI never passes by skipping them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

DSN_VARIABLE = "DURABLE_TEST_POSTGRES_DSN"
HOW_TO_START = (
    f"no PostgreSQL server for tests: set {DSN_VARIABLE}, e.g. run "
    f'eval "$(plugins/storage_postgres/test-server.sh start)" (needs the postgresql server package)'
)


def test_dsn() -> str:
    """The test server's DSN; skips the calling test without one (fails it when ``CI=true``)."""
    import pytest

    dsn = os.environ.get(DSN_VARIABLE)
    if dsn:
        return dsn
    if os.environ.get("CI") == "true":
        pytest.fail(f"{HOW_TO_START}; CI must run the PostgreSQL tests, never skip them", pytrace=False)
    pytest.skip(HOW_TO_START)


test_dsn.__test__ = False  # type: ignore[attr-defined]  # not a test, whatever pytest thinks of its name


@contextmanager
def scratch_schema(dsn: str, prefix: str = "test") -> Iterator[str]:
    """A schema name no one uses yet; the schema, if the block created it, is dropped after it."""
    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    try:
        yield name
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
