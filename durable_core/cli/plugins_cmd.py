"""``durable plugins``: what is installed, what each plugin provides, and which ones are broken."""

from __future__ import annotations

import importlib.metadata
import json

import click

from ..errors import DurableExecutionError
from ..plugins.manager import PluginInfo, default_registry, get_plugin_manager
from .common import table


def load_plugins() -> tuple[list[PluginInfo], str | None]:
    """Every plugin, broken ones as error rows, and the problem that stops the registry from
    loading at all (two plugins registering one name), if any: listing must work then too."""
    try:
        return default_registry().plugins, None
    except DurableExecutionError as exc:
        pm = get_plugin_manager()
        loaded = [pm.plugin_info(name, status="ok" if plugin else "disabled") for name, plugin in pm.list_name_plugin()]
        return loaded + pm.failures, exc.message


@click.command("plugins")
@click.option("--all", "show_all", is_flag=True, help="Include the plugins built into durable-core.")
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON: a list of objects, one per plugin, with the options each storage declares.")
def plugins(show_all: bool, as_json: bool) -> None:
    """List the installed plugins: name, distribution, version, what they provide, status."""
    infos, problem = load_plugins()
    infos = [info for info in infos if show_all or info.distribution is not None]
    if as_json:
        click.echo(json.dumps([info.as_json() for info in infos], indent=2))
    elif infos:
        core = importlib.metadata.version("durable-core")
        click.echo(table(
            ["name", "distribution", "version", "provides", "status"],
            [[info.name, info.distribution or "durable-core (built in)", info.version or core,
              ", ".join(info.provides) or "-", f"error: {info.error}" if info.error else info.status]
             for info in infos],
        ))
    else:
        click.echo("no plugins installed; add one with: durable install sqlite "
                   "(durable plugins --all lists the built-in ones too)")
    if problem:
        raise click.ClickException(problem)
