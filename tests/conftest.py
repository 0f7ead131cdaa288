"""The core's tests run ``async def`` tests under trio in virtual time, tests marked ``real_clock``
on the real clock: the runner is ``durable_core.testing.pytest_plugin``, whose hooks and ``clock``
fixture are taken in here so that they apply to this folder only.

The ``shared_storage`` fixture runs an engine-level test once on each storage: memory, SQLite and
PostgreSQL (which skips without ``DURABLE_TEST_POSTGRES_DSN``, and fails with ``CI=true``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, nullcontext
from pathlib import Path
from typing import Any

import pytest
import trio

from durable_core import DurableExecutor
from durable_core.clock import Clock
from durable_core.storage.contract import Storage
from durable_core.storage.opening import open_storage
from durable_core.testing.pytest_plugin import clock, pytest_configure, pytest_pyfunc_call
from durable_storage_memory import MemoryStorage

__all__ = ["clock", "pytest_configure", "pytest_pyfunc_call", "shared_storage", "wall_phase"]


class SharedStorage:
    """One test's storage, fresh for the test. Executors made by ``executor`` and storages opened
    by ``open`` share its data as separate processes would: on SQLite and PostgreSQL each opens
    its own connection to the same file or schema; on memory all use one object."""

    LONG_WAITS: dict[str, Any] = dict(poll_interval=300, lease_duration=600, heartbeat_interval=200)
    """Executor options for hours of virtual time: the engine polls its storage every
    ``poll_interval`` (four calls a round) and beats every ``heartbeat_interval``, and on a real
    storage each call costs real time; its own changes wake it at once meanwhile."""

    def __init__(self, name: str, options: dict[str, Any]):
        self.name = name
        """``memory``, ``sqlite`` or ``postgres``: the test's parameter."""
        self.options = options
        self._memory = MemoryStorage() if name == "memory" else None

    def __repr__(self) -> str:
        return f"<SharedStorage {self.name}>"

    def executor(self, **options: Any) -> DurableExecutor:
        """A new executor on the test's storage; it opens the storage when it starts."""
        if self._memory is not None:
            return DurableExecutor(self._memory, **options)
        return DurableExecutor(self.name, storage_options=self.options, **options)

    def open(self) -> AbstractAsyncContextManager[Storage]:
        """``async with shared_storage.open() as storage``: the test's storage, to read or change
        it beside the executors, or after they stopped (memory: the object they use)."""
        if self._memory is not None:
            return nullcontext(self._memory)
        return open_storage(self.name, **self.options)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def shared_storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SharedStorage]:
    """A fresh storage for the test on each of memory, SQLite and PostgreSQL (a scratch schema)."""
    if request.param == "memory":
        yield SharedStorage("memory", {})
    elif request.param == "sqlite":
        yield SharedStorage("sqlite", {"path": str(tmp_path / "durable.db")})
    else:
        from durable_storage_postgres.testing import scratch_schema, test_dsn

        dsn = test_dsn()
        with scratch_schema(dsn) as schema:
            yield SharedStorage("postgres", {"dsn": dsn, "schema": schema})


@pytest.fixture
def wall_phase() -> Callable[[float, float], Awaitable[None]]:
    """``await wall_phase(period, offset)``: sleep (virtually) until the engine's clock reads
    ``offset`` seconds past a multiple of ``period``. Under a MockClock the engine's clock starts
    at the real time, so a test that counts cron ticks or retention turns aligns first, or it
    would depend on the second it runs at."""

    async def align(period: float, offset: float) -> None:
        await trio.sleep((offset - Clock().now()) % period)

    return align
