"""Registers ``durable serve`` with durable (entry-point group ``durable``, short name ``web``)."""

from __future__ import annotations

import click

from durable_core import hookimpl


@hookimpl
def durable_register_commands(cli: click.Group) -> None:
    """``durable serve``: imported only when the command line starts, not by executors."""
    from .command import serve_command

    cli.add_command(serve_command)
