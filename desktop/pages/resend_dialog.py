"""Send again to undelivered…: a new campaign to exactly the contacts whose message in one
campaign ended undelivered, with the original template (editable), who it reaches, a
sample of the messages as they will go out, and a confirmation before anything is sent.

Everything that reads the database or sends runs on a background thread; the preview is
rendered again (after a pause in typing) when the template changes."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from desktop.background import Latest
from desktop.context import ConsoleContext
from desktop.errors import describe, operator_errors
from desktop.template_editor import TemplateEditor
from desktop.widgets import error_label
from engine.domain.formatting import format_duration
from engine.domain.phones import mask_phone
from engine.operations.campaigns import CreatedCampaign, Resend
from engine.operations.preview import CampaignPreview

SAMPLE = 3  # messages shown in the preview
PREVIEW_DELAY_MS = 300


@dataclass(frozen=True)
class ResendStart:
    """What the dialog opens with: the defaults (original template, name "Again: …") and
    the preview of them."""

    resend: Resend
    preview: CampaignPreview


def describe_preview(preview: CampaignPreview, price: Decimal) -> str:
    """``3 recipient(s), 1 opted out left out; 3 SMS segment(s), cost 2.40; Individual…``"""
    left_out = f", {preview.suppressed:,} opted out since, left out" if preview.suppressed \
        else ""
    cost = f", estimated cost {preview.segments * price:,.2f}" if price else ""
    return (f"{preview.recipients:,} recipient(s){left_out}; {preview.segments:,} SMS "
            f"segment(s){cost}; about {format_duration(preview.plan.estimated_duration_s)}.")


def sample_text(preview: CampaignPreview) -> str:
    shown = "\n\n".join(f"To {mask_phone(m.phone)} ({m.name}):\n{m.text}"
                         for m in preview.messages)
    more = preview.recipients - len(preview.messages)
    return shown + (f"\n\n… and {more:,} more" if more > 0 else "")


class ResendDialog(QDialog):
    """Open it with :meth:`start` (a campaign id): it reads the defaults itself."""

    sent = Signal(object)  # CreatedCampaign
    previewed = Signal()  # a preview (or its error) is on the dialog

    def __init__(self, ctx: ConsoleContext, campaign_id: int, campaign_name: str,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.campaign_id = campaign_id
        self.preview: CampaignPreview | None = None
        self.resend: Resend | None = None
        self.sending = False
        self.confirm_box: QMessageBox | None = None
        self._previews = Latest(ctx.background)  # typing makes older previews stale
        self.setObjectName("resend-dialog")
        self.setWindowTitle("Send again to undelivered")
        self.resize(640, 560)
        layout = QVBoxLayout(self)
        intro = QLabel(f"A new campaign to the contacts whose message in '{campaign_name}' "
                       "was not delivered, written with today's figures. Numbers on the "
                       "opt-out list are left out.")
        intro.setWordWrap(True)
        layout.addWidget(intro)
        form = QFormLayout()
        self.name = QLineEdit()
        self.name.setObjectName("resend-name")
        form.addRow("Name", self.name)
        layout.addLayout(form)
        layout.addWidget(QLabel("Message (the original's; edit it if you like)"))
        self.editor = TemplateEditor()
        self.editor.setObjectName("resend-template")
        self.editor.setMinimumHeight(90)
        layout.addWidget(self.editor, 1)
        self.summary = QLabel("Reading the campaign…")
        self.summary.setObjectName("resend-summary")
        self.summary.setWordWrap(True)
        layout.addWidget(self.summary)
        layout.addWidget(QLabel(f"As it will go out (the first {SAMPLE})"))
        self.sample = QPlainTextEdit()
        self.sample.setObjectName("resend-sample")
        self.sample.setReadOnly(True)
        layout.addWidget(self.sample, 1)
        self._build_footer(layout)
        self._timer = QTimer(self, singleShot=True, interval=PREVIEW_DELAY_MS)
        self._timer.timeout.connect(self.refresh_preview)
        self.editor.textChanged.connect(self._edited)
        self._update_send()

    def _build_footer(self, layout: QVBoxLayout) -> None:
        """What went wrong (kept until the next try), and the buttons."""
        self.error = error_label("resend-error")
        layout.addWidget(self.error)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.send_button = QPushButton("Send again…")
        self.send_button.setObjectName("resend-send")
        self.send_button.clicked.connect(self.confirm)
        buttons.addButton(self.send_button, QDialogButtonBox.ButtonRole.AcceptRole)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    # -- preview ---------------------------------------------------------------------------
    def start(self) -> None:
        """Read the original's template and name, and preview them."""
        ctx, campaign_id = self.ctx, self.campaign_id

        def work() -> ResendStart:
            from engine.operations.campaigns import resend_audience

            resend = resend_audience(ctx.services.db(), ctx.settings, campaign_id)
            return ResendStart(resend, _preview(ctx, resend, resend.template))

        self._previews.start()
        self._previews.submit(work, on_done=self._started, on_error=self._preview_failed)

    def _started(self, start: ResendStart) -> None:
        self.resend = start.resend
        self.name.setText(start.resend.name)
        self.editor.blockSignals(True)  # the preview of this text is here already
        self.editor.setPlainText(start.resend.template)
        self.editor.blockSignals(False)
        self._show_preview(start.preview)

    def _edited(self) -> None:
        self.preview = None  # of the old text: Send waits for the new one
        self._update_send()
        self._timer.start()

    @property
    def preview_pending(self) -> bool:
        return self._timer.isActive() or self._previews.pending

    def refresh_preview(self) -> None:
        resend = self.resend
        if resend is None:
            return
        self._timer.stop()
        self._previews.start()
        self._previews.submit(_preview, self.ctx, resend, self.editor.toPlainText(),
                              on_done=self._show_preview, on_error=self._preview_failed)

    def _show_preview(self, preview: CampaignPreview) -> None:
        self.preview = preview
        self.error.hide()
        self.summary.setText(describe_preview(preview, self.ctx.settings.price_per_segment))
        self.sample.setPlainText(sample_text(preview))
        self._update_send()
        self.previewed.emit()

    def _preview_failed(self, error: BaseException) -> None:
        self.preview = None
        if not isinstance(error, operator_errors()):
            self.ctx.background.error.emit(error)
        if self.resend is None:
            self.summary.setText("Nothing to send again.")
        self._show_error(describe(error)[0])
        self._update_send()
        self.previewed.emit()

    def _show_error(self, text: str) -> None:
        self.error.setText(text)
        self.error.show()

    def _update_send(self) -> None:
        self.send_button.setEnabled(self.preview is not None and not self.sending)
        self.send_button.setText("Sending…" if self.sending else "Send again…")

    # -- send ------------------------------------------------------------------------------
    def confirm(self) -> None:
        preview = self.preview
        if preview is None or self.sending:
            return
        box = QMessageBox(QMessageBox.Icon.Question, "Send again",
                          f"Send '{self.name.text().strip() or 'the campaign'}' to "
                          f"{preview.recipients:,} recipient(s) whose message was not "
                          "delivered?", parent=self)
        box.setObjectName("confirm-resend")
        box.setInformativeText(describe_preview(preview, self.ctx.settings.price_per_segment))
        send = box.addButton("Send", QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.buttonClicked.connect(lambda b: b is send and self.send())
        self.confirm_box = box
        box.open()

    def send(self) -> None:
        if self.sending:
            return
        self.sending = True
        self.error.hide()
        self._update_send()
        ctx, campaign_id = self.ctx, self.campaign_id
        template, name = self.editor.toPlainText(), self.name.text().strip() or None

        def work() -> CreatedCampaign:
            from desktop.pages.compose_page import start_services_and_check_provider
            from engine.operations.campaigns import resend_undelivered

            start_services_and_check_provider(ctx)  # a gateway that is down creates nothing
            return resend_undelivered(ctx.services.db(), ctx.services.redis(), ctx.settings,
                                      campaign_id, template, name)

        ctx.background.run(work, on_done=self._sent, on_error=self._send_failed)

    def _sent(self, created: CreatedCampaign) -> None:
        self.sending = False
        self.sent.emit(created)
        self.accept()

    def _send_failed(self, error: BaseException) -> None:
        self.sending = False
        self._update_send()
        if not isinstance(error, operator_errors()):
            self.ctx.background.error.emit(error)
        self._show_error(f"Not sent: {describe(error)[0]}")


def _preview(ctx: ConsoleContext, resend: Resend, template: str) -> CampaignPreview:
    """Off the UI thread: the messages of ``template`` for the undelivered, as they will go
    out now (TemplateError, PlanError or the all-opted-out error when they cannot)."""
    from engine.operations.preview import preview_campaign

    with ctx.services.db().session() as session:
        return preview_campaign(session, ctx.settings, template, audience=resend.audience,
                                limit=SAMPLE, urgent=resend.urgent)
