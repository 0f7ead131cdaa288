"""Opening the storage under test from the backend author's factory, and closing it again.

A *storage factory* is a callable taking no arguments that returns one of:

* a storage object;
* an awaitable resolving to one (``lambda: MyStorage.open(path)``);
* an async context manager yielding one (``lambda: open_storage("mine", path=path)``).

Called again, a factory must open the same data again: for a ``persistent`` storage that is how
durability is checked (close, reopen, compare). Storages are opened inside the trio run of the
check, so backends that bind to the running trio loop work.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import Any, cast

import trio

from durable_core.storage import STORAGE_API, STORAGE_METHODS, Capabilities, ChangeNotifications, Storage
from durable_core.virtual_time import clock_held

StorageFactory = Callable[[], Storage | Awaitable[Storage] | AbstractAsyncContextManager[Storage]]


class ConformanceSetupError(Exception):
    """The storage factory or the storage it made cannot be tested; the message says why."""


def _describe(factory: object) -> str:
    return getattr(factory, "__qualname__", None) or repr(factory)


def check_storage(storage: object, origin: str) -> Storage:
    """Refuse, with the reason, an object that does not implement ``STORAGE_API``."""
    missing = [name for name in (*STORAGE_METHODS, "aclose") if not callable(getattr(storage, name, None))]
    if missing:
        raise ConformanceSetupError(
            f"{origin} returned {storage!r}, which lacks the storage operations {', '.join(missing)}; "
            "it must implement durable_core.storage.Storage"
        )
    api = getattr(storage, "storage_api", None)
    if api != STORAGE_API:
        raise ConformanceSetupError(
            f"{origin} returned a storage implementing storage API {api!r}; this suite checks "
            f"STORAGE_API {STORAGE_API}"
        )
    if not isinstance(getattr(storage, "capabilities", None), Capabilities):
        raise ConformanceSetupError(
            f"{origin} returned a storage whose `capabilities` is not a durable_core.storage.Capabilities"
        )
    assert isinstance(storage, Storage)  # every member of the protocol was checked above
    return storage


class StorageOpener:
    """Opens storages with the factory of the class under test; closes what is left open."""

    def __init__(self, factory: StorageFactory):
        if not callable(factory):
            raise ConformanceSetupError(
                f"the storage_factory fixture must return a callable, got {factory!r}"
            )
        self.factory = factory
        self._open: dict[int, tuple[Storage, AsyncExitStack | None]] = {}
        self._capabilities: Capabilities | None = None

    async def open(self) -> Storage:
        """A storage made by the factory: new, or the same data reopened."""
        origin = f"storage_factory {_describe(self.factory)}"
        made: object = self.factory()
        stack: AsyncExitStack | None = None
        if inspect.isawaitable(made):
            made = await made
        elif not hasattr(made, "insert_executions") and isinstance(made, AbstractAsyncContextManager):
            stack = AsyncExitStack()
            made = await stack.enter_async_context(made)
        try:
            storage = check_storage(made, origin)
        except BaseException:
            if stack is not None:
                await stack.aclose()
            raise
        self._open[id(storage)] = (storage, stack)
        if self._capabilities is None:
            self._capabilities = storage.capabilities
            if await storage.list_executions(limit=1):
                await self.close(storage)
                raise ConformanceSetupError(
                    f"{origin} opened a storage that already holds executions: every check needs an empty "
                    "storage of its own (e.g. a file under the tmp_path fixture)"
                )
        return storage

    async def close(self, storage: Storage) -> None:
        """Close ``storage`` (as its factory says: ``aclose`` or leaving its context)."""
        _, stack = self._open.pop(id(storage), (storage, None))
        with trio.CancelScope(shield=True):
            if stack is not None:
                await stack.aclose()
            else:
                await storage.aclose()

    async def reopen(self, storage: Storage) -> Storage:
        """Close ``storage`` and open its data again."""
        await self.close(storage)
        return await self.open()

    async def capabilities(self) -> Capabilities:
        """The capabilities of the storage under test (opening one if none was opened yet)."""
        if self._capabilities is None:
            await self.close(await self.open())
        assert self._capabilities is not None
        return self._capabilities

    async def aclose(self) -> None:
        """Close every storage still open, newest first."""
        for storage, _ in reversed(list(self._open.values())):
            await self.close(storage)


class DeferredStorage:
    """What the ``storage`` fixture holds until the trio run of the check opens it."""

    def __init__(self, opener: StorageOpener):
        self.opener = opener


class VirtualTimeHolder:
    """Wraps a storage so that trio's virtual clock stands still while one of its operations runs.

    Under ``MockClock(autojump_threshold=0)`` the clock jumps to the next deadline as soon as every
    task is blocked, also while a backend waits for its own thread or server, which would make a
    storage call take minutes of virtual time. Backends on the core's ``ConnectionThreads`` hold
    the clock themselves (``durable_core.virtual_time``); the executor scenarios hand their
    executors this wrapper so that any other backend passes them too. It changes nothing else
    (checkpoints and cancellation are the storage's own).
    """

    def __init__(self, storage: Storage):
        self.storage = storage
        self.storage_api = storage.storage_api
        self.capabilities = storage.capabilities

    async def wait_for_changes(self, seen: int | None) -> int:
        """The wrapped storage's change feed, as it is (a long wait, never held or locked)."""
        assert isinstance(self.storage, ChangeNotifications), "the executor waits only on a storage with a change feed"
        return await self.storage.wait_for_changes(seen)

    async def aclose(self) -> None:
        await self.storage.aclose()


def _held(name: str) -> Callable[..., Any]:
    @functools.wraps(getattr(Storage, name))
    async def operation(self: VirtualTimeHolder, *args: Any, **kwargs: Any) -> Any:
        with clock_held():
            return await getattr(self.storage, name)(*args, **kwargs)

    operation.__qualname__ = f"VirtualTimeHolder.{name}"
    return operation


for _name in STORAGE_METHODS:
    setattr(VirtualTimeHolder, _name, _held(_name))
del _name


def holding_virtual_time(storage: Storage) -> Storage:
    """``storage`` wrapped in a ``VirtualTimeHolder`` (once)."""
    if isinstance(storage, VirtualTimeHolder):
        return storage
    # a Storage: its operations are the ones set from STORAGE_METHODS just above
    return cast(Storage, VirtualTimeHolder(storage))
