"""``relaydesk gui --screenshot-dir DIR [--demo]``: visit every page, save one PNG per page
named after it, and exit, stopping whatever the tour started. Works offscreen."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QPoint, QTimer
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import QScrollArea, QWidget

if TYPE_CHECKING:
    from desktop.app import Console
    from desktop.demo import Demo
    from desktop.pages.compose_page import ComposePage

log = logging.getLogger(__name__)

SETTLE_MS = 400  # let the last results paint before the grab
POLL_MS = 50
PAGE_TIMEOUT_MS = 15_000
# The demo's dashboard is taken last, once this much has gone out: its charts then show
# the campaign rather than an empty axis.
DEMO_DASHBOARD_SENT = 10
DEMO_TEMPLATE = ("Dear #name, thank you for your pledge of #pledge. You have paid "
                 "#paid_amount; #balance remains, #days_remain days to go.")
# Compose as the README shows it: filters set, and a curly apostrophe and a dash (UCS-2)
# highlighted, with Replace with GSM-7 equivalents offered.
DEMO_SCHEDULED_TEMPLATE = ("Dear #name, you’ve paid #paid_amount of your #pledge pledge — "
                           "#balance remains, #days_remain days to go. Thank you!")
SEND_LATER_SHOT = "compose-send-later.png"
# Settings, Reports and replies, with the callback URLs an example public URL gives (shown
# only: nothing is saved).
CALLBACKS_SHOT = "settings-callbacks.png"
DEMO_PUBLIC_URL = "https://relay.example.org"


def scroll_to_top(widget: QWidget) -> None:
    """Scroll the scroll area ``widget`` is in so that it starts at the top."""
    area = widget.parentWidget()
    while area is not None and not isinstance(area, QScrollArea):
        area = area.parentWidget()
    if area is not None and area.widget() is not None:
        top = widget.mapTo(area.widget(), QPoint(0, 0)).y()
        area.verticalScrollBar().setValue(max(top - 12, 0))


class ScreenshotTour:
    def __init__(self, console: Console, directory: Path, *, demo: bool) -> None:
        self.console = console
        self.directory = directory
        self.demo = demo
        self.saved: list[Path] = []
        self.seeded: Demo | None = None
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
    def _seed(self) -> Demo:
        from desktop.demo import seed_demo

        return seed_demo(self.console.ctx)

    def _seeded(self, seeded: Demo) -> None:
        """Send the demo campaign the way an operator does, from Compose."""
        from desktop.pages.compose_page import ComposePage

        self.seeded = seeded
        compose = self.console.window.page("compose")
        assert isinstance(compose, ComposePage)
        self.console.ctx.bus.contacts_changed.emit()
        compose.name.setText("Demo: pledge reminder")
        compose.editor.setPlainText(DEMO_TEMPLATE)
        self._waited = 0
        self._until(compose.send_button.isEnabled,
                    lambda: compose.send(compose.request()) or self._until(
                        lambda: compose.progress.summary is not None and
                        compose.progress.summary["sent"] > 0, self._compose_states))

    # -- Compose's filters, Unicode hint and Send later (demo only) --------------------------
    def _compose_states(self) -> None:
        """Set filters and a template with UCS-2 characters, then schedule a second campaign
        through Send later…; its dialog, over the window, is saved as SEND_LATER_SHOT. The
        tour's compose.png then shows the filters, the highlight and the scheduled note."""
        from desktop.pages.compose_page import ComposePage

        compose = self.console.window.page("compose")
        assert isinstance(compose, ComposePage)
        self.console.window.show_page("compose")
        compose.name.setText("Demo: still owing, east and west")
        compose.include_tags.set_chosen(["east", "west"])
        compose.exclude_tags.set_chosen(["elders"])
        compose.owing.setChecked(True)
        compose.editor.setPlainText(DEMO_SCHEDULED_TEMPLATE)
        self._waited = 0
        self._until(compose.later_button.isEnabled,
                    lambda: compose.ask_send_later() or self._wait_then(
                        lambda: self._grab_send_later(compose)))

    def _grab_send_later(self, compose: ComposePage) -> None:
        dialog = compose.later_dialog
        picture = self.console.window.grab()
        shot = dialog.grab()
        painter = QPainter(picture)
        painter.fillRect(picture.rect(), QColor(0, 0, 0, 70))  # the window behind a modal
        corner = QPoint((picture.width() - shot.width()) // 2,
                        (picture.height() - shot.height()) // 3)
        painter.drawPixmap(corner, shot)
        painter.setPen(dialog.palette().mid().color())
        painter.drawRect(corner.x() - 1, corner.y() - 1, shot.width() + 1, shot.height() + 1)
        painter.end()
        path = self.directory / SEND_LATER_SHOT
        picture.save(str(path))
        self.saved.append(path)
        print(path)
        dialog.accept()  # the time it proposes: the confirmation follows
        if dialog.when is None:  # refused (the dialog says why): nothing to confirm
            self._failed(RuntimeError(dialog.error.text()))
            return
        box = compose.confirm_box
        next(b for b in box.buttons() if b.text() == "Schedule").click()
        self._waited = 0
        self._until(lambda: compose.last_campaign is not None and
                    compose.last_campaign.scheduled_at is not None, self._next_page)

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
            # Sent, and (once the gateway's reports came back through the receiver) delivered.
            self._until(lambda: page.figures().get("sent_last_hour", 0) >= DEMO_DASHBOARD_SENT
                        and page.figures().get("delivered", 0) > 0,
                        lambda: self._wait_then(lambda: self._grab(page_id)))
            return
        if self.demo and page_id == "campaigns" and self.seeded is not None:
            self._show_delivery(self.seeded.history[0])
            return
        self._wait_then(lambda: self._grab(page_id))

    def _show_delivery(self, campaign_id: int) -> None:
        """Campaigns with the earlier campaign selected: its delivered, undelivered (with
        the network's reasons) and expired messages, and Send again to undelivered…"""
        from desktop.pages.campaigns_page import CampaignsPage

        page = self.console.window.page("campaigns")
        assert isinstance(page, CampaignsPage)
        page.select_campaign(campaign_id)
        self._until(lambda: page.selected() is not None and page.selected().id == campaign_id
                    and page.messages.rowCount() > 0,
                    lambda: self._wait_then(lambda: self._grab("campaigns")))

    def _wait_then(self, action: Callable[[], None]) -> None:
        """Wait until no background call is in flight, then give the view a moment."""
        if self.console.ctx.background.in_flight and self._waited < PAGE_TIMEOUT_MS:
            self._waited += POLL_MS
            QTimer.singleShot(POLL_MS, lambda: self._wait_then(action))
            return
        QTimer.singleShot(SETTLE_MS, action)

    def _grab(self, page_id: str) -> None:
        self._save(f"{page_id}.png")
        if self.demo and page_id == "settings":
            self._stage_callbacks()
            return
        self._next_page()

    def _save(self, name: str) -> None:
        path = self.directory / name
        self.console.window.grab().save(str(path))
        self.saved.append(path)
        print(path)

    def _stage_callbacks(self) -> None:
        """The Reports and replies section as it looks once a public URL is saved."""
        from dataclasses import replace

        from desktop.callback_urls import read_setup
        from desktop.pages.settings_page import CALLBACK_GROUP, SettingsPage

        page = self.console.window.page("settings")
        assert isinstance(page, SettingsPage)
        page.show_group(CALLBACK_GROUP)
        staged = replace(self.console.ctx.settings, public_url=DEMO_PUBLIC_URL,
                         receiver_port=self.console.ctx.settings.receiver_port or 8026)

        def shown(setup: object) -> None:
            page.callbacks.show_urls(setup)  # type: ignore[arg-type]
            self._wait_then(lambda: scroll_to_top(page.callbacks) or self._wait_then(
                lambda: self._save(CALLBACKS_SHOT) or self._next_page()))

        self.console.ctx.background.run(read_setup, staged, on_done=shown,
                                        on_error=self._failed)

    def _finish(self, code: int) -> None:
        def done(_: object = None) -> None:
            self.console.close()
            self.console.app.exit(code)

        # Whatever the tour started (Redis, gateway, workers) stops; nothing else does.
        self.console.ctx.background.run(self.console.ctx.services.stop_local_services,
                                        on_done=done, on_error=lambda e: done())
