"""Help → About RelayDesk shows the one version, the Python and Qt versions and the data
dir, and copies them for a support request."""

from __future__ import annotations

import platform
from pathlib import Path

from PySide6.QtCore import qVersion
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from desktop.about import AboutDialog
from desktop.app import Console
from engine import __version__


def about_dialogs() -> list[AboutDialog]:
    return [w for w in QApplication.topLevelWidgets()
            if isinstance(w, AboutDialog) and w.isVisible()]


def test_help_menu_opens_about_with_versions_and_data_dir(console: Console, qtbot: QtBot,
                                                          isolated_env: Path) -> None:
    window = console.window
    menus = {a.text().replace("&", ""): a.menu() for a in window.menuBar().actions()}
    assert [a.text() for a in menus["Help"].actions()] == ["About RelayDesk"]

    window.about_action.trigger()
    qtbot.waitUntil(lambda: bool(about_dialogs()))
    dialog = about_dialogs()[0]
    assert dialog.windowTitle() == "About RelayDesk"
    facts = dict(dialog.facts)
    assert facts["Version"] == __version__
    assert facts["Python"].startswith(platform.python_version())
    assert facts["Qt"].startswith(qVersion())
    assert facts["Data dir"] == str(isolated_env)
    assert facts["Installation"].startswith("Python package in")  # not the packaged app
    shown = dialog.details.text()
    assert str(isolated_env) in shown
    assert __version__ in shown

    dialog.copy_button.click()
    copied = QGuiApplication.clipboard().text()
    assert copied.splitlines()[0] == f"RelayDesk {__version__}"
    assert f"Data dir: {isolated_env}" in copied.splitlines()

    dialog.reject()
    qtbot.waitUntil(lambda: not about_dialogs())
