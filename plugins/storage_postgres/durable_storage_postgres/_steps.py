"""Logic written once for sync and asyncio connections: a generator yields the statements to run
and is sent back each one's rows (no I/O of its own), and a driver per kind of cursor runs them.

Why: the storage's connection threads insert on a sync cursor, a caller inserting in its own
transaction (``insert_executions_on``) holds a sync ``psycopg.Connection`` or an asyncio
``psycopg.AsyncConnection``, and the storage's lane (``_lane``) drives libpq from trio; all run
the very same ``Database.insert_steps``.

``Waves`` are the lane's form: each yield is a list of statements sent together (one round trip
for all, and for those of every other call in the transaction), sent back the rows of each. A
``Last`` wave promises that the waves then return (or raise) without another: when every call of
a transaction begins with one, the lane sends ``COMMIT`` along, one round trip in all.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any, Generic, NamedTuple, TypeVar

import psycopg

T = TypeVar("T")
Row = tuple[Any, ...]


class Statement(NamedTuple):
    """One statement: ``params`` once, or, if ``many``, a sequence of them (``executemany``, whose
    rows are those of every execution together)."""

    sql: str
    params: Any
    many: bool = False


class Last(list[Statement]):
    """A wave after which its ``Waves`` sends no other (it returns or raises on the rows)."""


Steps = Generator[Statement, list[Row], T]
"""Statements to run in order, each sent back its rows; returns ``T``."""
Waves = Generator[list[Statement], list[list[Row]], T]
"""Lists of statements (none ``many``) to run in order, each list sent back the rows of each of
its statements; returns ``T``."""


class _Exchange(Generic[T]):
    """Iterating gives the statements of ``steps``, each sent the ``rows`` set since the last one;
    ``result`` once it is done."""

    def __init__(self, steps: Steps[T]):
        self._steps = steps
        self.rows: list[Row] = []
        self.result: T

    def __iter__(self) -> Iterator[Statement]:
        try:
            statement = next(self._steps)
            while True:
                yield statement
                statement = self._steps.send(self.rows)
        except StopIteration as done:
            self.result = done.value


def run_steps(cur: psycopg.Cursor, steps: Steps[T]) -> T:
    exchange = _Exchange(steps)
    for sql, params, many in exchange:
        if many:
            cur.executemany(sql, params, returning=True)
        else:
            cur.execute(sql, params)
        rows = cur.fetchall()
        while many and cur.nextset():
            rows += cur.fetchall()
        exchange.rows = rows
    return exchange.result


async def run_steps_async(cur: psycopg.AsyncCursor, steps: Steps[T]) -> T:
    exchange = _Exchange(steps)
    for sql, params, many in exchange:
        await (cur.executemany(sql, params, returning=True) if many else cur.execute(sql, params))
        rows = await cur.fetchall()
        while many and cur.nextset():
            rows += await cur.fetchall()
        exchange.rows = rows
    return exchange.result


def waves_of(steps: Steps[T]) -> Waves[T]:
    """``steps`` as waves: one wave per statement, ``many`` one statement per set of parameters."""
    exchange = _Exchange(steps)
    for sql, params, many in exchange:
        if many:
            rows = yield [Statement(sql, one) for one in params]
            exchange.rows = [row for each in rows for row in each]
        else:
            exchange.rows = (yield [Statement(sql, params)])[0]
    return exchange.result


def run_waves(cur: psycopg.Cursor, waves: Waves[T]) -> T:
    """``waves`` on a sync cursor, each wave pipelined (one round trip)."""
    try:
        wave = next(waves)
        while True:
            with cur.connection.pipeline():
                cursors = [cur.connection.cursor() for _ in wave]
                for each, (sql, params, _) in zip(cursors, wave):
                    each.execute(sql, params)
            rows = [each.fetchall() for each in cursors]
            wave = waves.send(rows)
    except StopIteration as done:
        result: T = done.value
        return result
