"""Ids of executors and executions: random, URL-safe, and for executions sortable by time."""

from __future__ import annotations

import base64
import os
import secrets
import time
from collections.abc import Iterator

_SORTABLE = "-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"  # URL-safe, in ASCII order


def new_id(prefix: str, length: int) -> str:
    """A random id: ``prefix`` and ``length`` URL-safe characters (6 random bits each)."""
    return prefix + secrets.token_urlsafe(length * 3 // 4)


_RANDOM_PER_READ = 4096
"""Random bytes read from the system at a time for execution ids: one read per 341 ids, not one each."""


def _random_chunks() -> Iterator[bytes]:
    data = os.urandom(_RANDOM_PER_READ)
    return iter([data[i:i + 12] for i in range(0, _RANDOM_PER_READ - 11, 12)])


_chunks = _random_chunks()


def _forget_chunks() -> None:
    """A forked child must not hand out its parent's next random bytes."""
    global _chunks
    _chunks = _random_chunks()


os.register_at_fork(after_in_child=_forget_chunks)


def _random_12() -> bytes:
    """12 random bytes; thread-safe (taking one from the iterator is atomic)."""
    global _chunks
    try:
        return next(_chunks)
    except StopIteration:
        _chunks = _random_chunks()
        return _random_12()


_last_stamp = (-1, "")
"""The last millisecond an id was made in, and its 8 characters (one tuple: threads read both at once)."""


def new_execution_id() -> str:
    """``te_``, 8 characters of the time in milliseconds, 16 random characters (96 bits).

    Ids made close in time share a prefix and sort by it, so a storage's index on them grows at
    its end instead of everywhere: with a million executions stored, random ids made every
    insert touch a different index page.
    """
    global _last_stamp
    ms = time.time_ns() // 1_000_000
    last_ms, stamp = _last_stamp
    if ms != last_ms:
        stamp = "".join(_SORTABLE[(ms >> shift) & 63] for shift in range(42, -1, -6))
        _last_stamp = (ms, stamp)
    return "te_" + stamp + base64.urlsafe_b64encode(_random_12()).decode()
