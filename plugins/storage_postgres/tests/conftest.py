"""Runs ``async def`` tests with ``trio.run`` on the real clock (the storage works in threads and
on a server, which an autojumping ``MockClock`` would not wait for), against the test server
named by ``DURABLE_TEST_POSTGRES_DSN``, each test in a schema of its own."""

from __future__ import annotations

import functools
import inspect
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
import trio
from psycopg import sql
from psycopg.conninfo import make_conninfo

from durable_storage_postgres import PostgresStorage
from durable_storage_postgres.testing import scratch_schema, test_dsn

TEST_TIMEOUT = 60.0
HERE = Path(__file__).parent


def _in_trio(test: Callable[..., Any]) -> Callable[..., None]:
    @functools.wraps(test)
    def run(**kwargs: Any) -> None:
        async def bounded() -> None:
            with trio.fail_after(TEST_TIMEOUT):
                await test(**kwargs)

        trio.run(bounded)

    return run


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Only this folder's tests (the hook sees the whole session's)."""
    for item in items:
        here = item.path.is_relative_to(HERE)
        if here and isinstance(item, pytest.Function) and inspect.iscoroutinefunction(item.obj):
            item.obj = _in_trio(item.obj)


@pytest.fixture
def dsn() -> str:
    return test_dsn()


@pytest.fixture
def scratch_database(dsn: str) -> Iterator[str]:
    """The DSN of a new, empty database on the test server, dropped afterwards."""
    name = f"scratch_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(dsn, dbname=name)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def schema(dsn: str) -> Iterator[str]:
    with scratch_schema(dsn) as name:
        yield name


Opener = Callable[..., AbstractAsyncContextManager[PostgresStorage]]


@pytest.fixture
def postgres(dsn: str, schema: str) -> Opener:
    """``async with postgres(**options) as storage``: the test's schema, closed afterwards."""

    @asynccontextmanager
    async def opened(**options: Any) -> AsyncIterator[PostgresStorage]:
        storage = await PostgresStorage.open(options.pop("dsn", dsn), **{"schema": schema, **options})
        try:
            yield storage
        finally:
            await storage.aclose()

    return opened
