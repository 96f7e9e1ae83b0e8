"""Choose when a campaign goes out: a date and time in the campaign's time zone, refused
here (with the reason, the dialog kept open) when it is past or inside the quiet hours.
Compose's "Send later…" and the Campaigns page's "Reschedule…" both use it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from PySide6.QtCore import QDate, QDateTime, QTime, QTimeZone
from PySide6.QtWidgets import (
    QDateTimeEdit,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QWidget,
)

from desktop.theme import BAD
from engine.domain.send_window import ScheduleError, SendWindow, parse_when

WHEN_FORMAT = "%Y-%m-%d %H:%M"


def describe_when(when: datetime, timezone: str) -> str:
    """``2026-12-03 09:00 (Africa/Nairobi)``: how the operator reads a send time."""
    return f"{when.astimezone(SendWindow(timezone).zone):{WHEN_FORMAT}} ({timezone})"


def next_full_hour(window: SendWindow, now: datetime) -> datetime:
    """The default choice: the next full hour, or the end of the quiet hours it falls in."""
    local = window.local(now).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    held = window.held_until(local)
    return held if held is not None else local.astimezone(UTC)


def check_when(window: SendWindow, text: str, now: datetime) -> datetime:
    """The instant ``text`` (``YYYY-MM-DD HH:MM`` in the window's zone) names, as aware UTC;
    ScheduleError saying what to choose instead when it is past, skipped by a daylight-saving
    change or inside the quiet hours. The engine checks again when it stores the campaign."""
    when = parse_when(text, window.timezone, now)
    window.check_send_time(when, now)
    return when


class SendLaterDialog(QDialog):
    """``when`` (aware UTC) is set once the operator accepts a time the window allows."""

    def __init__(self, parent: QWidget | None, window: SendWindow, *,
                 title: str = "Send later", action: str = "Schedule",
                 initial: datetime | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        super().__init__(parent)
        self.setObjectName("send-later")
        self.setWindowTitle(title)
        self.window_ = window
        self.clock = clock
        now = clock()
        self.when: datetime | None = None
        form = QFormLayout(self)
        about = QLabel("The messages are written when it goes out, with the figures and the "
                       "opt-out list of that moment.")
        about.setWordWrap(True)
        form.addRow(about)
        # The picker shows wall-clock time in the campaign's zone, whatever the computer's.
        self.zone = QTimeZone(window.timezone.encode())
        self.picker = QDateTimeEdit()
        self.picker.setObjectName("send-later-when")
        self.picker.setTimeZone(self.zone)
        self.picker.setDisplayFormat("yyyy-MM-dd  HH:mm")
        self.picker.setCalendarPopup(True)
        self.picker.setMinimumDateTime(self._qt(now))
        start = initial if initial is not None and initial > now else \
            next_full_hour(window, now)
        self.picker.setDateTime(self._qt(start))
        form.addRow("Send at", self.picker)
        local_now = window.local(now)
        zone_label = QLabel(f"{window.timezone} (now {local_now:{WHEN_FORMAT}})")
        zone_label.setObjectName("send-later-zone")
        form.addRow("Time zone", zone_label)
        if window.quiet_hours is not None:
            quiet = QLabel(f"{window.quiet_hours}: nothing is sent then")
            quiet.setObjectName("send-later-quiet")
            form.addRow("Quiet hours", quiet)
        self.error = QLabel()
        self.error.setObjectName("send-later-error")
        self.error.setWordWrap(True)
        self.error.setStyleSheet(f"color: {BAD.name()}")
        self.error.hide()
        form.addRow(self.error)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok |
                                   QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText(action)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.picker.dateTimeChanged.connect(lambda _: self.error.hide())
        self.setMinimumWidth(420)

    def _qt(self, when: datetime) -> QDateTime:
        local = when.astimezone(self.window_.zone)
        return QDateTime(QDate(local.year, local.month, local.day),
                         QTime(local.hour, local.minute), self.zone)

    def chosen_text(self) -> str:
        """The picked time as the operator sees it: ``YYYY-MM-DD HH:MM`` in the zone."""
        return self.picker.dateTime().toTimeZone(self.zone).toString("yyyy-MM-dd HH:mm")

    def set_when(self, text: str) -> None:
        """Pick ``YYYY-MM-DD HH:MM`` (local to the zone), as typing it would."""
        local = datetime.strptime(text, WHEN_FORMAT).replace(tzinfo=self.window_.zone)
        self.picker.setDateTime(self._qt(local))

    def accept(self) -> None:
        try:
            # Judged at the moment of choosing: the dialog may have stayed open a while.
            self.when = check_when(self.window_, self.chosen_text(), self.clock())
        except ScheduleError as exc:
            self.error.setText(str(exc))
            self.error.show()
            return
        super().accept()
