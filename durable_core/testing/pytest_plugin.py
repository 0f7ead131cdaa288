"""Runs ``async def`` tests under trio with a virtual clock (no pytest-trio needed).

Each test runs in ``trio.run`` on ``trio.testing.MockClock(autojump_threshold=0)`` (the ``clock``
fixture's, when the test asks for it), so sleeps, timeouts, retries and leases take no real time.
Tests marked ``real_clock`` run on trio's real clock: code in worker threads (plain ``def`` tasks)
does not stop an autojumping clock from jumping.

The core's tests take these hooks into ``tests/conftest.py``; the conformance suite's plugin runs
its checks with ``run_trio_test``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.abc
import trio.testing

REAL_CLOCK = "real_clock"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{REAL_CLOCK}: run this trio test on the real clock")


def virtual_clock() -> trio.testing.MockClock:
    """A clock that jumps to the next deadline as soon as every task waits."""
    return trio.testing.MockClock(autojump_threshold=0)


@pytest.fixture
def clock() -> trio.testing.MockClock:
    """The virtual clock the test runs on, for the test to read or adjust."""
    return virtual_clock()


def fixture_values(item: pytest.Function) -> dict[str, object]:
    """The test function's arguments: the values of the fixtures it names."""
    return {name: item.funcargs[name] for name in inspect.signature(item.obj).parameters if name in item.funcargs}


def run_trio_test(item: pytest.Function, main: Callable[[], Awaitable[object]] | None = None) -> None:
    """Run the ``async def`` test ``item`` under trio, or ``main`` in its place (a runner that does
    more inside the run calls the test itself), on the clock this module's docstring describes."""
    arguments = fixture_values(item)
    run_trio(main or functools.partial(item.obj, **arguments), _clock(item, arguments))


def run_trio(test: Callable[[], Awaitable[object]], clock: trio.abc.Clock | None) -> None:
    """``trio.run(test)``, with Ctrl-C stopping the session: trio raises it in whatever task runs
    when it arrives, and inside a nursery it comes out in an exception group, which pytest would
    count as this test failing and go on to the next; re-raised bare, it stops the session."""
    try:
        trio.run(test, clock=clock)
    except BaseExceptionGroup as group:
        if group.subgroup(KeyboardInterrupt) is not None:
            raise KeyboardInterrupt from group
        raise


def _clock(item: pytest.Function, arguments: dict[str, object]) -> trio.abc.Clock | None:
    if item.get_closest_marker(REAL_CLOCK):
        return None
    chosen = arguments.get("clock")
    return chosen if isinstance(chosen, trio.abc.Clock) else virtual_clock()


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    run_trio_test(pyfuncitem)
    return True
