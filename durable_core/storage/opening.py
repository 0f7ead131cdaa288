"""Opening a storage by the name of its plugin."""

from __future__ import annotations

import inspect
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from .contract import STORAGE_API, Storage, StorageError


@asynccontextmanager
async def open_storage(name: str, *, plugins: Any = None, **options: Any) -> AsyncIterator[Storage]:
    """Open the installed storage ``name`` with ``options``; closed when the block ends.

    One storage object may be shared by several executors.
    """
    from ..plugins.manager import default_registry

    registry = plugins if plugins is not None else default_registry()
    factory = registry.storage_factory(name)
    try:
        storage = factory(**options)
    except TypeError as exc:
        raise StorageError(f"Invalid options for storage {name!r}: {exc}", is_retryable=False) from exc
    if inspect.isawaitable(storage):
        storage = await storage
    api = getattr(storage, "storage_api", None)
    if api != STORAGE_API:
        await storage.aclose()
        raise StorageError(
            f"storage {name!r} implements storage API {api!r}, but this durable-core needs "
            f"{STORAGE_API}; upgrade the plugin or durable-core",
            is_retryable=False,
        )
    try:
        yield storage
    finally:
        await storage.aclose()


def parse_option(text: str) -> tuple[str, Any]:
    """A storage option from a command line (``--option key=value``): the value is JSON if it
    parses (``2.5``, ``true``, ``"x"``), else the text."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--option expects key=value, got {text!r}")
    try:
        return key.strip(), json.loads(value)
    except ValueError:
        return key.strip(), value
