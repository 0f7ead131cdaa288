"""Payload size and serialize / deserialize time, json vs cbor, on a few representative values.

    python bench/serializers.py [SECONDS]

Each time is the best of 9 repeats of a loop of about SECONDS (default 0.2; 0.001 for a smoke
run), per call; prints a Markdown table.
Needs durable-serializer-cbor installed (pip install -e plugins/serializer_cbor).
"""

import sys
import timeit
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import Any
from uuid import UUID

from durable_core.errors import ErrorInfo
from durable_core.models import FinishedChildTaskExecution
from durable_core.serialization import JsonSerializer, Serializer
from durable_core.status import TaskExecutionStatus
from durable_serializer_cbor import CborSerializer

VALUES: dict[str, Any] = {
    "flat dict of 5 scalars": {"id": 12345, "name": "thumbnail", "ok": True, "ratio": 0.75, "owner": None},
    "dict with a float and a list": {"url": "https://example.com/a.png", "scale": 0.5, "sizes": [64, 128, 256, 512]},
    "20 nested records": [
        {"id": i, "name": f"user {i}", "active": i % 2 == 0, "tags": ["a", "b"],
         "address": {"city": "Paris", "zip": "75001"}}
        for i in range(20)
    ],
    "datetime, UUID, tuple, bytes, set": {
        "at": datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2))),
        "id": UUID("12345678-1234-5678-1234-567812345678"),
        "pair": (1, "x"),
        "blob": bytes(range(64)),
        "tags": {"red", "green"},
    },
    "1,000 floats": [i / 7 for i in range(1000)],
    "64 KiB of bytes": bytes(range(256)) * 256,
    "10 finished children (a parent's output)": [
        FinishedChildTaskExecution(
            "resize", f"te_{i:024d}", TaskExecutionStatus.COMPLETED if i % 5 else TaskExecutionStatus.FAILED,
            output={"url": f"https://example.com/{i}.png"} if i % 5 else None,
            error=None if i % 5 else ErrorInfo("generic", "image too large", is_retryable=False),
        )
        for i in range(10)
    ],
}


def best_time(call: Callable[[], Any], seconds: float) -> float:
    """Seconds per call: the best of 9 repeats of a loop of about ``seconds``."""
    timer = timeit.Timer(call)
    number = max(1, round(seconds / max(timer.timeit(1), 1e-7)))
    return min(timer.repeat(repeat=9, number=number)) / number


def size(n: int) -> str:
    return f"{n} B" if n < 1000 else f"{n / 1024:.1f} KiB"


def duration(seconds: float) -> str:
    us = seconds * 1e6
    return f"{us:.2f} µs" if us < 10 else f"{us:.0f} µs"


def main(seconds: float) -> None:
    serializers: list[Serializer] = [JsonSerializer(), CborSerializer()]
    print("| value | size json / cbor | serialize json / cbor | deserialize json / cbor |")
    print("|---|---|---|---|")
    for name, value in VALUES.items():
        sizes, dumps, loads = [], [], []
        for serializer in serializers:
            data = serializer.serialize(value)
            sizes.append(size(len(data)))
            dumps.append(duration(best_time(partial(serializer.serialize, value), seconds)))
            loads.append(duration(best_time(partial(serializer.deserialize, data), seconds)))
        print(f"| {name} | {' / '.join(sizes)} | {' / '.join(dumps)} | {' / '.join(loads)} |")


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 0.2)
