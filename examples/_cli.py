"""The command line every example shares: ``--storage NAME`` (SQLite in ./durable.db by default),
and its last line of output, the line the example's ``main`` returns.

Importable from any example run as a script (``python examples/NAME.py``): Python puts the
script's folder first on ``sys.path``.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable

import trio

from durable_core import TaskExecution


def example_parser(doc: str) -> argparse.ArgumentParser:
    """A parser described by the first line of the example's docstring, with ``--storage``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--storage", default=None, help="storage plugin (default: sqlite in ./durable.db)")
    return parser


def run_example(main: Callable[[str | None], Awaitable[str]], doc: str) -> None:
    """Run ``main(storage)`` under trio, with the storage the command line names, and print the
    line it returns."""
    print(trio.run(main, example_parser(doc).parse_args().storage))


def outcome(finished: TaskExecution) -> str:
    """``status: output``, or the error's message in place of the output when it failed."""
    return f"{finished.status}: {finished.output if finished.error is None else finished.error.message}"
