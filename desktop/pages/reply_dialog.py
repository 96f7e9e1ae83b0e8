"""Reply…: a one-off message to the member who wrote, through the normal send path (a
campaign of one, so it is paced, retried, suppressed and reported like any other).

The dialog stays open until the reply is queued; what the engine refuses (the number opted
out, the provider cannot be reached) is said in the dialog and the text is kept."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from desktop.context import ConsoleContext
from desktop.errors import describe, operator_errors
from desktop.inbox_model import operator_time
from desktop.settings_form import muted, tone
from desktop.theme import WARN
from desktop.widgets import error_label
from engine.domain.delivery import ReplyKeyword
from engine.domain.sms_encoding import Encoding, segment_info
from engine.operations.campaigns import CreatedCampaign
from engine.store.inbox import InboxEntry

QUOTE_CHARS = 300  # of their message, above the reply


def describe_length(text: str) -> str:
    """``42 characters · 1 segment · GSM-7`` (as Compose counts them)."""
    info = segment_info(text)
    if not text:
        return "0 characters"
    segments = f"{info.segments} segment{'s' if info.segments != 1 else ''}"
    note = " (a character forces UCS-2: 70 a segment instead of 160)" \
        if info.encoding is Encoding.UCS2 else ""
    return f"{info.characters} characters · {segments} · {info.encoding}{note}"


def who(entry: InboxEntry) -> str:
    return f"{entry.contact_name} ({entry.phone})" if entry.contact_name else entry.phone


class ReplyDialog(QDialog):
    sent = Signal(object)  # CreatedCampaign

    def __init__(self, ctx: ConsoleContext, entry: InboxEntry,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.entry = entry
        self.sending = False
        self.setObjectName("reply-dialog")
        self.setWindowTitle(f"Reply to {entry.contact_name or entry.phone}")
        self.resize(520, 380)
        layout = QVBoxLayout(self)
        self._build_quote(layout, entry)
        self.editor = QPlainTextEdit()
        self.editor.setObjectName("reply-text")
        self.editor.setPlaceholderText("Your reply")
        self.editor.setTabChangesFocus(True)
        self.editor.textChanged.connect(self._changed)
        layout.addWidget(self.editor, 1)
        self.length = muted(QLabel(describe_length("")))
        self.length.setObjectName("reply-length")
        layout.addWidget(self.length)
        self.error = error_label("reply-error")
        layout.addWidget(self.error)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.send_button = QPushButton("Send reply")
        self.send_button.setObjectName("reply-send")
        self.send_button.setDefault(True)
        self.send_button.clicked.connect(self.send)
        buttons.addButton(self.send_button, QDialogButtonBox.ButtonRole.AcceptRole)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self._changed()

    def _build_quote(self, layout: QVBoxLayout, entry: InboxEntry) -> None:
        """Who it goes to, what they wrote, and a warning when they opted out."""
        received = operator_time(self.ctx.settings.timezone, entry.received_at)
        quoted = entry.text if len(entry.text) <= QUOTE_CHARS else \
            entry.text[:QUOTE_CHARS] + "…"
        heading = QLabel(f"To <b>{html.escape(who(entry))}</b>, who wrote on {received}:")
        heading.setWordWrap(True)
        layout.addWidget(heading)
        self.quote = muted(QLabel(quoted))
        self.quote.setObjectName("reply-quote")
        self.quote.setWordWrap(True)
        self.quote.setTextFormat(Qt.TextFormat.PlainText)
        self.quote.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.quote.setContentsMargins(12, 0, 0, 6)
        layout.addWidget(self.quote)
        self.warning = QLabel(
            "This member replied with an opt-out word, so the number is on the opt-out "
            "list: a reply is not sent to it. Take it off the list on the Opt-outs page "
            "only if they asked you to.")
        self.warning.setObjectName("reply-optout-warning")
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet(f"color: {tone(WARN)}")
        self.warning.setVisible(entry.keyword == ReplyKeyword.OPT_OUT)
        layout.addWidget(self.warning)

    def text(self) -> str:
        return self.editor.toPlainText().strip()

    def _changed(self) -> None:
        self.length.setText(describe_length(self.text()))
        self.send_button.setEnabled(bool(self.text()) and not self.sending)

    def send(self) -> None:
        """Queue the reply off the UI thread: the provider is checked first, so a gateway
        that is down creates nothing."""
        text = self.text()
        if not text or self.sending:
            return
        self.sending = True
        self.error.hide()
        self.send_button.setText("Sending…")
        self._changed()
        ctx, inbound_id = self.ctx, self.entry.id

        def work() -> CreatedCampaign:
            from desktop.pages.compose_page import start_services_and_check_provider
            from engine.operations.inbox import reply_to

            start_services_and_check_provider(ctx)
            return reply_to(ctx.services.db(), ctx.services.redis(), ctx.settings,
                            inbound_id, text)

        ctx.background.run(work, on_done=self._sent, on_error=self._failed)

    def _sent(self, created: CreatedCampaign) -> None:
        self.sending = False
        self.sent.emit(created)
        self.accept()

    def _failed(self, error: BaseException) -> None:
        self.sending = False
        self.send_button.setText("Send reply")
        self._changed()
        if not isinstance(error, operator_errors()):
            self.ctx.background.error.emit(error)  # a bug: the full report, as elsewhere
        self.error.setText(f"Not sent: {describe(error)[0]}")
        self.error.show()
