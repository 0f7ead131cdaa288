"""A trio run that threads and asyncio can call into: where a client's (or an in-process
executor's) trio side lives.

The engine stays on trio. A ``Portal`` owns one trio run — in a thread of its own, or as a guest
on the caller's asyncio loop (trio's guest mode) — that keeps an executor running, and ``submit``
runs one async call there, returning a ``concurrent.futures.Future`` that both the sync client
(blocking on it) and the asyncio client (``asyncio.wrap_future``) wait on. Stopping the portal
shuts the executor down as ``durable worker`` does: running executions get their grace period,
then go back to ``ready``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import outcome
import trio

from ..errors import DurableExecutionError
from ..virtual_time import ClockHold, current_clock_hold

if TYPE_CHECKING:
    from ..executor import DurableExecutor

T = TypeVar("T")


class PortalClosedError(DurableExecutionError):
    """The client was closed (or its executor stopped) before or while a call ran."""

    def __init__(self, message: str = "The durable client is closed") -> None:
        super().__init__(message, is_retryable=False)


class Call(Generic[T]):
    """One call submitted to the portal: its future, and the cancel scope that stops it."""

    __slots__ = ("future", "scope")

    def __init__(self) -> None:
        self.future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self.scope = trio.CancelScope()


class Portal:
    """Keeps ``executor`` running in a trio run until ``stop``; see the module docstring.

    ``clock`` is the run's trio clock. Under an autojumping ``trio.testing.MockClock`` virtual
    time moves only while a call is in flight (a ``wait`` jumps over the backoffs and sleeps it
    waits through); between calls the caller's own code runs, and the clock stands still.
    """

    def __init__(self, executor: DurableExecutor, clock: trio.abc.Clock | None = None):
        self.executor = executor
        self.clock = clock
        self._hold: ClockHold | None = None
        self._in_flight = 0
        self._pid: int | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._calls: trio.Nursery | None = None
        self._stop_requested = False
        self._stop: trio.Event | None = None
        self._closed = False

    # ------------------------------------------------------------------ the trio side

    async def _main(self, started: Callable[[BaseException | None], None]) -> None:
        """Run the executor and serve calls until ``stop``; ``started`` hears how starting went."""
        try:
            async with self.executor:
                with self._still_between_calls():
                    async with trio.open_nursery() as calls:
                        self._token = trio.lowlevel.current_trio_token()
                        self._pid = os.getpid()
                        self._calls = calls
                        self._stop = trio.Event()
                        started(None)
                        if not self._stop_requested:
                            await self._stop.wait()
                        self._closed = True
                        calls.cancel_scope.cancel()  # calls in flight end with PortalClosedError
        except BaseException as exc:
            self._closed = True
            if self._token is None:
                started(exc)
                return
            raise

    async def _serve(self, call: Call[T], fn: Callable[..., Awaitable[T]], args: tuple[Any, ...]) -> None:
        if not call.future.set_running_or_notify_cancel():
            return
        with self._call_in_flight():
            await self._outcome(call, fn, args)

    @contextlib.contextmanager
    def _still_between_calls(self) -> Iterator[None]:
        """Under a ``MockClock``, hold virtual time while no call is in flight (the caller's code
        runs), until the portal stops: its shutdown moves in virtual time."""
        self._hold = current_clock_hold()
        if self._hold is not None:
            self._hold.acquire()
        try:
            yield
        finally:
            if self._hold is not None and self._in_flight == 0:
                self._hold.release()
            self._hold = None

    @contextlib.contextmanager
    def _call_in_flight(self) -> Iterator[None]:
        """Virtual time moves only while calls are in flight (see the class docstring)."""
        if self._in_flight == 0 and self._hold is not None:
            self._hold.release()
        self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1
            if self._in_flight == 0 and self._hold is not None:
                self._hold.acquire()

    @staticmethod
    async def _outcome(call: Call[T], fn: Callable[..., Awaitable[T]], args: tuple[Any, ...]) -> None:
        try:
            with call.scope:
                call.future.set_result(await fn(*args))
                return
        except trio.Cancelled:  # the portal is closing
            call.future.set_exception(PortalClosedError("The durable client closed while the call ran"))
            raise
        except Exception as exc:
            call.future.set_exception(exc)
            return
        call.future.set_exception(PortalClosedError("The call was cancelled by its caller"))

    def _request_stop(self) -> None:
        self._stop_requested = True
        if self._stop is not None:
            self._stop.set()

    # ------------------------------------------------------------------ any thread

    def on_portal_thread(self) -> bool:
        """Whether the caller runs inside this portal's trio run (a call from there would wait
        for itself)."""
        return trio.lowlevel.in_trio_run() and trio.lowlevel.current_trio_token() is self._token

    def submit(self, fn: Callable[..., Awaitable[T]], *args: Any) -> Call[T]:
        """Start ``fn(*args)`` in the trio run; its result (or error) arrives in ``call.future``."""
        if self._pid is not None and self._pid != os.getpid():
            raise DurableExecutionError(
                f"This durable client was opened in process {self._pid}, which has since forked: its "
                "thread does not survive a fork. Open clients after forking (a client opens on first "
                "use, so one made at import time is fine until then)", is_retryable=False)
        if self._closed or self._token is None or self._calls is None:
            raise PortalClosedError()
        call: Call[T] = Call()
        calls = self._calls
        try:
            self._token.run_sync_soon(lambda: calls.start_soon(self._serve, call, fn, args))
        except trio.RunFinishedError:
            raise PortalClosedError() from None
        return call

    def cancel(self, call: Call[Any]) -> None:
        """Stop ``call`` if it still runs (its caller gave up waiting)."""
        if self._token is not None:
            try:
                self._token.run_sync_soon(call.scope.cancel)
            except trio.RunFinishedError:
                pass

    def stop(self) -> None:
        """Ask the run to end: the executor shuts down gracefully."""
        if self._token is not None:
            try:
                self._token.run_sync_soon(self._request_stop)
            except trio.RunFinishedError:
                pass


class ThreadPortal(Portal):
    """A portal whose trio run has a thread of its own."""

    def __init__(self, executor: DurableExecutor, clock: trio.abc.Clock | None = None):
        super().__init__(executor, clock)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread and the executor in it; raises what starting the executor raised."""
        done = threading.Event()
        failure: list[BaseException] = []

        def started(exc: BaseException | None) -> None:
            if exc is not None:
                failure.append(exc)
            done.set()

        def run() -> None:
            try:
                trio.run(self._main, started, clock=self.clock)
            except BaseException as exc:  # after start: the executor stopped on its own
                self._closed = True
                if not done.is_set():
                    started(exc)

        self._thread = threading.Thread(target=run, name=f"durable-client-{self.executor.executor_id}",
                                        daemon=True)
        self._thread.start()
        done.wait()
        if failure:
            self._thread.join()
            raise failure[0]

    def close(self) -> None:
        """Stop the executor and wait for the thread to end. Idempotent."""
        self.stop()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()


class GuestPortal(Portal):
    """A portal whose trio run is a guest on the running asyncio loop (trio's guest mode): trio
    and asyncio share the loop's thread, so the executor costs no thread of its own."""

    def __init__(self, executor: DurableExecutor, clock: trio.abc.Clock | None = None):
        super().__init__(executor, clock)
        self._finished: asyncio.Future[outcome.Outcome[None]] | None = None

    async def start(self) -> None:
        """Start the executor as a guest of the running loop; raises what starting it raised."""
        loop = asyncio.get_running_loop()
        started: asyncio.Future[BaseException | None] = loop.create_future()
        finished = self._finished = loop.create_future()

        def on_started(exc: BaseException | None) -> None:
            if not started.done():
                started.set_result(exc)

        def on_done(result: outcome.Outcome[None]) -> None:
            self._closed = True
            if not finished.done():
                finished.set_result(result)
            if not started.done():
                started.set_result(result.error if isinstance(result, outcome.Error) else PortalClosedError())

        trio.lowlevel.start_guest_run(
            self._main, on_started,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            run_sync_soon_not_threadsafe=loop.call_soon,
            done_callback=on_done,
            host_uses_signal_set_wakeup_fd=True,
            clock=self.clock,
        )
        failure = await started
        if failure is not None:
            await finished
            raise failure

    async def close(self) -> None:
        """Stop the executor and wait for the trio run to end. Idempotent."""
        self.stop()
        if self._finished is not None:
            (await asyncio.shield(self._finished)).unwrap()
