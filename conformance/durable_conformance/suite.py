"""``StorageConformance``: every behaviour mixin of the suite, and the fixtures they share."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, ClassVar

import pytest

from .checks_operations import OPERATION_CHECKS
from .checks_robustness import ROBUSTNESS_CHECKS
from .checks_transitions import TRANSITION_CHECKS
from .opening import (
    ConformanceSetupError,
    DeferredStorage,
    StorageFactory,
    StorageOpener,
)
from .scenarios import ExecutorScenarios
from .stateful import StateMachineChecks

PLUGIN = "durable_conformance.plugin"


class ConformanceFixtures:
    """What a backend author configures, and the fixtures every check uses.

    Override ``storage_factory`` (a fixture returning a callable that opens the storage; see
    ``durable_conformance.opening``). Optionally set ``known_failures``, ``conformance_timeout``
    and ``hypothesis_settings`` on the subclass.
    """

    known_failures: ClassVar[Mapping[str, str]] = {}
    """Test id (a check's name, optionally with parameters) -> why it fails: a strict xfail."""
    conformance_timeout: ClassVar[float] = 120.0
    """Real seconds one check may take before it fails as hung."""
    hypothesis_settings: ClassVar[Mapping[str, Any]] = {}
    """Overrides of the state machine's Hypothesis settings, e.g. ``{"max_examples": 200}``."""

    @pytest.fixture
    def storage_factory(self) -> StorageFactory:
        raise ConformanceSetupError(
            f"{type(self).__qualname__} must define a `storage_factory` fixture returning a callable that "
            "opens the storage under test (a storage, an awaitable of one, or an async context manager); "
            "see docs/conformance.md"
        )

    @pytest.fixture
    def storages(self, storage_factory: StorageFactory) -> StorageOpener:
        """Opens storages with the factory inside the check's trio run (``await storages.open()``)."""
        return StorageOpener(storage_factory)

    @pytest.fixture
    def storage(self, storages: StorageOpener) -> DeferredStorage:
        """The storage under test, opened empty inside the check's trio run and closed after it."""
        return DeferredStorage(storages)

    @pytest.fixture(autouse=True)
    def _durable_conformance_plugin(self, request: pytest.FixtureRequest, storages: StorageOpener) -> None:
        if not request.config.pluginmanager.has_plugin(PLUGIN):
            raise ConformanceSetupError(
                f'the conformance suite needs its pytest plugin: add pytest_plugins = ["{PLUGIN}"] to the '
                f"test module or the root conftest.py, or run pytest -p {PLUGIN}"
            )


BEHAVIOURS: tuple[type, ...] = (
    *OPERATION_CHECKS, *TRANSITION_CHECKS, *ROBUSTNESS_CHECKS, StateMachineChecks, ExecutorScenarios)
"""The behaviour mixins, in the order their checks run."""


# mypy takes no base classes from a tuple; BEHAVIOURS lists the mixins once, for this class and
# for conformance_checks
class StorageConformance(*BEHAVIOURS, ConformanceFixtures):  # type: ignore[misc]
    """The whole conformance suite. Subclass it as ``Test...`` and define ``storage_factory``::

        pytest_plugins = ["durable_conformance.plugin"]

        class TestMyStorage(StorageConformance):
            @pytest.fixture
            def storage_factory(self, tmp_path):
                return lambda: MyStorage.open(tmp_path / "db")
    """


@functools.cache
def conformance_checks() -> dict[str, type]:
    """Every check's name -> the mixin that defines it."""
    checks: dict[str, type] = {}
    for mixin in BEHAVIOURS:
        for name, value in vars(mixin).items():
            if name.startswith("test") and callable(value):
                checks[name] = mixin
    return checks
