"""The page contract: an id, a title and an icon for the sidebar, and a hook called each
time the page is shown (pages refresh lazily, only when the operator looks at them).

A live page sets ``refresh_ms`` and overrides ``tick()``: the base class calls it that often
while the page is on screen, and not while another page is shown or the window is
minimised."""

from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtGui import QHideEvent, QShowEvent
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from desktop.context import ConsoleContext
from desktop.widgets import heading


class Page(QWidget):
    page_id = ""
    title = ""
    icon_name = ""
    refresh_ms = 0  # a live page's tick interval; 0: the page does not refresh on its own

    def __init__(self, ctx: ConsoleContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.setObjectName(f"page-{self.page_id}")
        self.refresh_timer = QTimer(self, interval=self.refresh_ms)
        self.refresh_timer.timeout.connect(self.tick)

    def activated(self) -> None:
        """The operator switched to this page."""

    def tick(self) -> None:
        """Every ``refresh_ms`` while the page is shown and live."""

    def is_live(self) -> bool:
        """Whether the page refreshes now (a page that can be turned off says so here)."""
        return self.refresh_ms > 0

    def update_refresh(self) -> None:
        """Tick while the page is shown and live; call it when is_live() changes."""
        if self.isVisible() and self.is_live():
            if not self.refresh_timer.isActive():
                self.refresh_timer.start()
        else:
            self.refresh_timer.stop()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.update_refresh()
        if event.spontaneous() and self.refresh_timer.isActive():
            self.tick()  # the window is back from minimised: catch up now, not a tick later

    def hideEvent(self, event: QHideEvent) -> None:
        # Another page is shown, or the window is minimised (the page still counts as
        # visible then, so the timer is stopped here rather than asked in update_refresh).
        self.refresh_timer.stop()
        super().hideEvent(event)

    def shutdown(self) -> None:
        """The window is closing: stop timers (a page with more of its own stops them too)."""
        self.refresh_timer.stop()


def page_header(title: str, subtitle: str = "") -> QWidget:
    box = QWidget()
    layout = QVBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 6)
    layout.setSpacing(2)
    layout.addWidget(heading(title, 1.45))
    if subtitle:
        sub = QLabel(subtitle)
        sub.setWordWrap(True)
        sub.setEnabled(False)  # the palette's muted text colour
        layout.addWidget(sub)
    return box
