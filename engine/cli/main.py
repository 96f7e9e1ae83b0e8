"""The ``relaydesk`` command: one entry point for the workers and every tool. The console's
``gui`` command joins it in ``desktop.cli``, the entry point installed as ``relaydesk``."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
from typing import Any

import click

from engine import __version__
from engine.cli.campaigns import campaign_group
from engine.cli.common import AppContext, json_option, pass_app, print_json
from engine.cli.contacts import contacts_group
from engine.cli.database import db_group
from engine.cli.failed import failed_group
from engine.cli.inbox import inbox_group
from engine.cli.inspector import inspector_cmd
from engine.cli.metrics import metrics_cmd
from engine.cli.optouts import optouts_group
from engine.cli.pipeline import gateway_cmd, redis_cmd, status_cmd, supervise_cmd, worker_cmd
from engine.cli.receiver import receiver_cmd
from engine.cli.selftest import selftest_cmd
from engine.config.settings import ENV_FILE_VARIABLE
from engine.domain.errors import OperatorError


class RelayDeskGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OperatorError as exc:  # one plain line, no traceback
            raise click.ClickException(str(exc)) from None


@click.group(cls=RelayDeskGroup, invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Keep all state of this run (database, Redis, logs) in DIR "
                   "[env: RELAYDESK_DATA_DIR].")
@click.option("--env-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Read settings from this env file (NAME=value lines), below the "
                   "environment and above the config file [env: RELAYDESK_ENV_FILE].")
@click.version_option(__version__, "--version", prog_name="relaydesk")
@click.pass_context
def cli(ctx: click.Context, data_dir: Path | None, env_file: Path | None) -> None:
    """RelayDesk: personalised SMS campaigns through Celery workers on Redis."""
    overrides = {"RELAYDESK_DATA_DIR": str(data_dir)} if data_dir else {}
    if env_file:
        overrides[ENV_FILE_VARIABLE] = str(env_file.expanduser().resolve())
    # Also for what loads the settings again on its own: a worker's runtime, its pool
    # processes, the console's helper process.
    os.environ.update(overrides)
    ctx.obj = AppContext(overrides)
    if ctx.invoked_subcommand is None:
        # The console, when this command has it (desktop.cli adds it: the engine never
        # imports Qt); otherwise the list of commands.
        gui = cli.get_command(ctx, "gui")
        if gui is None:
            click.echo(ctx.get_help())
            return
        ctx.invoke(gui)


@cli.command("settings")
@json_option
@pass_app
def settings_cmd(app: AppContext, as_json: bool) -> None:
    """Show the settings in force (secrets masked)."""
    shown = app.settings.describe()
    if as_json:
        print_json(shown)
        return
    width = max(len(k) for k in shown)
    for key, value in shown.items():
        click.echo(f"{key:<{width}}  {'(unset)' if value is None else value}")


for command in (db_group, contacts_group, campaign_group, failed_group, worker_cmd,
                gateway_cmd, redis_cmd, supervise_cmd, status_cmd, metrics_cmd, selftest_cmd,
                inspector_cmd, optouts_group):
    cli.add_command(command)
cli.add_command(inbox_group)
cli.add_command(receiver_cmd)


def main() -> None:
    # The console's helper process is started by re-running this executable; in the
    # packaged app this call turns such a run into that helper.
    multiprocessing.freeze_support()
    cli.main(prog_name="relaydesk")


if __name__ == "__main__":
    main()
