"""Which checks need an optional capability."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

from durable_core.storage.contract import Capabilities

F = TypeVar("F", bound=Callable[..., Any])

REQUIRES_MARK = "durable_requires"
"""The pytest mark the plugin puts on checks of optional features (at collection)."""
REQUIRES_ATTRIBUTE = "__durable_requires__"
CAPABILITIES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Capabilities))


def requires(*capabilities: str, why: str = "") -> Callable[[F], F]:
    """Mark a check of an optional feature: skipped, naming the capability, where it is missing.

    Every check without this mark is required and can never be skipped.
    """
    unknown = [name for name in capabilities if name not in CAPABILITIES]
    if unknown or not capabilities:
        raise ValueError(f"unknown capabilities {unknown}; known: {', '.join(CAPABILITIES)}")

    def mark(check: F) -> F:
        setattr(check, REQUIRES_ATTRIBUTE, (capabilities, why))
        return check

    return mark


def required_capabilities(check: object) -> tuple[tuple[str, ...], str]:
    """The capabilities ``check`` needs (none for a required check), and why."""
    return getattr(check, REQUIRES_ATTRIBUTE, ((), ""))
