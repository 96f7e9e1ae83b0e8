"""The ``relaydesk`` command as installed: the engine's commands plus ``gui``, the console.

``gui`` lives here, with the desktop, so that the engine never imports Qt: ``python -m
engine`` (how RelayDesk starts its workers) has every command but this one.
"""

from __future__ import annotations

from pathlib import Path

import click

from engine.cli.common import AppContext, pass_app
from engine.cli.main import cli
from engine.cli.main import main as engine_main
from engine.domain.errors import OperatorError


@cli.command("gui")
@click.option("--theme", type=click.Choice(["system", "light", "dark"]), default="system",
              show_default=True, help="Colour theme.")
@click.option("--screenshot-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Visit every page, save one PNG per page into DIR, and exit "
                   "(works without a display).")
@click.option("--demo", is_flag=True,
              help="With --screenshot-dir: seed sample contacts and send a small campaign "
                   "first, so the pages have data.")
@pass_app
def gui_cmd(app: AppContext, theme: str = "system", screenshot_dir: Path | None = None,
            demo: bool = False) -> None:
    """Open the desktop console (the default when no command is given)."""
    if demo and screenshot_dir is None:
        raise click.UsageError("--demo goes with --screenshot-dir")
    # Here, not at the top: every other command (a worker too) starts without loading Qt.
    from desktop.app import run_gui, startup_error

    try:
        settings = app.settings
    except OperatorError as exc:  # an unusable data dir, a bad setting
        # Started from a menu, there is no terminal to read these in: a window says it.
        raise SystemExit(startup_error(str(exc), window=screenshot_dir is None)) from None
    raise SystemExit(run_gui(settings, theme=theme, screenshot_dir=screenshot_dir, demo=demo))


def main() -> None:
    engine_main()
