"""Help → About RelayDesk: the version and where this installation keeps things, in a form
an operator can copy into a support request."""

from __future__ import annotations

import html
import platform
import sys
from pathlib import Path

import PySide6
from PySide6.QtCore import Qt, qVersion
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPushButton,
    QVBoxLayout,
)

from desktop.context import ConsoleContext
from desktop.resources import icon
from engine import __version__
from engine.config.settings import Settings


def installation() -> str:
    """Where the running RelayDesk lives: the packaged app's folder, or the source."""
    bundle = getattr(sys, "_MEIPASS", None)
    if getattr(sys, "frozen", False) and bundle:
        return f"packaged app in {Path(sys.executable).resolve().parent}"
    return f"Python package in {Path(__file__).resolve().parent.parent}"


def about_facts(settings: Settings) -> list[tuple[str, str]]:
    """What the dialog shows (and copies), in order. Reads nothing but this process."""
    return [
        ("Version", __version__),
        ("Python", f"{platform.python_version()} ({platform.python_implementation()})"),
        ("Qt", f"{qVersion()} (PySide6 {PySide6.__version__})"),
        ("System", platform.platform(terse=True)),
        ("Installation", installation()),
        ("Data dir", str(settings.data_dir)),
        ("Console log", str(settings.data_dir / "logs" / "console.log")),
    ]


class AboutDialog(QDialog):
    def __init__(self, settings: Settings, parent: QMainWindow | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("about-dialog")
        self.setWindowTitle("About RelayDesk")
        self.facts = about_facts(settings)

        logo = QLabel()
        logo.setPixmap(icon("relaydesk", size=64).pixmap(64, 64))
        title = QLabel(f"<h2>RelayDesk {html.escape(__version__)}</h2>"
                       "Personalised SMS campaigns through Celery workers on Redis.")
        title.setWordWrap(True)
        header = QHBoxLayout()
        header.addWidget(logo)
        header.addWidget(title, 1)

        rows = "".join(f"<tr><td><b>{html.escape(k)}</b>&nbsp;&nbsp;</td>"
                       f"<td>{html.escape(v)}</td></tr>" for k, v in self.facts)
        self.details = QLabel(f"<table>{rows}</table>")
        self.details.setObjectName("about-details")
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.copy_button = QPushButton("Copy details")
        self.copy_button.clicked.connect(self.copy_details)
        buttons.addButton(self.copy_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addLayout(header)
        layout.addWidget(self.details)
        layout.addWidget(QLabel("MIT licence. Qt is used under the LGPL v3."))
        layout.addWidget(buttons)

    def details_text(self) -> str:
        return "\n".join(f"{key}: {value}" for key, value in self.facts)

    def copy_details(self) -> None:
        QGuiApplication.clipboard().setText(f"RelayDesk {__version__}\n{self.details_text()}")


def _show(dialog: AboutDialog) -> None:
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    dialog.open()


def install_about(window: QMainWindow, ctx: ConsoleContext) -> QAction:
    """Add Help → About RelayDesk (F1) to the window's menu bar; returns the action. The
    settings are read when it is opened: a settings save may have reloaded them."""
    action = QAction("About RelayDesk", window)
    action.setObjectName("about-action")
    action.setMenuRole(QAction.MenuRole.AboutRole)  # macOS moves it to the app menu
    action.setShortcut(QKeySequence(QKeySequence.StandardKey.HelpContents))
    action.triggered.connect(lambda: _show(AboutDialog(ctx.settings, window)))
    window.menuBar().addMenu("&Help").addAction(action)
    return action
