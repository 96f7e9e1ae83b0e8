"""At the smallest size the window allows, every page shows its labels, buttons and
check boxes whole: nothing is squeezed below the width its text needs."""

from __future__ import annotations

import contextlib

import pytest
from PySide6.QtWidgets import QAbstractButton, QApplication, QLabel, QWidget
from pytestqt.exceptions import TimeoutError as WaitTimeout
from pytestqt.qtbot import QtBot

from desktop.app import Console
from tests.desktop.conftest import idle, open_page

PAGES = ["dashboard", "compose", "contacts", "optouts", "campaigns", "inbox", "workers",
         "failed", "inspector", "settings"]


def clipped(root: QWidget) -> list[str]:
    """Visible labels and buttons narrower than their minimum size hint (their text)."""
    found = []
    for widget in root.findChildren(QWidget):
        if not isinstance(widget, QLabel | QAbstractButton) or not widget.isVisibleTo(root):
            continue
        text = widget.text()
        if not text.strip():
            continue
        need = widget.minimumSizeHint().width()
        if widget.width() < need:
            found.append(f"{type(widget).__name__} {text!r}: {widget.width()} px of {need}")
        tall = widget.heightForWidth(widget.width()) if widget.hasHeightForWidth() else \
            widget.minimumSizeHint().height()
        if widget.height() < tall:  # e.g. a wrapped text given one line
            found.append(f"{type(widget).__name__} {text!r}: {widget.height()} px high "
                         f"of {tall}")
    return found


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_every_page_fits_the_smallest_window(console: Console, qtbot: QtBot,
                                             qapp: QApplication, theme: str) -> None:
    from desktop.theme import apply_theme

    apply_theme(qapp, theme)
    window = console.window
    smallest = window.minimumSize()  # set explicitly: the layouts get no say below it
    window.resize(smallest)
    problems = {}
    for page_id in PAGES:
        page = open_page(console, page_id)
        qtbot.waitUntil(lambda: window.size() == smallest and idle(console))

        def found(page: QWidget = page) -> list[str]:
            return clipped(page) + clipped(window.statusBar())

        # Texts that just arrived relayout the page, then its scroll area, over a few
        # turns of the event loop: judge the settled layout.
        with contextlib.suppress(WaitTimeout):
            qtbot.waitUntil(lambda: not found(), timeout=3000)
        if found():
            problems[page_id] = found()
    assert not problems, f"clipped at {smallest.width()}x{smallest.height()}: {problems}"
