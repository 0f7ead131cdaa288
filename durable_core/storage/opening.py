"""Opening a storage by the name of its plugin, with its options checked against the plugin's
declarations."""

from __future__ import annotations

import inspect
import json
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from ..options import Option
from .contract import COMPATIBLE_STORAGE_APIS, STORAGE_API, Storage, StorageError

if TYPE_CHECKING:
    from ..plugins.manager import PluginRegistry


@asynccontextmanager
async def open_storage(name: str, *, plugins: PluginRegistry | None = None, **options: Any) -> AsyncIterator[Storage]:
    """Open the installed storage ``name`` with ``options``; closed when the block ends.

    One storage object may be shared by several executors.
    """
    from ..plugins.manager import default_registry

    registry = plugins if plugins is not None else default_registry()
    factory = registry.storage_factory(name)
    declared = registry.storage_options(name)
    if declared is not None:
        check_storage_options(name, declared, options)
    try:
        storage = factory(**options)
    except TypeError as exc:
        raise StorageError(f"Invalid options for storage {name!r}: {exc}", is_retryable=False) from exc
    if inspect.isawaitable(storage):
        storage = await storage
    api = getattr(storage, "storage_api", None)
    if api not in COMPATIBLE_STORAGE_APIS:
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


def check_storage_options(name: str, declared: Iterable[Option], options: Mapping[str, object]) -> None:
    """Raise ``StorageError`` for the first of ``options`` that the storage ``name`` does not
    declare or whose value its declaration refuses. ``open_storage`` calls it; a storage whose
    own opening function is public calls it too, for those who call that directly."""
    known = {option.name: option for option in declared}
    for key, value in options.items():
        option = known.get(key)
        if option is None:
            takes = f"it takes: {', '.join(known)}" if known else "it takes none"
            raise StorageError(f"Invalid options for storage {name!r}: unknown option {key!r}; {takes}",
                               is_retryable=False)
        if not option.accepts(value):
            raise StorageError(f"Invalid {name} storage option {key}={value!r}: expected {option.expected()}",
                               is_retryable=False)


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
