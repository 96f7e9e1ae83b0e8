"""The callback URLs the operator pastes into a provider's dashboard, for the Settings
page's "Reports and replies" section: each with where it goes and a Copy button.

They are the public URL plus the receiver's routes (engine/providers/callbacks.py). The
token is the operator's own secret, shown here on purpose: it is their console, and the
provider needs it in the URL. Reading it touches a file in the data dir (it is generated
there once), so the page reads it on a background thread and hands the text to
:meth:`CallbackUrlsBox.show_urls`.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtGui import QFont, QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (
    QGridLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from desktop.settings_form import muted
from desktop.widgets import bold
from engine.config.callback_token import callback_token
from engine.config.settings import Settings
from engine.providers.callbacks import TWILIO_INBOUND_PATH, TWILIO_STATUS_PATH, token_path

PROVIDER_NAMES = {"twilio": "Twilio", "africastalking": "Africa's Talking",
                  "http": "HTTP gateway"}


@dataclass(frozen=True)
class CallbackUrl:
    provider: str  # engine name: twilio, africastalking, http
    what: str  # "Delivery reports"
    url: str
    where: str  # where in the provider's dashboard it goes


@dataclass(frozen=True)
class CallbackSetup:
    """What the section shows: the URLs (none without a public URL) and whether anything
    answers at them on this machine."""

    urls: tuple[CallbackUrl, ...]
    receiver_port: int | None
    provider: str


def callback_urls(public_url: str, token: str) -> tuple[CallbackUrl, ...]:
    """Every callback URL under ``public_url``, the chosen provider's or not."""
    base = public_url.strip().rstrip("/")

    def at(what: str) -> str:
        return base + token_path("africastalking", token, what)

    def http(what: str) -> str:
        return base + token_path("http", token, what)

    return (
        CallbackUrl("twilio", "Status callback", base + TWILIO_STATUS_PATH,
                    "Sent with every message as its StatusCallback: nothing to paste."),
        CallbackUrl("twilio", "Incoming messages", base + TWILIO_INBOUND_PATH,
                    "Phone Numbers › your number › Messaging › \"A message comes in\" "
                    "(Webhook, HTTP POST)."),
        CallbackUrl("africastalking", "Delivery reports", at("delivery"),
                    "SMS › SMS Callback URLs › Delivery Reports."),
        CallbackUrl("africastalking", "Incoming messages", at("inbound"),
                    "SMS › SMS Callback URLs › Incoming Messages."),
        CallbackUrl("africastalking", "Opt-outs", at("optout"),
                    "SMS › SMS Callback URLs › Bulk SMS Opt Out."),
        CallbackUrl("http", "Delivery reports", http("delivery"),
                    "Your gateway POSTs JSON {\"id\", \"status\", \"reason\"} here."),
        CallbackUrl("http", "Incoming messages", http("inbound"),
                    "Your gateway POSTs JSON {\"from\", \"text\"} here."),
    )


def read_setup(settings: Settings) -> CallbackSetup:
    """Off the UI thread: the token may be read from (or first written to) the data dir."""
    urls = callback_urls(settings.public_url, callback_token(settings)) \
        if settings.public_url else ()
    return CallbackSetup(urls, settings.receiver_port, settings.sms_provider)


NO_PUBLIC_URL = (
    "No public URL is set, so providers cannot reach this computer: delivery reports and "
    "replies sent by callback do not arrive. Set Public URL above to an address that reaches "
    "the receiver port (a tunnel such as cloudflared or ngrok, a reverse proxy, or a "
    "server), save, and the URLs to paste into the provider's dashboard appear here.\n"
    "Meanwhile Twilio messages are still looked up by polling, so they reach a final "
    "status; Africa's Talking has no such look-up, so its reports and replies arrive only "
    "by callback.")
NO_RECEIVER = ("Nothing answers at these URLs yet: set Receiver port (e.g. 8026) so the "
               "console and 'relaydesk supervise' run the receiver, and point the public "
               "URL at that port.")


class CallbackUrlsBox(QGroupBox):
    """The URLs grouped by provider (the chosen one first), or the note saying why there
    are none."""

    def __init__(self) -> None:
        super().__init__("Callback URLs")
        self.setObjectName("callback-urls")
        column = QVBoxLayout(self)
        self.note = QLabel("Reading the callback token…")
        self.note.setObjectName("callback-note")
        self.note.setWordWrap(True)
        column.addWidget(self.note)
        self.warning = QLabel(NO_RECEIVER)
        self.warning.setObjectName("callback-no-receiver")
        self.warning.setWordWrap(True)
        self.warning.hide()
        column.addWidget(self.warning)
        self.rows = QWidget()
        self.grid = QGridLayout(self.rows)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setHorizontalSpacing(8)
        self.grid.setVerticalSpacing(2)
        self.grid.setColumnStretch(0, 1)
        column.addWidget(self.rows)
        self.fields: dict[tuple[str, str], QLineEdit] = {}
        self.copy_buttons: dict[tuple[str, str], QPushButton] = {}
        self.setup: CallbackSetup | None = None

    def show_urls(self, setup: CallbackSetup) -> None:
        self.setup = setup
        self._clear_rows()
        if not setup.urls:
            self.note.setText(NO_PUBLIC_URL)
            self.note.show()
            self.warning.hide()
            self.rows.hide()
            return
        self.note.setText("Paste these into the provider's dashboard. The token in them is "
                          "a secret: whoever has a URL can post reports for it.")
        self.warning.setVisible(setup.receiver_port is None and setup.provider != "sandbox")
        order = sorted(PROVIDER_NAMES, key=lambda p: p != setup.provider)  # stable
        row = 0
        for provider in order:
            heading = bold(QLabel(PROVIDER_NAMES[provider]))
            if row:
                heading.setContentsMargins(0, 8, 0, 0)  # apart from the provider above
            self.grid.addWidget(heading, row, 0, 1, 2)
            row += 1
            for url in (u for u in setup.urls if u.provider == provider):
                row = self._add_url(url, row)
        self.rows.show()

    def _add_url(self, url: CallbackUrl, row: int) -> int:
        key = (url.provider, url.what)
        field = QLineEdit(url.url)
        field.setObjectName(f"callback-{url.provider}-{url.what.split()[0].lower()}")
        field.setReadOnly(True)
        field.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        field.setCursorPosition(0)
        field.setToolTip(url.url)
        copy = QPushButton("Copy")
        copy.setToolTip(f"Copy the {PROVIDER_NAMES[url.provider]} "
                        f"{url.what.lower()} URL")
        copy.clicked.connect(lambda _=False, k=key: self.copy(k))
        caption = muted(QLabel(f"{url.what}: {url.where}"))
        caption.setWordWrap(True)
        small = caption.font()
        small.setPointSizeF(small.pointSizeF() * 0.92)
        caption.setFont(QFont(small))
        self.grid.addWidget(field, row, 0)
        self.grid.addWidget(copy, row, 1)
        self.grid.addWidget(caption, row + 1, 0, 1, 2)
        self.fields[key] = field
        self.copy_buttons[key] = copy
        return row + 2

    def _clear_rows(self) -> None:
        while self.grid.count():
            item = self.grid.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.deleteLater()
        self.fields.clear()
        self.copy_buttons.clear()

    def url(self, provider: str, what: str) -> str:
        return self.fields[provider, what].text()

    def copy(self, key: tuple[str, str]) -> None:
        QGuiApplication.clipboard().setText(self.fields[key].text())
        for other, button in self.copy_buttons.items():
            button.setText("Copied" if other == key else "Copy")
