"""Campaigns: every campaign with its counts, who it went to and when, and for the selected
one its live progress, its messages, and pause / resume / cancel; a scheduled one can be
rescheduled, sent now or cancelled."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from desktop.campaign_progress import CampaignProgress
from desktop.campaigns_model import (
    DELIVERY_TEXT,
    CampaignEntry,
    CampaignsModel,
    MessagesModel,
    delivery_summary,
)
from desktop.context import ConsoleContext
from desktop.pages.base import Page, page_header
from desktop.pages.resend_dialog import ResendDialog
from desktop.send_later_dialog import SendLaterDialog
from desktop.widgets import ReportDialog, data_table, empty_state
from engine.domain.phones import mask_phone
from engine.infra.embedded_redis import RedisUnavailable
from engine.operations.campaigns import CreatedCampaign
from engine.operations.preview import CampaignPreview, preview_scheduled
from engine.store.models import MessageStatus

REFRESH_MS = 3000


def describe_timing(campaign: CampaignEntry) -> str:
    """When it goes (or went) out, in its own zone, and why it waits if it waits."""
    scheduled = campaign.scheduled_for()
    if campaign.missed:
        return (f"{scheduled}: missed its time (no worker was running then). Send it now or "
                "reschedule it.")
    if campaign.status == "scheduled":
        return f"scheduled for {scheduled}"
    if campaign.held_until is not None:
        return campaign.when()  # waiting for the send window (until 07:00)
    if scheduled:
        return f"was scheduled for {scheduled}"
    return "sent when it was created"


PREVIEW_SHOWN = 20  # messages a scheduled campaign's preview lists


class CampaignsPage(Page):
    page_id = "campaigns"
    title = "Campaigns"
    icon_name = "campaigns"
    refresh_ms = REFRESH_MS

    def __init__(self, ctx: ConsoleContext) -> None:
        super().__init__(ctx)
        self.selected_id: int | None = None
        self.resend_dialog: ResendDialog | None = None
        self._acting = False  # a pause, resume or cancel is under way
        self.model = CampaignsModel(ctx.services, ctx.background, self)
        self.messages = MessagesModel(ctx.services, ctx.background, self)
        layout = QVBoxLayout(self)
        layout.addWidget(page_header(
            "Campaigns", "Pause keeps every unsent message queued; resume continues where it "
                         "stopped; cancel marks the unsent messages cancelled. A scheduled "
                         "campaign waits for its time: reschedule it, send it now or cancel "
                         "it."))

        layout.addLayout(self._build_actions())

        self.table = data_table(self.model, "campaigns-table")
        for column, width in enumerate((45, 190, 105, 205, 75, 55, 70, 85, 65, 65, 50, 70,
                                        200, 110)):
            self.table.setColumnWidth(column, width)
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._selection())
        # A live refresh changes the selected row's status, schedule or counts in place.
        self.model.dataChanged.connect(lambda *_: self._selection())
        self.empty = empty_state("No campaigns yet. Write one on the Compose page.")
        self.list_stack = QStackedWidget()
        self.list_stack.addWidget(self.table)
        self.list_stack.addWidget(self.empty)

        self.detail = self._build_detail()

        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.list_stack)
        splitter.addWidget(self.detail)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 1)
        layout.addWidget(splitter, 1)

        self.model.loaded.connect(self._loaded)
        self.messages.loaded.connect(self._messages_loaded)
        ctx.bus.campaigns_changed.connect(self.model.reload)
        ctx.bus.campaign_started.connect(self.select_campaign)  # "Open in Campaigns"
        ctx.bus.settings_saved.connect(self.model.reload)
        self._update_buttons(None)
        self._loaded_once = False

    def _build_detail(self) -> QWidget:
        detail = QWidget()
        detail_layout = QHBoxLayout(detail)
        detail_layout.setContentsMargins(0, 0, 0, 0)
        progress_box = QGroupBox("Progress")
        progress_layout = QVBoxLayout(progress_box)
        self.progress = CampaignProgress(self.ctx)
        self.progress.updated.connect(self._progress_updated)
        progress_layout.addWidget(self.progress)
        facts = QFormLayout()
        self.facts: dict[str, QLabel] = {}
        for key, caption in (("audience", "Audience"), ("when", "When"),
                             ("suppressed", "Opted out"), ("delivery", "Delivered")):
            label = QLabel("–")
            label.setObjectName(f"campaign-{key}")
            label.setWordWrap(True)
            facts.addRow(caption, label)
            self.facts[key] = label
        progress_layout.addLayout(facts)
        progress_layout.addStretch()
        progress_box.setMinimumWidth(320)
        detail_layout.addWidget(progress_box)
        messages_box = QGroupBox("Messages")
        messages_layout = QVBoxLayout(messages_box)
        filter_row = QHBoxLayout()
        filter_row.addWidget(QLabel("Status:"))
        self.status_filter = QComboBox()
        self.status_filter.setObjectName("messages-status")
        self.status_filter.addItem("All", None)
        for status in MessageStatus:
            self.status_filter.addItem(status.value.capitalize(), status.value)
        self.status_filter.currentIndexChanged.connect(lambda _: self._show_messages())
        filter_row.addWidget(self.status_filter)
        filter_row.addSpacing(12)
        filter_row.addWidget(QLabel("Delivery:"))
        self.delivery_filter = QComboBox()
        self.delivery_filter.setObjectName("messages-delivery")
        self.delivery_filter.addItem("All", None)
        for delivery, text in DELIVERY_TEXT.items():
            self.delivery_filter.addItem(text.capitalize(), str(delivery))
        self.delivery_filter.setToolTip("What the provider's delivery reports said")
        self.delivery_filter.currentIndexChanged.connect(lambda _: self._show_messages())
        filter_row.addWidget(self.delivery_filter)
        filter_row.addStretch()
        self.messages_count = QLabel()
        filter_row.addWidget(self.messages_count)
        messages_layout.addLayout(filter_row)
        self.messages_table = data_table(self.messages, "messages-table")
        for column, width in enumerate((70, 120, 70, 105, 150, 65, 65, 140)):
            self.messages_table.setColumnWidth(column, width)
        messages_layout.addWidget(self.messages_table)
        detail_layout.addWidget(messages_box, 1)
        return detail

    def activated(self) -> None:
        self.model.reload()
        self.progress.poll()  # it does not poll while hidden: catch up at once

    def shutdown(self) -> None:
        super().shutdown()
        self.progress.stop()

    def tick(self) -> None:
        self.model.refresh()
        if self.selected_id is not None:
            self.messages.refresh()

    def _loaded(self, count: int) -> None:
        self.list_stack.setCurrentWidget(self.table if count else self.empty)
        self.detail.setVisible(bool(count))
        if not count:
            return
        for row in range(min(count, 200)):
            item = self.model.row_object(row)
            if item is not None and item.id == self.selected_id:
                self.table.selectRow(row)
                return
        self.table.selectRow(0)

    def selected(self) -> CampaignEntry | None:
        rows = self.table.selectionModel().selectedRows()
        return self.model.row_object(rows[0].row()) if rows else None

    def select_campaign(self, campaign_id: int) -> None:
        self.selected_id = campaign_id
        self.model.reload()

    def _selection(self) -> None:
        campaign = self.selected()
        if campaign is None:
            return
        if campaign.id != self.selected_id or self.progress.campaign_id != campaign.id:
            self.selected_id = campaign.id
            self.progress.follow(campaign.id)
            self._show_messages()
        self._show_facts(campaign)
        if not self._acting:
            self._update_buttons(campaign.status)

    def _show_messages(self) -> None:
        self.messages.show_campaign(self.selected_id, self.status_filter.currentData(),
                                    self.delivery_filter.currentData())

    def _show_facts(self, campaign: CampaignEntry) -> None:
        self.facts["audience"].setText(campaign.audience)
        self.facts["when"].setText(describe_timing(campaign))
        self.facts["suppressed"].setText(
            f"{campaign.suppressed:,} contact(s) on the opt-out list, left out")
        self.facts["delivery"].setText(delivery_summary(campaign) or "nothing sent yet")

    def _messages_loaded(self, count: int) -> None:
        campaign = self.selected()
        waiting = campaign is not None and campaign.status == "scheduled" and not count
        self.messages_count.setText("none yet: they are written when it goes out" if waiting
                                    else f"{count:,} message(s)")

    def _progress_updated(self, summary: dict[str, Any]) -> None:
        if summary["campaign"] == self.selected_id and not self._acting:
            self._update_buttons(summary["status"])

    def _build_actions(self) -> QHBoxLayout:
        actions = QHBoxLayout()
        self.pause_button = QPushButton("Pause")
        self.resume_button = QPushButton("Resume")
        self.preview_button = QPushButton("Preview…")
        self.preview_button.setToolTip("The first messages of a scheduled campaign as they "
                                       "will go out, with the figures of its send day")
        self.reschedule_button = QPushButton("Reschedule…")
        self.send_now_button = QPushButton("Send now…")
        self.cancel_button = QPushButton("Cancel campaign…")
        self.resend_button = QPushButton("Send again to undelivered…")
        self.resend_button.setToolTip("A new campaign to the contacts whose message in this "
                                      "one was not delivered, after a preview")
        for button, name in ((self.pause_button, "pause"), (self.resume_button, "resume"),
                             (self.preview_button, "preview"),
                             (self.reschedule_button, "reschedule"),
                             (self.send_now_button, "send-now"),
                             (self.cancel_button, "cancel"),
                             (self.resend_button, "resend")):
            button.setObjectName(f"campaign-{name}")
            actions.addWidget(button)
        self.pause_button.clicked.connect(lambda: self.control("pause"))
        self.resume_button.clicked.connect(lambda: self.control("resume"))
        self.preview_button.clicked.connect(self.show_preview)
        self.reschedule_button.clicked.connect(self.ask_reschedule)
        self.send_now_button.clicked.connect(self.confirm_send_now)
        self.cancel_button.clicked.connect(self.confirm_cancel)
        self.resend_button.clicked.connect(self.ask_resend)
        actions.addStretch()
        refresh = QPushButton("Refresh")
        refresh.setToolTip("Refresh (F5)")
        refresh.clicked.connect(self.activated)
        actions.addWidget(refresh)
        return actions

    def _update_buttons(self, status: str | None) -> None:
        self.pause_button.setEnabled(status in ("queued", "sending"))
        self.resume_button.setEnabled(status == "paused")
        self.preview_button.setEnabled(status == "scheduled")
        self.reschedule_button.setEnabled(status == "scheduled")
        self.send_now_button.setEnabled(status == "scheduled")
        self.cancel_button.setEnabled(status in ("queued", "sending", "paused", "scheduled"))
        campaign = self.selected() if status is not None else None
        self.resend_button.setEnabled(campaign is not None and campaign.undelivered > 0)

    def ask_resend(self) -> None:
        """Send again to the selected campaign's undelivered, after the dialog's preview and
        a confirmation."""
        campaign = self.selected()
        if campaign is None or not campaign.undelivered:
            return
        dialog = ResendDialog(self.ctx, campaign.id, campaign.name, self)
        dialog.sent.connect(self._resent)
        self.resend_dialog = dialog
        dialog.open()
        dialog.start()

    def _resent(self, created: CreatedCampaign) -> None:
        self.ctx.bus.campaigns_changed.emit()
        self.select_campaign(created.id)

    def show_preview(self) -> None:
        """The scheduled campaign as it will go out, rendered off the UI thread."""
        campaign = self.selected()
        if campaign is None or campaign.status != "scheduled":
            return
        settings, campaign_id = self.ctx.settings, campaign.id

        def render() -> CampaignPreview:
            with self.ctx.services.db().session() as session:
                return preview_scheduled(session, settings, campaign_id, limit=PREVIEW_SHOWN)

        self.preview_button.setEnabled(False)
        self.ctx.background.run(render, on_done=lambda p: self._show_preview(campaign, p),
                                on_error=self._preview_failed)

    def _show_preview(self, campaign: CampaignEntry, preview: CampaignPreview) -> None:
        self.preview_button.setEnabled(self.selected_id == campaign.id)
        left_out = f", {preview.suppressed:,} opted out left out" if preview.suppressed else ""
        summary = (f"'{campaign.name}' as it will go out at {campaign.when()}, with the figures "
                   f"of {preview.send_day:%Y-%m-%d}: {preview.recipients:,} recipient(s)"
                   f"{left_out}, {preview.segments:,} segment(s). Payments imported and "
                   "opt-outs added before then still change it.")
        shown = "\n\n".join(f"To {mask_phone(m.phone)} ({m.name}):\n{m.text}"
                            for m in preview.messages)
        more = preview.recipients - len(preview.messages)
        if more > 0:
            shown += f"\n\n… and {more:,} more"
        self.preview_dialog = ReportDialog(self, "Preview", summary, shown)
        self.preview_dialog.setObjectName("scheduled-preview")
        self.preview_dialog.open()

    def _preview_failed(self, error: BaseException) -> None:
        self._update_buttons(self.selected().status if self.selected() else None)
        self.ctx.background.error.emit(error)

    def ask_reschedule(self) -> None:
        campaign = self.selected()
        if campaign is None or campaign.status != "scheduled":
            return
        # The campaign's own zone and quiet hours, recorded when it was created.
        dialog = SendLaterDialog(self, campaign.window, title=f"Reschedule '{campaign.name}'",
                                 action="Reschedule", initial=campaign.scheduled_at)
        dialog.accepted.connect(lambda: dialog.when is not None and
                                self.control("reschedule", at=dialog.when))
        self.reschedule_dialog = dialog
        dialog.open()

    def confirm_send_now(self) -> None:
        campaign = self.selected()
        if campaign is None or campaign.status != "scheduled":
            return
        box = QMessageBox(QMessageBox.Icon.Question, "Send now",
                          f"Send '{campaign.name}' now, instead of at "
                          f"{campaign.when()}?", parent=self)
        box.setObjectName("confirm-send-now")
        box.setInformativeText(f"To {campaign.audience}: the messages are written with "
                               "today's figures, for today's audience.")
        yes = box.addButton("Send now", QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.buttonClicked.connect(lambda b: b is yes and self.control("send_now"))
        self.confirm_box = box
        box.open()

    def confirm_cancel(self) -> None:
        campaign = self.selected()
        if campaign is None:
            return
        if campaign.status == "scheduled":
            question = (f"Cancel '{campaign.name}', scheduled for {campaign.when()}? Nothing "
                        "of it has been sent, and it will not go out.")
        else:
            question = (f"Cancel '{campaign.name}'? Its "
                        f"{campaign.pending + campaign.retrying:,} unsent message(s) will be "
                        "marked cancelled and not sent. Messages already sent stay sent.")
        box = QMessageBox(QMessageBox.Icon.Warning, "Cancel campaign", question, parent=self)
        box.setObjectName("confirm-cancel")
        yes = box.addButton("Cancel campaign", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton("Keep sending", QMessageBox.ButtonRole.RejectRole)
        box.buttonClicked.connect(lambda b: b is yes and self.control("cancel"))
        self.confirm_box = box
        box.open()

    def control(self, action: str, at: datetime | None = None) -> None:
        """Pause, resume, cancel, send now or reschedule (to ``at``) the selected campaign."""
        campaign_id = self.selected_id
        if campaign_id is None or self._acting:
            return
        from engine.operations import campaign_control

        selected = self.selected()
        scheduled = selected is not None and selected.status == "scheduled"
        calls: dict[str, Callable[..., dict[str, Any]]] = {
            "reschedule": lambda: campaign_control.reschedule_campaign(
                self.ctx.services.db(), campaign_id, at, self.ctx.settings),
            "send_now": lambda: campaign_control.send_now(
                self.ctx.services.db(), self.ctx.services.redis(), self.ctx.settings,
                campaign_id),
            "pause": lambda: campaign_control.pause_campaign(
                self.ctx.services.db(), self.ctx.services.redis(), campaign_id),
            "resume": lambda: campaign_control.resume_campaign(
                self.ctx.services.db(), self.ctx.services.redis(), self.ctx.settings,
                campaign_id),
            "cancel": lambda: campaign_control.cancel_campaign(
                self.ctx.services.db(), self._redis_for_cancel(scheduled), campaign_id),
        }
        self._acting = True
        self._update_buttons(None)
        self.ctx.background.run(calls[action], on_done=self._controlled,
                                on_error=self._control_failed)

    def _redis_for_cancel(self, scheduled: bool) -> Any:
        """Redis; for a scheduled campaign None when Redis is not running: it has no job
        there and is cancelled in the database alone."""
        try:
            return self.ctx.services.redis()
        except RedisUnavailable:
            if scheduled:
                return None
            raise

    def _controlled(self, summary: dict[str, Any]) -> None:
        self._acting = False
        self._update_buttons(summary["status"])
        self.progress.follow(summary["campaign"])
        self.model.refresh()
        self.messages.refresh()

    def _control_failed(self, error: BaseException) -> None:
        self._acting = False
        self.progress.poll()
        self.ctx.background.error.emit(error)
