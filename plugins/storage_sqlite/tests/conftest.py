"""Runs ``async def`` tests with ``trio.run`` on the real clock (the storage works in a thread,
which an autojumping ``MockClock`` would not wait for), and opens storages."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from durable_storage_sqlite import SqliteStorage

TEST_TIMEOUT = 60.0


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    kwargs = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}

    async def run() -> None:
        with trio.fail_after(TEST_TIMEOUT):
            await pyfuncitem.obj(**kwargs)

    trio.run(run)
    return True


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "durable.db"


Opener = Callable[..., AbstractAsyncContextManager[SqliteStorage]]


@pytest.fixture
def sqlite(path: Path) -> Opener:
    """``async with sqlite(**options) as storage``: the storage at ``path``, closed afterwards."""

    @asynccontextmanager
    async def opened(**options: Any) -> AsyncIterator[SqliteStorage]:
        storage = await SqliteStorage.open(path, **options)
        try:
            yield storage
        finally:
            await storage.aclose()

    return opened
