"""``relaydesk gui --screenshot-dir DIR [--demo]``: visit every page, save one PNG per page
named after it, and exit, stopping whatever the tour started. Works offscreen."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QTimer

if TYPE_CHECKING:
    from desktop.app import Console

log = logging.getLogger(__name__)

SETTLE_MS = 400  # let the last results paint before the grab
POLL_MS = 50
PAGE_TIMEOUT_MS = 15_000
# The demo's dashboard is taken last, once this much has gone out: its charts then show
# the campaign rather than an empty axis.
DEMO_DASHBOARD_SENT = 10
DEMO_TEMPLATE = ("Dear #name, thank you for your pledge of #pledge. You have paid "
                 "#paid_amount; #balance remains, #days_remain days to go.")


class ScreenshotTour:
    def __init__(self, console: Console, directory: Path, *, demo: bool) -> None:
        self.console = console
        self.directory = directory
        self.demo = demo
        self.saved: list[Path] = []
        self.pages = [page.page_id for page in console.window.pages]
        if demo:
            self.pages.append(self.pages.pop(self.pages.index("dashboard")))
        self._waited = 0

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        window = self.console.window
        window.resize(1280, 800)
        window.show()
        if self.demo:
            self.console.ctx.background.run(self._seed, on_done=self._seeded,
                                            on_error=self._failed)
        else:
            QTimer.singleShot(0, self._next_page)

    # -- demo data -------------------------------------------------------------------------
    def _seed(self) -> None:
        from desktop.demo import seed_demo

        seed_demo(self.console.ctx)

    def _seeded(self, _: object) -> None:
        """Send the demo campaign the way an operator does, from Compose."""
        from desktop.pages.compose_page import ComposePage

        compose = self.console.window.page("compose")
        assert isinstance(compose, ComposePage)
        self.console.ctx.bus.contacts_changed.emit()
        compose.name.setText("Demo: pledge reminder")
        compose.editor.setPlainText(DEMO_TEMPLATE)
        self._waited = 0
        self._until(compose.send_button.isEnabled,
                    lambda: compose.send(compose.request()) or self._until(
                        lambda: compose.progress.summary is not None and
                        compose.progress.summary["sent"] > 0, self._next_page))

    def _until(self, condition: Callable[[], bool], then: Callable[[], None]) -> None:
        if condition() or self._waited >= PAGE_TIMEOUT_MS:
            self._waited = 0
            then()
            return
        self._waited += POLL_MS
        QTimer.singleShot(POLL_MS, lambda: self._until(condition, then))

    def _failed(self, error: BaseException) -> None:
        log.error("screenshot demo failed: %s", error)
        print(f"relaydesk gui --demo: {type(error).__name__}: {error}")
        self._finish(1)

    # -- the tour --------------------------------------------------------------------------
    def _next_page(self) -> None:
        if not self.pages:
            self._finish(0)
            return
        page_id = self.pages.pop(0)
        self.console.window.show_page(page_id)
        self._waited = 0
        if self.demo and page_id == "dashboard":
            page = self.console.window.page("dashboard")
            self._until(lambda: page.figures().get("sent_last_hour", 0) >= DEMO_DASHBOARD_SENT,
                        lambda: self._wait_then(lambda: self._grab(page_id)))
            return
        self._wait_then(lambda: self._grab(page_id))

    def _wait_then(self, action: Callable[[], None]) -> None:
        """Wait until no background call is in flight, then give the view a moment."""
        if self.console.ctx.background.in_flight and self._waited < PAGE_TIMEOUT_MS:
            self._waited += POLL_MS
            QTimer.singleShot(POLL_MS, lambda: self._wait_then(action))
            return
        QTimer.singleShot(SETTLE_MS, action)

    def _grab(self, page_id: str) -> None:
        path = self.directory / f"{page_id}.png"
        self.console.window.grab().save(str(path))
        self.saved.append(path)
        print(path)
        self._next_page()

    def _finish(self, code: int) -> None:
        def done(_: object = None) -> None:
            self.console.close()
            self.console.app.exit(code)

        # Whatever the tour started (Redis, gateway, workers) stops; nothing else does.
        self.console.ctx.background.run(self.console.ctx.services.stop_local_services,
                                        on_done=done, on_error=lambda e: done())
