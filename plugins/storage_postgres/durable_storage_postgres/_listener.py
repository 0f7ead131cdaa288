"""LISTEN/NOTIFY: the change feed (``wait_for_changes``) of the postgres storage.

Every write transaction that may make work claimable ends with ``pg_notify`` on the schema's
channel. One connection per storage object listens on it: a trio system task waits for its socket
to become readable (``trio.lowlevel.wait_readable``), drains every notification pending and moves
the change counter once, ignoring notifications sent by this storage object's own connections
(its executors already know). If the connection is lost, the counter moves too (something may
have been missed) and the listener reconnects with backoff; executors keep polling meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Container

import psycopg
import trio
from psycopg import sql

from durable_core.retrying import backoff
from durable_core.storage.contract import StorageError
from durable_core.virtual_time import clock_held

log = logging.getLogger("durable_storage_postgres")


class Listener:
    """Listens on ``channel`` with connections made by ``connect`` (autocommit); notifications
    from the server processes in ``own_pids`` are ignored."""

    def __init__(self, connect: Callable[[], psycopg.Connection], channel: str, own_pids: Container[int]):
        self._connect = connect
        self._channel = channel
        self._own_pids = own_pids
        self._counter = 0
        self._moved = trio.Event()
        self._scope = trio.CancelScope()
        self._done = trio.Event()
        self._conn: psycopg.Connection | None = None

    async def start(self) -> None:
        """Connect and LISTEN (errors propagate: the storage does not open), then serve in the
        background until ``aclose``."""
        self._conn = await self._listen()
        trio.lowlevel.spawn_system_task(self._serve, name=f"durable-postgres-listener:{self._channel}")

    async def wait_for_changes(self, seen: int | None) -> int:
        """The change counter, once it differs from ``seen`` (see ``ChangeNotifications``)."""
        if seen is None or seen != self._counter:
            await trio.lowlevel.checkpoint()
        while seen == self._counter:
            await self._moved.wait()
        return self._counter

    async def aclose(self) -> None:
        self._scope.cancel()
        with trio.CancelScope(shield=True):
            await self._done.wait()

    async def _listen(self) -> psycopg.Connection:
        """A new listening connection, opened in a thread (virtual time stands still meanwhile)."""
        with clock_held():
            return await trio.to_thread.run_sync(self._listening)

    def _listening(self) -> psycopg.Connection:
        conn = self._connect()
        try:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
        except BaseException:
            conn.close()
            raise
        return conn

    def _move(self) -> None:
        self._counter += 1
        self._moved.set()
        self._moved = trio.Event()

    async def _serve(self) -> None:
        """Listen, reconnecting with the engine's backoff; a lost connection is logged once (at
        info: the executors say themselves when the server is away)."""
        failures = 0
        try:
            with self._scope:
                while True:
                    try:
                        if self._conn is None:
                            self._conn = await self._listen()
                            failures = 0
                            self._move()  # what was sent while we were away
                        await self._drain(self._conn)
                    except (psycopg.Error, OSError, StorageError) as exc:
                        delay = backoff(failures)
                        log.log(logging.DEBUG if failures else logging.INFO,
                                "listening for changes on %s failed (%s); reconnecting in %.1f s",
                                self._channel, exc, delay)
                        failures += 1
                        self._drop()
                        self._move()
                        await trio.sleep(delay)
        finally:
            self._drop()
            self._done.set()

    async def _drain(self, conn: psycopg.Connection) -> None:
        """Wait for notifications and pass them on, until the connection fails."""
        pgconn = conn.pgconn
        while True:
            pgconn.consume_input()
            notified = False
            while (notice := pgconn.notifies()) is not None:
                notified = notified or notice.be_pid not in self._own_pids
            if notified:
                self._move()
            await trio.lowlevel.wait_readable(pgconn.socket)

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                trio.lowlevel.notify_closing(self._conn.pgconn.socket)
            except psycopg.Error:  # a broken connection has no socket any more
                pass
            self._conn.close()
            self._conn = None
