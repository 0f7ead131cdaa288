"""Ids of executors and executions: random, URL-safe, and for executions sortable by time."""

from __future__ import annotations

import secrets
import time

_SORTABLE = "-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"  # URL-safe, in ASCII order


def new_id(prefix: str, length: int) -> str:
    """A random id: ``prefix`` and ``length`` URL-safe characters (6 random bits each)."""
    return prefix + secrets.token_urlsafe(length * 3 // 4)


def new_execution_id() -> str:
    """``te_``, 8 characters of the time in milliseconds, 16 random characters (96 bits).

    Ids made close in time share a prefix and sort by it, so a storage's index on them grows at
    its end instead of everywhere: with a million executions stored, random ids made every
    insert touch a different index page.
    """
    ms = time.time_ns() // 1_000_000
    stamp = "".join(_SORTABLE[(ms >> shift) & 63] for shift in range(42, -1, -6))
    return "te_" + stamp + secrets.token_urlsafe(12)
