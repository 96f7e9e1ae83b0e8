"""A campaign's live progress: a bar, sent / pending / retrying / dead, and the send rate.
Polls the database once a second off the UI thread while the campaign is still moving."""

from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import QGridLayout, QLabel, QProgressBar, QVBoxLayout, QWidget

from desktop.context import ConsoleContext
from desktop.widgets import bold
from engine.store.campaign_state import campaign_summary

POLL_MS = 1000
FINAL = ("completed", "cancelled")


def fetch_summary(ctx: ConsoleContext, campaign_id: int) -> dict[str, Any] | None:
    with ctx.services.db().session() as session:
        return campaign_summary(session, campaign_id)


class CampaignProgress(QWidget):
    updated = Signal(dict)

    def __init__(self, ctx: ConsoleContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.campaign_id: int | None = None
        self.summary: dict[str, Any] | None = None
        self._samples: list[tuple[float, int]] = []
        self._in_flight = False
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.title = bold(QLabel())
        self.title.setObjectName("progress-title")
        layout.addWidget(self.title)
        self.bar = QProgressBar()
        self.bar.setObjectName("progress-bar")
        self.bar.setFormat("%p%  (%v of %m)")
        layout.addWidget(self.bar)
        grid = QGridLayout()
        self.counts: dict[str, QLabel] = {}
        self._captions: list[QLabel] = []
        for column, key in enumerate(("sent", "pending", "retrying", "dead", "rate")):
            caption = QLabel(key.capitalize() if key != "rate" else "Rate")
            caption.setEnabled(False)
            value = bold(QLabel("–"))
            value.setObjectName(f"progress-{key}")
            self._captions.append(caption)
            grid.addWidget(caption, 0, column)
            grid.addWidget(value, 1, column)
            self.counts[key] = value
        layout.addLayout(grid)
        self.note = QLabel()
        self.note.setWordWrap(True)
        layout.addWidget(self.note)
        self.timer = QTimer(self, interval=POLL_MS)
        self.timer.timeout.connect(lambda: self.isVisible() and self.poll())

    def follow(self, campaign_id: int) -> None:
        self.campaign_id = campaign_id
        self.summary = None
        self._samples.clear()
        self.title.setText(f"Campaign {campaign_id}")
        self.poll()
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    def poll(self) -> None:
        if self.campaign_id is None or self._in_flight:
            return
        self._in_flight = True
        self.ctx.background.run(fetch_summary, self.ctx, self.campaign_id,
                                on_done=self._show, on_error=self._failed)

    def _failed(self, error: BaseException) -> None:
        self._in_flight = False
        self.note.setText(f"Could not read progress: {type(error).__name__}: {error}")

    def _show(self, summary: dict[str, Any] | None) -> None:
        self._in_flight = False
        if summary is not None and summary["campaign"] != self.campaign_id:
            self.poll()  # the answer for a campaign followed before: ask about this one
            return
        if summary is None:
            self.stop()
            self.note.setText("This campaign no longer exists.")
            return
        self.summary = summary
        total = max(int(summary["recipients"]), 1)
        # Every row not waiting is done: sent, dead, cancelled or stopped by the opt-out list.
        done = max(int(summary["recipients"]) - summary["pending"] - summary["retrying"], 0)
        self.title.setText(f"{summary['name']} — {summary['status']}")
        # A scheduled campaign has no messages yet: a bar at 0% would only look stuck.
        moving = summary["status"] != "scheduled"
        self.bar.setVisible(moving)
        for key in ("sent", "pending", "retrying", "dead", "rate"):
            self.counts[key].setVisible(moving)
        for caption in self._captions:
            caption.setVisible(moving)
        self.bar.setRange(0, total)
        self.bar.setValue(done)
        for key in ("sent", "pending", "retrying", "dead"):
            self.counts[key].setText(f"{summary[key]:,}")
        self.counts["rate"].setText(self._rate(summary["sent"]))
        self.note.setText(self._note(summary))
        if summary["status"] in FINAL:
            self.stop()
        self.updated.emit(summary)

    @staticmethod
    def _note(summary: dict[str, Any]) -> str:
        """Why the campaign is not moving, when it is waiting on purpose."""
        reason = summary.get("pause_reason")
        if summary["status"] == "paused" and reason:
            return f"Paused: {reason}"
        if summary["status"] == "scheduled" and reason:  # it missed its time
            return f"It {reason}."
        if summary.get("state_note"):  # held by its quiet hours
            return f"{summary['state_note'][0].upper()}{summary['state_note'][1:]}."
        return ""

    def _rate(self, sent: int) -> str:
        now = time.monotonic()
        self._samples.append((now, sent))
        self._samples = [s for s in self._samples if now - s[0] <= 10.0]
        first_time, first_sent = self._samples[0]
        if now - first_time < 0.5:
            return "–"
        return f"{(sent - first_sent) / (now - first_time):,.1f}/s"
