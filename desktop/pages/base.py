"""The page contract: an id, a title and an icon for the sidebar, and a hook called each
time the page is shown (pages refresh lazily, only when the operator looks at them)."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from desktop.context import ConsoleContext
from desktop.widgets import heading


class Page(QWidget):
    page_id = ""
    title = ""
    icon_name = ""

    def __init__(self, ctx: ConsoleContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.setObjectName(f"page-{self.page_id}")

    def activated(self) -> None:
        """The operator switched to this page."""

    def shutdown(self) -> None:
        """The window is closing: stop timers."""


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
