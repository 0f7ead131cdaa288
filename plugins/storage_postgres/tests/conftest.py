"""Runs ``async def`` tests with ``trio.run`` on the real clock (the storage works in threads and
on a server, which an autojumping ``MockClock`` would not wait for), against the test server
named by ``DURABLE_TEST_POSTGRES_DSN``, each test in a schema of its own."""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

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
