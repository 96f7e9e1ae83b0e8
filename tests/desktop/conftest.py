"""The console built on the test's own data dir, with the session's QApplication."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PySide6.QtWidgets import QApplication, QDialog, QMessageBox
from pytestqt.qtbot import QtBot

from desktop.app import Console, build_console
from desktop.pages.base import Page
from engine.settings import load_settings


@pytest.fixture
def console(qapp: QApplication, qtbot: QtBot) -> Iterator[Console]:
    built = build_console(load_settings(), theme="light")
    built.window.show()
    qtbot.waitExposed(built.window)
    yield built
    for widget in QApplication.topLevelWidgets():
        if isinstance(widget, QDialog | QMessageBox) and widget.isVisible():
            widget.close()
    built.close(wait=True)
    built.ctx.services.stop_local_services()
    qapp.processEvents()


def open_page(console: Console, page_id: str) -> Page:
    console.window.show_page(page_id)
    return console.window.page(page_id)


def idle(console: Console) -> bool:
    return console.ctx.background.in_flight == 0
