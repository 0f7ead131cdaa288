"""Guards on the suite's own shape: mixins, names, coverage of the contract's operations."""

from __future__ import annotations

import inspect

from durable_conformance import BEHAVIOURS, StorageConformance
from durable_conformance.checks_robustness import _ATOMIC_OPERATIONS
from durable_conformance.marks import CAPABILITIES, required_capabilities
from durable_conformance.suite import ConformanceFixtures, conformance_checks

from durable_core.storage.contract import STORAGE_METHODS, Capabilities


def test_behaviours_are_mixins_that_pytest_does_not_collect_alone() -> None:
    for mixin in BEHAVIOURS:
        assert not mixin.__name__.startswith("Test"), mixin
        assert not issubclass(mixin, ConformanceFixtures)
    assert StorageConformance.__mro__[1:1 + len(BEHAVIOURS)] == BEHAVIOURS


def test_every_check_has_one_name_is_async_and_documented_by_its_mixin() -> None:
    names = [name for mixin in BEHAVIOURS for name in vars(mixin) if name.startswith("test")]
    assert len(names) == len(set(names)), "two mixins define a check of the same name"
    assert set(names) == set(conformance_checks())
    for name, mixin in conformance_checks().items():
        assert inspect.iscoroutinefunction(getattr(mixin, name)), name
        assert mixin.__doc__, mixin


def test_only_declared_capabilities_make_a_check_optional() -> None:
    assert CAPABILITIES == ("persistent", "multi_process", "change_notifications", "routing", "concurrency_limits",
                            "rate_limits")
    optional = {name: required_capabilities(getattr(mixin, name))[0]
                for name, mixin in conformance_checks().items() if required_capabilities(getattr(mixin, name))[0]}
    assert set(optional.values()) <= {("persistent",), ("multi_process",), ("change_notifications", "multi_process"),
                                      ("routing",), ("routing", "concurrency_limits"), ("routing", "rate_limits")}
    assert all(hasattr(Capabilities(), c) for caps in optional.values() for c in caps)
    # nearly everything is required: routing, limits and rates are optional for older backends
    assert len(optional) * 8 <= len(conformance_checks())


def test_every_operation_is_checked_for_checkpoints_and_cancellation() -> None:
    writes = set(STORAGE_METHODS) - {"get_executions", "get_executions_by_sleeping_unique_id", "list_executions",
                                      "find_revoked_leases", "list_executors"}
    assert set(_ATOMIC_OPERATIONS) == writes
