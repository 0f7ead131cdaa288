"""Adds ``durable conformance STORAGE [--option key=value] [-- pytest args]`` to the CLI."""

from __future__ import annotations

import sys

import click

from durable_core import hookimpl


@click.command(
    "conformance",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def conformance(args: tuple[str, ...]) -> None:
    """Run the storage conformance suite against an installed storage plugin."""
    from .by_name import main

    sys.exit(main(list(args)))


@hookimpl
def durable_register_commands(cli: click.Group) -> None:
    cli.add_command(conformance)
