"""The page base class owns the refresh timer: a live page ticks while it is on screen,
not while another page is shown, the window is minimised or the window has closed."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QStackedWidget, QWidget
from pytestqt.qtbot import QtBot

from desktop.app import Console
from desktop.context import ConsoleContext
from desktop.pages.base import Page


class Ticking(Page):
    page_id = "ticking"
    refresh_ms = 10

    def __init__(self, ctx: ConsoleContext) -> None:
        super().__init__(ctx)
        self.ticks = 0
        self.live = True

    def is_live(self) -> bool:
        return self.live

    def tick(self) -> None:
        self.ticks += 1


def test_a_live_page_ticks_only_while_shown_and_live(console: Console, qtbot: QtBot) -> None:
    page, other = Ticking(console.ctx), QWidget()
    stack = QStackedWidget()
    qtbot.addWidget(stack)
    stack.addWidget(page)
    stack.addWidget(other)
    assert not page.refresh_timer.isActive()  # built, not shown yet
    stack.show()
    qtbot.waitExposed(stack)
    qtbot.waitUntil(lambda: page.ticks >= 3)

    stack.setCurrentWidget(other)
    assert not page.refresh_timer.isActive()
    stack.setCurrentWidget(page)
    assert page.refresh_timer.isActive()

    page.live = False  # e.g. the inspector turned off in the settings
    page.update_refresh()
    assert not page.refresh_timer.isActive()
    page.live = True
    page.update_refresh()
    assert page.refresh_timer.isActive()

    stack.setWindowState(Qt.WindowState.WindowMinimized)
    qtbot.waitUntil(lambda: not page.refresh_timer.isActive())
    assert page.isVisible()  # minimised still counts as visible: the timer stops anyway
    page.refresh_timer.setInterval(3_600_000)  # from here on, a tick is the catch-up one
    ticks = page.ticks
    stack.setWindowState(Qt.WindowState.WindowNoState)
    qtbot.waitUntil(page.refresh_timer.isActive)
    assert page.ticks == ticks + 1  # caught up on the way back, not an interval later

    page.shutdown()
    assert not page.refresh_timer.isActive()


def test_a_page_without_an_interval_never_ticks(console: Console, qtbot: QtBot) -> None:
    page = Page(console.ctx)
    qtbot.addWidget(page)
    page.show()
    qtbot.waitExposed(page)
    assert not page.is_live()
    assert not page.refresh_timer.isActive()


def test_the_console_pages_refresh_while_shown(console: Console) -> None:
    window = console.window
    live = [p for p in window.pages if p.refresh_ms]
    assert {p.page_id for p in live} >= {"dashboard", "campaigns", "failed", "workers"}
    for page in live:
        window.show_page(page.page_id)
        assert page.refresh_timer.isActive() == page.is_live(), page.page_id
        assert all(not p.refresh_timer.isActive() for p in window.pages if p is not page)
