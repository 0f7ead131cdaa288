"""The ``durable`` command line (click); ``main`` is the console script. See docs/cli.md.

User mistakes (bad JSON, unknown module, task, execution or plugin, a missing or malformed
configuration) are reported as one line on stderr with exit code 2, never with a traceback.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import NoReturn

import click

from ..config import CONFIG_ENV
from ..errors import DurableExecutionError
from ..plugins.manager import default_registry
from . import config_cmd, demo, executions, install, plugins_cmd, schedules_cmd, worker, workers_cmd
from .common import USER_ERRORS

logger = logging.getLogger("durable.cli")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False), metavar="PATH",
              help=f"The configuration file (default: ${CONFIG_ENV}, ./durable.toml, or [tool.durable] "
                   "in ./pyproject.toml).")
@click.version_option(package_name="durable-core")
def cli(config_path: str | None) -> None:
    """durable: durable execution on trio. Start with: durable demo"""
    if config_path:  # through the environment, the user's DurableExecutor.from_config() sees it too
        os.environ[CONFIG_ENV] = os.path.abspath(config_path)


for _command in (demo.demo, worker.worker, worker.enqueue, executions.executions, plugins_cmd.plugins,
                 install.install, install.uninstall, config_cmd.config_group, workers_cmd.workers,
                 schedules_cmd.schedules):
    cli.add_command(_command)


def add_plugin_commands(group: click.Group) -> None:
    """Let plugins add commands (``durable_register_commands``); they may not replace built-in ones.
    Plugins that cannot load leave the built-in commands working (``durable plugins`` says why)."""
    builtin = dict(group.commands)
    try:
        default_registry().register_commands(group)
    except DurableExecutionError:
        return
    for name, command in builtin.items():
        if group.commands.get(name) is not command:
            logger.warning("a plugin tried to replace the command %r; it keeps the built-in one", name)
            group.commands[name] = command


def main(args: Sequence[str] | None = None) -> None:
    """Run ``durable``; exit with its code."""
    add_plugin_commands(cli)
    run_command(cli, args, "durable")


def run_command(command: click.Command, args: Sequence[str] | None, prog_name: str) -> NoReturn:
    """Run ``command`` as ``durable`` runs its commands, and exit with its code: a user mistake is
    one line on stderr and exit code 2 (also for a plugin's command run on its own, such as
    ``python -m durable_conformance``)."""
    try:
        code = command.main(args, prog_name=prog_name, standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help())
        code = 0
    except click.UsageError as exc:
        hint = f" (see: {exc.ctx.command_path} --help)" if exc.ctx else ""
        click.echo(f"error: {exc.format_message()}{hint}", err=True)
        code = exc.exit_code
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        code = exc.exit_code
    except (click.Abort, KeyboardInterrupt):
        click.echo("interrupted", err=True)
        code = 130
    except USER_ERRORS as exc:
        click.echo(f"error: {getattr(exc, 'message', None) or exc}", err=True)
        code = 2
    raise SystemExit(code if isinstance(code, int) else 0)
