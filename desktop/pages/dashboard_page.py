"""The dashboard: cards with the figures an operator checks first, live charts of queue
depth, throughput and provider response time, the workload per queue, and every running
campaign with its progress, rate and ETA.

It refreshes once a second while it is shown; the reading happens on a background thread
(one at a time) and the UI thread only copies numbers into labels and chart arrays.
"""

from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import (
    QButtonGroup,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from desktop.background import Latest
from desktop.charts import TimeChart
from desktop.context import ConsoleContext
from desktop.dashboard_data import RANGES, Snapshot, fetch, new_window
from desktop.paged_model import Column
from desktop.pages.base import Page, page_header
from desktop.rows_model import RowsModel
from desktop.widgets import bold, data_table, empty_state, heading
from engine.domain.formatting import format_bytes, format_duration
from engine.domain.queues import ALL_QUEUES
from engine.monitoring.overview import CampaignRun, Overview, QueueWorkload

REFRESH_MS = 1000
CARD_COLUMNS = (6, 4, 3)  # cards per row, the most that fit the width (12 cards: full rows)
CARD_SPACING = 8
NO_FIGURE = "—"  # a rate or a time with nothing to compute it from yet
STATUS_TEXT = {"active": "Active", "paused": "Paused", "waiting": "Waiting",
               "inactive": "Inactive"}


def _delivery_time(seconds: float | None) -> str:
    """``4.2 s`` below a minute (reports can come within a second), else format_duration."""
    if seconds is None:
        return NO_FIGURE
    return f"{seconds:.1f} s" if seconds < 60 else format_duration(seconds)


def _ms(value: float) -> str:
    return f"{value:.0f} ms" if value < 1000 else f"{value / 1000:.1f} s"


class StatCard(QFrame):
    """A figure with its title above and a line of detail below."""

    def __init__(self, name: str, title: str) -> None:
        super().__init__()
        self.setObjectName(f"card-{name}")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 8, 12, 8)
        layout.setSpacing(1)
        caption = QLabel(title)
        caption.setEnabled(False)
        self.value = heading("–", 1.5)
        self.value.setObjectName(f"card-{name}-value")
        self.detail = QLabel(" ")
        self.detail.setEnabled(False)
        for label in (caption, self.value, self.detail):
            layout.addWidget(label)

    def show_figure(self, value: str, detail: str = " ") -> None:
        self.value.setText(value)
        self.detail.setText(detail)


class CampaignRunRow(QWidget):
    def __init__(self) -> None:
        super().__init__()
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 4, 0, 4)
        grid.setHorizontalSpacing(12)
        self.name = bold(QLabel())
        self.rate = QLabel()
        self.rate.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.bar = QProgressBar()
        self.bar.setTextVisible(True)
        self.counts = QLabel()
        self.counts.setEnabled(False)
        grid.addWidget(self.name, 0, 0)
        grid.addWidget(self.rate, 0, 1)
        grid.addWidget(self.bar, 1, 0, 1, 2)
        grid.addWidget(self.counts, 2, 0, 1, 2)
        grid.setColumnStretch(0, 1)

    def show_run(self, run: CampaignRun) -> None:
        status = "" if run.status == "sending" else f" — {run.status}"
        self.name.setText(f"#{run.campaign} {run.name}{status}")
        done = run.sent + run.dead
        self.bar.setRange(0, max(run.recipients, 1))
        self.bar.setValue(done)
        self.bar.setFormat(f"{done:,} of {run.recipients:,} (%p%)")
        if run.status == "paused":
            rate = run.pause_reason or "paused"
        elif run.state_note:  # held on purpose, not stalled
            rate = run.state_note
        elif run.eta_s is not None:
            rate = f"{run.per_minute:,}/min · about {format_duration(run.eta_s)} left"
        else:
            rate = "waiting for a worker" if run.pending else "finishing"
        self.rate.setText(rate)
        self.counts.setText(f"sent {run.sent:,} · pending {run.pending:,} · "
                            f"retrying {run.retrying:,} · dead {run.dead:,}")


class DashboardPage(Page):
    page_id = "dashboard"
    title = "Dashboard"
    icon_name = "dashboard"
    refresh_ms = REFRESH_MS

    def __init__(self, ctx: ConsoleContext) -> None:
        super().__init__(ctx)
        self.range_label = "15 min"
        self.window = new_window(ctx.services, self.range_label)
        self.snapshot: Snapshot | None = None
        self._snapshots = Latest(ctx.background)  # a range switch drops older answers
        # UI-thread cost of the last refresh, all of it and the charts' part (benchmarks).
        self.last_ui_ms = self.last_charts_ms = 0.0
        self.run_rows: dict[int, CampaignRunRow] = {}

        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        body = QWidget()
        scroll.setWidget(body)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        layout = QVBoxLayout(body)

        top = QHBoxLayout()
        top.addWidget(page_header("Dashboard", "Live figures from every worker on this Redis."),
                      1)
        top.addLayout(self._build_range_switch())
        layout.addLayout(top)
        self.alert = QLabel()
        self.alert.setObjectName("dashboard-alert")
        self.alert.setWordWrap(True)
        self.alert.setStyleSheet("QLabel { background: #fef3c7; color: #78350f; "
                                 "border: 1px solid #f59e0b; border-radius: 4px; padding: 6px; }")
        self.alert.hide()
        layout.addWidget(self.alert)
        layout.addLayout(self._build_cards())

        charts = QHBoxLayout()
        self.depth_chart = TimeChart("Queue depth", "jobs waiting", list(ALL_QUEUES),
                                     legend_columns=2)
        self.throughput_chart = TimeChart("Throughput and failures", "per minute",
                                          ["sent", "failed", "retried"])
        self.response_chart = TimeChart("Provider response time", "ms",
                                        ["average", "slowest"])
        for chart in (self.depth_chart, self.throughput_chart, self.response_chart):
            charts.addWidget(chart, 1)
        layout.addLayout(charts)
        bottom = QHBoxLayout()
        bottom.addWidget(self._build_workload(), 1)
        bottom.addWidget(self._build_campaigns(), 1)
        layout.addLayout(bottom)
        layout.addStretch(1)

    # -- layout ---------------------------------------------------------------------------
    def _build_range_switch(self) -> QHBoxLayout:
        row = QHBoxLayout()
        row.setSpacing(0)
        self.range_buttons = QButtonGroup(self)
        for label in RANGES:
            button = QPushButton(label)
            button.setObjectName(f"range-{label.replace(' ', '')}")
            button.setCheckable(True)
            button.setChecked(label == self.range_label)
            button.clicked.connect(lambda _=False, text=label: self.set_range(text))
            self.range_buttons.addButton(button)
            row.addWidget(button, 0, Qt.AlignmentFlag.AlignTop)
        return row

    def _build_cards(self) -> QGridLayout:
        specs = [("status", "Status"), ("jobs", "Jobs per minute"),
                 ("sent", "Sent, last hour"), ("delivered", "Delivered, last hour"),
                 ("replies", "Replies, last hour"), ("failed", "Failed, last 7 days"),
                 ("wait", "Longest wait"), ("runtime", "Longest job, last hour"),
                 ("processes", "Worker processes"), ("dead", "Dead letters"),
                 ("breaker", "Provider breaker"), ("memory", "Redis memory")]
        self.cards = {name: StatCard(name, title) for name, title in specs}
        self.card_grid = QGridLayout()
        self.card_grid.setSpacing(CARD_SPACING)
        self.card_columns = 0
        self._place_cards(CARD_COLUMNS[0])
        return self.card_grid

    def _place_cards(self, columns: int) -> None:
        if columns == self.card_columns:
            return
        self.card_columns = columns
        for i, card in enumerate(self.cards.values()):
            self.card_grid.addWidget(card, i // columns, i % columns)  # moves it
        for column in range(max(CARD_COLUMNS)):
            self.card_grid.setColumnStretch(column, 1 if column < columns else 0)

    def _fit_cards(self) -> None:
        """As many cards a row as fit whole: a narrow window gets more rows, not cut
        texts."""
        need = max(card.minimumSizeHint().width() for card in self.cards.values())
        room = self.width() - 40  # the page's and the scroll area's margins
        self._place_cards(next((n for n in CARD_COLUMNS
                                if n * need + (n - 1) * CARD_SPACING <= room),
                               CARD_COLUMNS[-1]))

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit_cards()

    def _build_workload(self) -> QGroupBox:
        box = QGroupBox("Workload")
        column = QVBoxLayout(box)
        self.workload_model = RowsModel([
            Column("Queue", None, lambda r: r.queue),
            Column("Waiting", None, lambda r: f"{r.waiting:,}", align_right=True),
            Column("In flight", None, lambda r: f"{r.in_flight:,}", align_right=True),
            Column("Processes", None, lambda r: str(r.processes), align_right=True),
            Column("Wait", None, lambda r: format_duration(r.wait_s) if r.waiting else "–",
                   align_right=True),
            Column("Jobs/min", None, lambda r: f"{r.jobs_per_minute:,}", align_right=True),
        ], key=lambda r: r.queue, parent=self)
        self.workload_table = data_table(self.workload_model, "dashboard-workload",
                                         fit_contents=True)
        self.workload_table.setMinimumHeight(120)
        column.addWidget(self.workload_table, 1)
        return box

    def _build_campaigns(self) -> QGroupBox:
        box = QGroupBox("Running campaigns")
        self.runs_layout = QVBoxLayout(box)
        self.no_runs = empty_state("No campaign is running. Send one from Compose; finished "
                                   "campaigns are on the Campaigns page.")
        self.no_runs.setMargin(12)
        self.runs_layout.addWidget(self.no_runs)
        self.runs_layout.addStretch(1)
        return box

    # -- refreshing -----------------------------------------------------------------------
    def activated(self) -> None:
        self.refresh()

    def tick(self) -> None:
        self.refresh()

    def set_range(self, label: str) -> None:
        if label == self.range_label:
            return
        self.range_label = label
        self.window = new_window(self.ctx.services, label)
        self._snapshots.start()  # the old range's answer is dropped when it arrives
        self.refresh()

    @property
    def refreshing(self) -> bool:
        """A refresh for the range shown has not answered yet."""
        return self._snapshots.pending

    def refresh(self) -> None:
        if self.refreshing or not self.isVisible():
            return  # one at a time: a slow Redis must not pile reads up

        def failed(_: BaseException) -> None:
            self.cards["status"].show_figure("Unknown", "Redis or the database did not answer")

        self._snapshots.submit(fetch, self.ctx.services, self.window, self.range_label,
                               on_done=self.show_snapshot, on_error=failed)

    def show_snapshot(self, snapshot: Snapshot) -> None:
        started = time.perf_counter()
        self.snapshot = snapshot
        self._show_cards(snapshot.overview)
        self._show_alerts(snapshot.overview)
        charts = snapshot.charts
        charts_started = time.perf_counter()
        self.depth_chart.update_series(charts.starts, charts.depth)
        self.throughput_chart.update_series(charts.starts, charts.throughput)
        self.response_chart.update_series(charts.starts, charts.response)
        self.last_charts_ms = (time.perf_counter() - charts_started) * 1000
        self.workload_model.set_rows(snapshot.overview.workload)
        self._show_runs(snapshot.overview.campaigns)
        self.last_ui_ms = (time.perf_counter() - started) * 1000

    def _show_cards(self, o: Overview) -> None:
        c = self.cards
        held = next((run.state_note for run in o.campaigns if run.state_note), None)
        c["status"].show_figure(STATUS_TEXT.get(o.status, o.status),
                                held if o.status == "waiting" and held else
                                f"{o.workers_online} worker(s) online")
        c["jobs"].show_figure(f"{o.jobs_per_minute:,}",
                              f"{o.sent_per_minute:,} message(s) sent per minute")
        rate = o.success_rate_last_hour
        c["sent"].show_figure(f"{o.sent_last_hour:,}", "messages" if rate is None else
                              f"{rate:.1%} accepted")
        self._show_delivery(o)
        c["failed"].show_figure(f"{o.failed_last_7_days:,}", "messages given up on")
        c["wait"].show_figure(format_duration(o.max_wait_s) if o.max_wait_queue else "–",
                              f"on {o.max_wait_queue}" if o.max_wait_queue else
                              "nothing waiting")
        c["runtime"].show_figure(_ms(o.max_runtime_ms) if o.max_runtime_queue else "–",
                                 f"on {o.max_runtime_queue}" if o.max_runtime_queue else
                                 "no job ran")
        c["processes"].show_figure(str(o.processes), f"in {o.workers_online} worker(s)")
        c["dead"].show_figure(f"{o.dead_letters:,}", "to review on Failed jobs"
                              if o.dead_letters else "nothing to review")
        provider = self.ctx.settings.sms_provider
        others = [f"{p} {s}" for p, s in o.breakers.items() if p != provider and s != "closed"]
        c["breaker"].show_figure(o.breakers.get(provider, "closed").capitalize(),
                                 ", ".join(others) or provider)
        c["memory"].show_figure(format_bytes(o.redis_memory_bytes),
                                f"{o.scheduled:,} scheduled · {o.in_flight:,} in flight")

    def _show_delivery(self, o: Overview) -> None:
        """The delivery rate and time from the last hour's reports, and the replies; "—"
        until a report came (no public URL, or the provider has not reported yet)."""
        c = self.cards
        waiting = f"{o.reports_pending:,} report(s) to apply" if o.reports_pending else ""
        if o.delivery_rate is None:
            c["delivered"].show_figure(NO_FIGURE, waiting or "no reports yet")
            c["delivered"].setToolTip("No delivery report came in the last hour")
        else:
            average = _delivery_time(o.avg_delivery_s)
            c["delivered"].show_figure(f"{o.delivery_rate:.1%}",
                                       f"in {average} · {o.undelivered:,} undelivered")
            slowest = _delivery_time(o.max_delivery_s)
            c["delivered"].setToolTip(
                f"{o.delivered:,} delivered, {o.undelivered:,} undelivered in the last hour; "
                f"from send to delivery {average} on average, {slowest} at most")
        c["replies"].show_figure(f"{o.replies:,}", waiting or
                                 ("on the Inbox page" if o.replies else "none"))
        self._fit_cards()

    def _show_alerts(self, o: Overview) -> None:
        if not o.alerts:
            self.alert.hide()
            return
        self.alert.setText("  ".join(f"⚠ {alert.text()}" for alert in o.alerts))
        self.alert.show()

    def _show_runs(self, runs: list[CampaignRun]) -> None:
        current = {run.campaign for run in runs}
        for campaign_id in [c for c in self.run_rows if c not in current]:
            self.run_rows.pop(campaign_id).deleteLater()
        for run in runs:
            row = self.run_rows.get(run.campaign)
            if row is None:
                row = self.run_rows[run.campaign] = CampaignRunRow()
                self.runs_layout.insertWidget(self.runs_layout.count() - 1, row)
            row.show_run(run)
        self.no_runs.setVisible(not runs)

    def workload(self) -> list[QueueWorkload]:
        return list(self.workload_model.rows)

    def card_text(self, name: str) -> str:
        return self.cards[name].value.text()

    def figures(self) -> dict[str, Any]:
        """The overview shown now, as a dict (tests and the screenshot tour read it)."""
        return self.snapshot.overview.as_dict() if self.snapshot else {}
