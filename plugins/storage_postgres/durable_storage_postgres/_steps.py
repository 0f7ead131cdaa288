"""Logic written once for sync and asyncio connections: a generator yields the statements to run
and is sent back each one's rows (no I/O of its own), and a driver per kind of cursor runs them.

Why: the storage's connection threads insert on a sync cursor, and a caller inserting in its own
transaction (``insert_executions_on``) holds a sync ``psycopg.Connection`` or an asyncio
``psycopg.AsyncConnection``; all three run the very same ``Database.insert_steps``.
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


Steps = Generator[Statement, list[Row], T]
"""Statements to run in order, each sent back its rows; returns ``T``."""


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
