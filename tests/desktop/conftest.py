"""The console built on the test's own data dir, with the session's QApplication."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
from PySide6.QtWidgets import QApplication, QDialog, QMessageBox
from pytestqt.qtbot import QtBot

from desktop.app import Console, build_console
from desktop.pages.base import Page
from desktop.pages.contacts_page import ContactsPage
from engine.config.settings import load_settings
from engine.infra.sandbox_gateway import GatewayServer
from engine.infra.worker_registry import live_workers
from tests.support import http_json, wait_for


@pytest.fixture
def console(qapp: QApplication, qtbot: QtBot) -> Iterator[Console]:
    built = build_console(load_settings(), theme="light")
    built.window.show()
    qtbot.waitExposed(built.window)
    yield built
    close(built, qapp)


def close(console: Console, qapp: QApplication) -> None:
    """Close what a test left open, the console, and whatever it started."""
    for widget in QApplication.topLevelWidgets():
        if isinstance(widget, QDialog | QMessageBox) and widget.isVisible():
            widget.close()
    console.close(wait=True)
    console.ctx.services.stop_local_services()
    qapp.processEvents()


def open_page(console: Console, page_id: str) -> Page:
    console.window.show_page(page_id)
    return console.window.page(page_id)


def idle(console: Console) -> bool:
    return console.ctx.background.in_flight == 0


def contacts_page(console: Console, qtbot: QtBot) -> ContactsPage:
    page = open_page(console, "contacts")
    assert isinstance(page, ContactsPage)
    qtbot.waitUntil(lambda: idle(console))
    return page


@pytest.fixture
def pipeline_console(qapp: QApplication, qtbot: QtBot, fast_pipeline: None,
                     gateway: GatewayServer) -> Iterator[Console]:
    """The console over the real pipeline, started the way the app starts it: embedded
    Redis and one worker process launched by the console's own supervisor."""
    built = build_console(load_settings(), theme="light")
    built.window.show()
    built.ctx.services.start_local_pipeline()
    client = built.ctx.services.redis()
    wait_for(lambda: live_workers(client), timeout=60, message="the console's worker")
    yield built
    close(built, qapp)


def delivered(gateway: GatewayServer) -> Counter[str]:
    """How many times each phone number reached the gateway."""
    return Counter(m["to"] for m in http_json(gateway.url + "/messages"))
