"""Adds ``durable conformance NAME [--option key=value]... [-- pytest args]`` to the CLI (and is
``python -m durable_conformance``). The suite itself is imported only when the command runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from durable_core import hookimpl


def _options(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, Any]:
    from durable_core.storage.opening import parse_option

    try:
        return dict(parse_option(text) for text in values)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _known_failures(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    known = {}
    for text in values:
        test_id, _, reason = text.partition("=")
        known[test_id] = reason or "declared on the command line"
    return known


@click.command("conformance")
@click.argument("name")
@click.argument("pytest_args", nargs=-1, type=click.UNPROCESSED, metavar="[-- PYTEST_ARGS...]")
@click.option("--option", "-o", "options", multiple=True, callback=_options, metavar="KEY=VALUE",
              help="An option of the storage (JSON values parsed; {tmp_path} is each check's own directory); repeatable.")
@click.option("--known-failure", "known_failures", multiple=True, callback=_known_failures, metavar="TEST_ID[=REASON]",
              help="Declare a check as known to fail (a strict xfail); repeatable.")
@click.option("--write", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Write the generated test module to FILE (the start of the pytest route) instead of running it.")
@click.pass_context
def conformance(ctx: click.Context, name: str, pytest_args: tuple[str, ...], options: dict[str, Any],
                known_failures: dict[str, str], write: Path | None) -> None:
    """Run the storage conformance suite against the installed storage NAME; arguments after --
    go to pytest (e.g. -- -x -k claim). Exits with pytest's code; what the suite made in the
    storage (a server's schemas) is dropped, also when interrupted."""
    from .by_name import module_source, run

    if write is not None:
        write.write_text(module_source(name, options, known_failures), encoding="utf-8")
        click.echo(f"wrote {write}; run: pytest {write}")
        return
    ctx.exit(run(name, options, pytest_args, known_failures))


@hookimpl
def durable_register_commands(cli: click.Group) -> None:
    cli.add_command(conformance)
