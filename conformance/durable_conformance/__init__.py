"""durable-conformance: the conformance suite for durable storage backends.

Serializers have their own checks: a ``Test...`` subclass of ``SerializerConformance`` with a
``serializer`` fixture.

Two ways to run it against a storage (see docs/conformance.md):

* pytest: ``pytest_plugins = ["durable_conformance.plugin"]`` and a ``Test...`` subclass of
  ``StorageConformance`` with a ``storage_factory`` fixture;
* by name, for an installed storage plugin: ``python -m durable_conformance NAME`` (or
  ``durable conformance NAME``).

Names are imported on first use, so that pytest rewrites the asserts of the checks (their
failures then show both sides) also when the suite is started by name, and so that loading the
package's command plugin imports neither pytest nor the checks.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any

_rewriting = False


def _rewrite_asserts() -> None:
    """Have pytest rewrite the asserts of the checks (their failures then show both sides): before
    any of them is imported. Not at import time otherwise: durable loads this package's command
    plugin in every executor and command, and importing pytest costs a tenth of a second."""
    global _rewriting
    if not _rewriting:
        _rewriting = True
        import pytest

        pytest.register_assert_rewrite(
            *(f"durable_conformance.{module}" for module in (
                "checks_operations", "checks_robustness", "checks_transitions", "model", "records", "scenarios",
                "serializers", "stateful"))
        )


if "pytest" in sys.modules:  # under pytest a check module may be imported directly, by its path
    _rewrite_asserts()

if TYPE_CHECKING:
    from .by_name import main as main
    from .by_name import run as run
    from .by_name import Destroyable as Destroyable
    from .by_name import storage_by_name as storage_by_name
    from .by_name import throwaway_storage as throwaway_storage
    from .marks import requires as requires
    from .opening import StorageOpener as StorageOpener
    from .serializers import SerializerConformance as SerializerConformance
    from .suite import BEHAVIOURS as BEHAVIOURS
    from .suite import StorageConformance as StorageConformance

__version__ = "0.1.0"
_LAZY = {
    "BEHAVIOURS": "suite", "StorageConformance": "suite", "StorageOpener": "opening", "main": "by_name",
    "requires": "marks", "run": "by_name", "storage_by_name": "by_name", "throwaway_storage": "by_name",
    "Destroyable": "by_name",
    "SerializerConformance": "serializers",
}
__all__ = ["BEHAVIOURS", "Destroyable", "SerializerConformance", "StorageConformance", "StorageOpener", "main",
           "requires", "run", "storage_by_name", "throwaway_storage"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'durable_conformance' has no attribute {name!r}")
    _rewrite_asserts()
    return getattr(importlib.import_module(f"durable_conformance.{_LAZY[name]}"), name)
