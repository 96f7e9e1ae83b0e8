"""The console as the owner of the local pipeline: at start it brings up what the settings
use locally (embedded Redis, sandbox gateway, workers); at close it asks whether the
workers keep running."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtGui import QCloseEvent

if TYPE_CHECKING:
    from desktop.app import Console


def start_local_pipeline(console: Console) -> None:
    window = console.window
    window.statusBar().showMessage("Starting the local Redis and gateway…")

    def started(_: object) -> None:
        window.statusBar().showMessage("Local services running", 4000)
        window.poll_status()

    console.ctx.background.run(console.ctx.services.start_local_services, on_done=started)


def install_close_policy(console: Console) -> None:
    def allow_close(event: QCloseEvent) -> bool:
        return True

    console.window.close_policy = allow_close
