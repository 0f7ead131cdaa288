"""The pytest plugin of the conformance suite: ``pytest_plugins = ["durable_conformance.plugin"]``.

It does four things, for subclasses of ``StorageConformance`` only (other tests are left alone):

* runs each ``async def`` check with the core's trio test runner, in virtual time
  (``MockClock(autojump_threshold=0)``, no pytest-trio needed), opening the storages the check asks
  for inside that run and closing them after it, with a watchdog in real time
  (``conformance_timeout``);
* skips a check that needs an optional capability the storage lacks, naming the capability;
* turns each entry of ``known_failures`` into a strict ``xfail``;
* refuses to let a required check be skipped or overridden: it must pass, or be declared a known
  failure, which stays visible in every report.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Generator
from typing import Any

import pytest
import trio

from durable_core.storage.contract import Capabilities
from durable_core.testing.pytest_plugin import fixture_values, run_trio_test

from .marks import REQUIRES_MARK, required_capabilities
from .opening import ConformanceSetupError, DeferredStorage, StorageOpener
from .suite import ConformanceFixtures, conformance_checks

_NOT_SKIPPABLE = (
    "{name} is a required conformance check: it cannot be skipped. Make it pass, or declare it in "
    "known_failures (a strict xfail that stays visible); see docs/conformance.md"
)
_OVERRIDDEN = (
    "{cls}.{name} overrides the conformance check of the same name from {mixin}; checks cannot be "
    "replaced. Declare it in known_failures instead (a strict xfail); see docs/conformance.md"
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{REQUIRES_MARK}(*capabilities): a conformance check of an optional feature; skipped, naming "
        "the capability, when the storage's Capabilities lack it",
    )


def _check_class(item: pytest.Item) -> type[ConformanceFixtures] | None:
    """The test class of a conformance check; None for any other test."""
    cls = getattr(item, "cls", None)
    return cls if isinstance(cls, type) and issubclass(cls, ConformanceFixtures) else None


def _is_check(item: pytest.Item) -> bool:
    return _check_class(item) is not None


def _check_name(item: pytest.Item) -> str:
    return getattr(item, "originalname", None) or item.name


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    checks = conformance_checks()
    for cls in {cls for item in items if (cls := _check_class(item)) is not None}:
        declared = cls.known_failures or {}
        unknown = [test_id for test_id in declared if test_id.partition("[")[0] not in checks]
        if unknown:
            raise pytest.UsageError(
                f"{cls.__qualname__}.known_failures names no conformance check: {', '.join(sorted(unknown))} "
                "(a test id is a check's name, optionally with its parameters, e.g. "
                "'test_every_operation_is_a_checkpoint[claim_executions-empty]')"
            )
    for item in items:
        cls = _check_class(item)
        if cls is None:
            continue
        capabilities, why = required_capabilities(getattr(item, "function", None))
        if capabilities:
            item.add_marker(getattr(pytest.mark, REQUIRES_MARK)(*capabilities, why=why))
        declared = cls.known_failures or {}
        reason = declared.get(item.name, declared.get(_check_name(item)))
        if reason is not None:
            item.add_marker(pytest.mark.xfail(strict=True, reason=f"known failure: {reason}"))


def pytest_runtest_setup(item: pytest.Item) -> None:
    cls = _check_class(item)
    if cls is None:
        return
    name = _check_name(item)
    mixin = conformance_checks().get(name)
    if mixin is not None and getattr(cls, name) is not getattr(mixin, name):
        raise ConformanceSetupError(_OVERRIDDEN.format(cls=cls.__qualname__, name=name, mixin=mixin.__qualname__))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if not (_is_check(item) and report.skipped) or hasattr(report, "wasxfail"):
        return report
    if item.get_closest_marker(REQUIRES_MARK) is not None or _check_name(item) not in conformance_checks():
        return report  # an optional check, or a test of the backend author's own
    # a required check: a skip from the check itself, or from a skip mark, is a failure; a fixture
    # that skips because its environment is missing (no database server) is not
    by_mark = item.get_closest_marker("skip") is not None or item.get_closest_marker("skipif") is not None
    if report.when == "call" or by_mark:
        report.outcome = "failed"
        report.longrepr = _NOT_SKIPPABLE.format(name=item.name)
    return report


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not _is_check(pyfuncitem) or not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    run_check(pyfuncitem)
    return True


def _capability_skip(item: pytest.Item, capabilities: Capabilities) -> str | None:
    for mark in item.iter_markers(REQUIRES_MARK):
        for name in mark.args:
            if not getattr(capabilities, name):
                why = mark.kwargs.get("why", "")
                return (f"storage lacks capability {name!r} (Capabilities.{name}=False)"
                        + (f": {why}" if why else ""))
    return None


def run_check(item: pytest.Function) -> None:
    """Run the ``async def`` check ``item`` in virtual time, with its storages opened in the run."""
    kwargs = fixture_values(item)
    opener = item.funcargs["storages"]
    assert isinstance(opener, StorageOpener)
    timeout = max(float(getattr(item.cls, "conformance_timeout", 120.0)),
                  getattr(item.function, "minimum_timeout", 0.0))
    outcome: dict[str, Any] = {}

    async def main() -> None:
        token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as watchdog:
            def expire() -> None:
                try:
                    token.run_sync_soon(watchdog.cancel)
                except trio.RunFinishedError:
                    pass

            timer = threading.Timer(timeout, expire)
            timer.daemon = True
            timer.start()
            try:
                skip = None
                if item.get_closest_marker(REQUIRES_MARK) is not None:
                    skip = _capability_skip(item, await opener.capabilities())
                if skip is not None:
                    outcome["skip"] = skip
                    return
                for name, value in kwargs.items():
                    if isinstance(value, DeferredStorage):
                        kwargs[name] = await value.opener.open()
                await item.obj(**kwargs)
            finally:
                timer.cancel()
                await opener.aclose()
        if watchdog.cancelled_caught:
            outcome["timed_out"] = True

    run_trio_test(item, main)
    if "skip" in outcome:
        pytest.skip(outcome["skip"])
    if outcome.get("timed_out"):
        pytest.fail(f"{item.name} did not finish within {timeout:g} s of real time "
                    "(raise conformance_timeout on the test class if the storage is slow)")


__all__ = ["run_check"]
