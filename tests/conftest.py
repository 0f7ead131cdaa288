"""Runs ``async def`` tests under trio with a virtual clock (no pytest-trio needed).

Tests marked ``real_clock`` run on trio's real clock: code in worker threads (plain ``def``
tasks) does not stop an autojumping clock from jumping.
"""

import functools
import inspect

import pytest
import trio
import trio.testing


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "real_clock: run this trio test on the real clock")


@pytest.fixture
def clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    kwargs = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    if pyfuncitem.get_closest_marker("real_clock"):
        trio.run(functools.partial(pyfuncitem.obj, **kwargs))
    else:
        clock = kwargs.get("clock") or trio.testing.MockClock(autojump_threshold=0)
        trio.run(functools.partial(pyfuncitem.obj, **kwargs), clock=clock)
    return True
