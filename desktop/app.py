"""Starting the console: the QApplication, theme, error reporting, single instance, pages."""

from __future__ import annotations

import gc
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import sentry_sdk
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QMessageBox

from desktop.background import Background
from desktop.context import Bus, ConsoleContext
from desktop.errors import ErrorReporter, keep_out_of_sentry_logging, setup_logging
from desktop.main_window import MainWindow
from desktop.pages.base import Page
from desktop.resources import icon
from desktop.services import Services
from desktop.single_instance import (
    InstanceServer,
    RuntimeDirNotPrivate,
    ask_running_instance_to_raise,
)
from desktop.theme import apply_theme
from engine import __version__
from engine.config.settings import Settings

log = logging.getLogger(__name__)


def application() -> QApplication:
    existing = QApplication.instance()
    if isinstance(existing, QApplication):
        return existing
    QApplication.setHighDpiScaleFactorRoundingPolicy(
        Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
    app = QApplication(sys.argv[:1])
    app.setApplicationName("RelayDesk")
    app.setOrganizationName("RelayDesk")
    app.setApplicationVersion(__version__)
    app.setDesktopFileName("relaydesk")
    return app


def build_pages(ctx: ConsoleContext) -> list[Page]:
    from desktop.pages.campaigns_page import CampaignsPage
    from desktop.pages.compose_page import ComposePage
    from desktop.pages.contacts_page import ContactsPage
    from desktop.pages.dashboard_page import DashboardPage
    from desktop.pages.failed_page import FailedPage
    from desktop.pages.inbox_page import InboxPage
    from desktop.pages.inspector_page import InspectorPage
    from desktop.pages.optouts_page import OptOutsPage
    from desktop.pages.settings_page import SettingsPage
    from desktop.pages.workers_page import WorkersPage

    return [
        DashboardPage(ctx),
        ComposePage(ctx),
        ContactsPage(ctx),
        OptOutsPage(ctx),
        CampaignsPage(ctx),
        InboxPage(ctx),
        WorkersPage(ctx),
        FailedPage(ctx),
        InspectorPage(ctx),
        SettingsPage(ctx),
    ]


@dataclass
class Console:
    app: QApplication
    window: MainWindow
    ctx: ConsoleContext
    errors: ErrorReporter

    def close(self, wait: bool = False) -> None:
        self.window.close_policy = None
        self.window.close()
        self.ctx.background.shutdown(wait=wait)
        self.ctx.services.close()
        self.window.deleteLater()


def build_console(settings: Settings, *, theme: str = "system") -> Console:
    app = application()
    apply_theme(app, theme)
    if theme == "system":  # follow the desktop when it switches between light and dark
        app.styleHints().colorSchemeChanged.connect(lambda _: apply_theme(app, "system"))
    app.setWindowIcon(icon("relaydesk"))
    errors = ErrorReporter()
    background = Background()
    background.error.connect(errors.report)
    ctx = ConsoleContext(Services(settings), background, Bus())
    window = MainWindow(ctx, build_pages(ctx), str(settings.data_dir / "console.ini"))
    # Everything built so far lives as long as the window: keep it out of the collector's
    # full passes, which otherwise walk all of it on the UI thread (tens of ms each).
    gc.freeze()
    return Console(app, window, ctx, errors)


def run_gui(settings: Settings, *, theme: str = "system", screenshot_dir: Path | None = None,
            demo: bool = False) -> int:
    if screenshot_dir is not None:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    elif not has_display():
        print("RelayDesk found no display to open its window on (no DISPLAY or "
              "WAYLAND_DISPLAY). On a server, run the pipeline with 'relaydesk supervise' "
              "and send with 'relaydesk campaign send', or save the window as pictures with "
              "'relaydesk gui --screenshot-dir DIR'.", file=sys.stderr)
        return 2
    app = application()
    try:
        already_open = screenshot_dir is None and ask_running_instance_to_raise(
            settings.data_dir)
    except RuntimeDirNotPrivate as exc:
        return startup_error(str(exc))
    if already_open:
        print("RelayDesk is already open for this data dir; brought it to the front.")
        return 0
    setup_logging(settings.data_dir)
    sentry_sdk.set_tag("component", "console")  # the command line set it up as "cli"
    keep_out_of_sentry_logging()
    console = build_console(settings, theme=theme)
    console.errors.install()
    if screenshot_dir is not None:
        from desktop.screenshots import ScreenshotTour

        tour = ScreenshotTour(console, screenshot_dir, demo=demo)
        tour.start()
        return app.exec()
    instance = InstanceServer(settings.data_dir)
    instance.raise_requested.connect(lambda: _bring_to_front(console.window))
    from desktop.local_control import install_close_policy, start_local_pipeline

    install_close_policy(console)
    start_local_pipeline(console)
    from desktop.heavy_work import warm_up

    console.ctx.background.run_in_process(warm_up)
    console.window.show()
    code = app.exec()
    instance.close()
    console.ctx.background.shutdown()
    return code


def startup_error(message: str, *, window: bool = True) -> int:
    """The console cannot start (e.g. its data dir cannot be written): say why on stderr
    and, when there is a display, in a window, since a console started from a menu has no
    terminal. Returns the exit status."""
    print(f"Error: {message}", file=sys.stderr)
    if window and has_display():
        application()
        box = QMessageBox(QMessageBox.Icon.Critical, "RelayDesk cannot start", message,
                          QMessageBox.StandardButton.Ok)
        box.setObjectName("startup-error")
        box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        box.exec()  # nothing else runs yet: a modal loop is all there is
    return 1


def has_display() -> bool:
    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _bring_to_front(window: MainWindow) -> None:
    window.setWindowState(window.windowState() & ~Qt.WindowState.WindowMinimized)
    window.show()
    window.raise_()
    window.activateWindow()
