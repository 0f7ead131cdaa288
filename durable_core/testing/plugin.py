"""The pytest plugin for users' tests (entry point ``pytest11``: ``durable``), see docs/testing.md.

Fixtures: ``durable`` (a ``DurableTestKit``: a fresh storage, executors on it, run helpers) and
``durable_clock`` (the test's virtual clock). An ``async def`` test that uses either, or is
marked ``durable``, runs under trio on that clock; other async tests are left to whichever plugin
runs them (pytest-trio, anyio, pytest-asyncio). The storage is memory unless ``--durable-storage``
(or the ini option ``durable_storage``) names another, with ``--durable-storage-option KEY=VALUE``.
"""

from __future__ import annotations

import inspect
import os
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from ..plugins.manager import default_registry
from ..storage.opening import parse_option
from .kit import DurableTestKit
from .pytest_plugin import fixture_values, run_trio, virtual_clock

MARKER = "durable"
POSTGRES_DSN_VARIABLE = "DURABLE_TEST_POSTGRES_DSN"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("durable", "durable: storage for the durable fixture")
    group.addoption("--durable-storage", default=None, metavar="NAME",
                    help="storage of the `durable` fixture: memory (default), sqlite, postgres or any installed one")
    group.addoption("--durable-storage-option", action="append", default=[], metavar="KEY=VALUE",
                    help="an option of that storage (repeatable); sqlite gets a fresh file per test, "
                         f"postgres a fresh schema per test on ${POSTGRES_DSN_VARIABLE} unless given")
    parser.addini("durable_storage", "storage of the `durable` fixture (see --durable-storage)", default="memory")


STORAGE_OPTIONS = pytest.StashKey[dict[str, Any]]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}: run this async test under trio on the durable virtual clock")
    config.stash[STORAGE_OPTIONS] = _parse_options(config.getoption("--durable-storage-option") or [])


@pytest.fixture
def durable_clock() -> trio.testing.MockClock:
    """The virtual clock a durable test runs on: it jumps to the next deadline when all wait."""
    return virtual_clock()


@pytest.fixture
def durable(request: pytest.FixtureRequest, tmp_path: Path,
            durable_clock: trio.testing.MockClock) -> Iterator[DurableTestKit]:
    """A fresh storage for this test, and the helpers that run executors on it."""
    config = request.config
    name = config.getoption("--durable-storage") or config.getini("durable_storage")
    options = config.stash[STORAGE_OPTIONS]
    with ExitStack() as cleanup:
        yield DurableTestKit(*_fresh_storage(str(name), options, tmp_path, cleanup), durable_clock)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    uses_durable = {"durable", "durable_clock"} & set(pyfuncitem.fixturenames)
    if not inspect.iscoroutinefunction(pyfuncitem.obj) or not (uses_durable or pyfuncitem.get_closest_marker(MARKER)):
        return None
    clock = pyfuncitem.funcargs.get("durable_clock")
    test = pyfuncitem.obj
    arguments = fixture_values(pyfuncitem)
    run_trio(lambda: test(**arguments), clock if isinstance(clock, trio.abc.Clock) else virtual_clock())
    return True


def _parse_options(pairs: list[str]) -> dict[str, Any]:
    try:
        return dict(parse_option(pair) for pair in pairs)
    except ValueError as exc:
        raise pytest.UsageError(f"--durable-storage-option: {exc}") from None


def _fresh_storage(name: str, options: dict[str, Any], tmp_path: Path,
                   cleanup: ExitStack) -> tuple[Any, dict[str, Any]]:
    """The storage of one test, as ``(storage, options)``: nothing another test wrote is in it."""
    if name == "memory":  # one object, which every executor of the test shares
        return default_registry().storage_factory("memory")(**options), {}
    if name == "sqlite":
        return name, {"path": str(tmp_path / "durable.db"), **options}
    if name == "postgres" and "schema" not in options:
        from durable_storage_postgres.testing import scratch_schema  # only if chosen: a plugin

        dsn = options.get("dsn") or os.environ.get(POSTGRES_DSN_VARIABLE)
        if not dsn:
            raise pytest.UsageError(f"--durable-storage postgres needs --durable-storage-option dsn=... "
                                    f"or ${POSTGRES_DSN_VARIABLE}")
        schema = cleanup.enter_context(scratch_schema(dsn, f"durable_test_{uuid.uuid4().hex[:6]}"))
        return name, {**options, "dsn": dsn, "schema": schema}
    return name, options
