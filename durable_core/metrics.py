"""Timing of every storage operation, for ``executor.get_storage_metrics()``."""

from __future__ import annotations

import functools
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from .storage.contract import STORAGE_METHODS

_SAMPLES_KEPT = 10_000


@dataclass(frozen=True, slots=True)
class StorageOperationMetrics:
    """Durations in seconds; percentiles over the most recent 10,000 calls."""

    count: int
    min: float
    max: float
    p50: float
    p90: float
    p95: float
    total: float = 0.0
    """The sum of all ``count`` durations (a Prometheus summary's ``_sum``)."""


class _Timings:
    __slots__ = ("count", "total", "min", "max", "samples")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.min = float("inf")
        self.max = 0.0
        self.samples: deque[float] = deque(maxlen=_SAMPLES_KEPT)

    def add(self, seconds: float) -> None:
        self.count += 1
        self.total += seconds
        self.min = min(self.min, seconds)
        self.max = max(self.max, seconds)
        self.samples.append(seconds)

    def summary(self) -> StorageOperationMetrics:
        ordered = sorted(self.samples)

        def pick(q: float) -> float:
            return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

        return StorageOperationMetrics(self.count, self.min, self.max, pick(0.5), pick(0.9), pick(0.95), self.total)


class MeteredStorage:
    """Wraps a storage and times each contract operation (real time, not the engine clock)."""

    def __init__(self, storage: Any):
        self._storage = storage
        self.inner = storage
        """The storage it times, which optional extensions (``ChangeNotifications``,
        ``TransactionalInserts``) are looked up on: ``isinstance`` with a protocol does not see
        attributes ``__getattr__`` forwards on every Python."""
        self._timings: dict[str, _Timings] = {}
        for name in STORAGE_METHODS:
            setattr(self, name, self._metered(name, getattr(storage, name)))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)

    def _metered(self, name: str, method: Any) -> Any:
        timings = self._timings.setdefault(name, _Timings())

        @functools.wraps(method)
        async def call(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await method(*args, **kwargs)
            finally:
                timings.add(time.perf_counter() - started)

        return call

    def metrics(self) -> dict[str, StorageOperationMetrics]:
        return {name: t.summary() for name, t in self._timings.items() if t.count}


def unmetered(storage: Any) -> Any:
    """``storage`` without the ``MeteredStorage`` around it, if any."""
    return storage.inner if isinstance(storage, MeteredStorage) else storage
