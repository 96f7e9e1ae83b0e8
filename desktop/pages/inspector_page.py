"""Inspector: recent job events, SQL statements and provider calls (development only).

Every RelayDesk process records into a bounded Redis store when the inspector is on
(engine.monitoring.inspector); this page reads it back every two seconds while it is shown, off the
UI thread. In production the inspector cannot be on, and the page says why instead.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import datetime
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QFontDatabase, QIntValidator
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QTabBar,
    QVBoxLayout,
    QWidget,
)

from desktop.background import Latest
from desktop.context import ConsoleContext
from desktop.paged_model import Column
from desktop.pages.base import Page, page_header
from desktop.rows_model import RowsModel
from desktop.services import Services
from desktop.widgets import SearchField, data_table, empty_state
from engine.domain.formatting import format_duration
from engine.infra.inspector_store import (
    KINDS,
    Entry,
    InspectorStore,
    Kind,
    Query,
    Reading,
    inspector_off_reason,
)
from engine.monitoring.inspector import recorder

REFRESH_MS = 2000
SHOWN = 500  # newest entries listed
TABS: tuple[tuple[str, tuple[Kind, ...]], ...] = (
    ("All", KINDS), ("Jobs", ("job",)), ("SQL", ("sql",)), ("HTTP", ("http",)))
KIND_NAMES = {"job": "Job", "sql": "SQL", "http": "HTTP"}


def _time(entry: Entry) -> str:
    return datetime.fromtimestamp(entry.time).strftime("%H:%M:%S.%f")[:-3]


def _duration(entry: Entry) -> str:
    return "" if entry.duration_ms is None else f"{entry.duration_ms:,.1f} ms"


COLUMNS = [
    Column("Time", None, _time),
    Column("Kind", None, lambda e: KIND_NAMES.get(e.kind, e.kind)),
    Column("Event", None, lambda e: e.event),
    Column("Duration", None, _duration, align_right=True),
    Column("Campaign", None, lambda e: "" if e.campaign is None else str(e.campaign),
           align_right=True),
    Column("Task", None, lambda e: (e.task or "").removeprefix("relaydesk.")),
    Column("Summary", None, lambda e: e.summary),
]


def read_entries(services: Services, query: Query) -> Reading:
    """Runs on a background thread: the Redis read (it prunes old entries first)."""
    return InspectorStore.for_settings(services.settings, services.redis()).read(query)


def clear_entries(services: Services) -> None:
    InspectorStore.for_settings(services.settings, services.redis()).clear()


def describe(entry: Entry) -> str:
    """The detail pane's text: every field, bodies and statements in full."""
    lines = [f"{KIND_NAMES.get(entry.kind, entry.kind)} · {entry.event} · {_time(entry)}",
             entry.summary, ""]
    facts = (("Status", entry.status), ("Duration", _duration(entry)),
             ("Campaign", "" if entry.campaign is None else str(entry.campaign)),
             ("Task", entry.task or ""))
    lines += [f"{name}: {value}" for name, value in facts if value]
    for key, value in entry.detail.items():
        if value is None or value == "":
            continue
        text = _detail_text(key, value)
        label = LABELS.get(key, key.replace("_", " ").capitalize())
        lines += ["", f"{label}:", text] if "\n" in text or len(text) > 60 else \
            [f"{label}: {text}"]
    return "\n".join(lines)


LABELS = {"url": "URL", "pid": "Process ID", "task_id": "Task ID", "wait_ms": "Waited",
          "runtime_ms": "Ran for", "message_id": "Message ID", "to": "To"}


def _detail_text(key: str, value: Any) -> str:
    if key.endswith("_ms") and isinstance(value, int | float):
        return f"{value:,.1f} ms"
    if isinstance(value, str) and key.endswith("_body"):
        try:  # JSON bodies indented, so they read at a glance
            return json.dumps(json.loads(value), indent=2, ensure_ascii=False)
        except ValueError:
            return value
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


class InspectorPage(Page):
    page_id = "inspector"
    title = "Inspector"
    icon_name = "inspector"
    refresh_ms = REFRESH_MS

    def __init__(self, ctx: ConsoleContext) -> None:
        super().__init__(ctx)
        self.entries: list[Entry] = []
        self._readings = Latest(ctx.background)  # new filters drop older answers
        # Where the last read got to in each stream: the next one reads only what is new.
        self._cursors: tuple[tuple[Kind, str], ...] = ()
        self.model = RowsModel(COLUMNS, key=lambda e: (e.kind, e.id), parent=self)
        layout = QVBoxLayout(self)
        layout.addWidget(page_header(
            "Inspector", "Recent job events, SQL statements and provider calls of every "
                         "RelayDesk process, for development. Phone numbers are masked; SQL "
                         "parameters are never kept."))
        self.stack = QStackedWidget()
        self.off_label = empty_state("")
        self.off_label.setObjectName("inspector-off")
        self.off_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.stack.addWidget(self.off_label)
        self.stack.addWidget(self._build_main())
        layout.addWidget(self.stack, 1)
        ctx.bus.settings_saved.connect(self._show_state)
        self._show_state()

    # -- layout ---------------------------------------------------------------------------
    def _build_main(self) -> QWidget:
        main = QWidget()
        column = QVBoxLayout(main)
        column.setContentsMargins(0, 0, 0, 0)
        tools = QHBoxLayout()
        self.tabs = QTabBar()
        self.tabs.setObjectName("inspector-kind")
        for text, _ in TABS:
            self.tabs.addTab(text)
        self.tabs.currentChanged.connect(lambda _: self.filters_changed())
        tools.addWidget(self.tabs)
        tools.addSpacing(12)
        self.campaign = QLineEdit()
        self.campaign.setObjectName("inspector-campaign")
        self.campaign.setPlaceholderText("Campaign ID")
        self.campaign.setValidator(QIntValidator(1, 2_000_000_000, self.campaign))
        self.campaign.setClearButtonEnabled(True)
        self.campaign.setMaximumWidth(130)
        self.campaign.textChanged.connect(lambda _: self.filters_changed())
        tools.addWidget(self.campaign)
        self.task = SearchField("Task, e.g. send_chunk")
        self.task.setObjectName("inspector-task")
        self.task.setMaximumWidth(220)
        self.task.search_changed.connect(lambda _: self.filters_changed())
        tools.addWidget(self.task)
        tools.addStretch()
        self.clear_button = QPushButton("Clear")
        self.clear_button.setObjectName("inspector-clear")
        self.clear_button.setToolTip("Delete every recorded entry")
        self.clear_button.clicked.connect(self.clear)
        tools.addWidget(self.clear_button)
        column.addLayout(tools)

        splitter = QSplitter(Qt.Orientation.Vertical)
        self.table = data_table(self.model, "inspector-table")
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._show_detail())
        splitter.addWidget(self.table)
        self.detail = QPlainTextEdit()
        self.detail.setObjectName("inspector-detail")
        self.detail.setReadOnly(True)
        self.detail.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.detail.setPlaceholderText("Select an entry to see its payload, statement or "
                                       "bodies.")
        splitter.addWidget(self.detail)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 1)
        column.addWidget(splitter, 1)
        self.note = QLabel()
        self.note.setObjectName("inspector-note")
        self.note.setEnabled(False)
        column.addWidget(self.note)
        return main

    # -- state ----------------------------------------------------------------------------
    @property
    def is_on(self) -> bool:
        return inspector_off_reason(self.ctx.settings) is None

    def _show_state(self) -> None:
        # The console records (its SQL, its publishes) by the settings in force, saved ones
        # included: turned off here, it stops without a restart.
        recorder(self.ctx.settings)
        reason = inspector_off_reason(self.ctx.settings)
        self.off_label.setText(reason or "")
        self.stack.setCurrentIndex(0 if reason else 1)
        self.update_refresh()
        if reason:
            self.model.set_rows([])
        elif self.isVisible():
            self.activated()

    def query(self) -> Query:
        campaign = self.campaign.text().strip()
        return Query(kinds=TABS[max(self.tabs.currentIndex(), 0)][1],
                     campaign=int(campaign) if campaign.isdigit() else None,
                     task=self.task.text().strip() or None, limit=SHOWN)

    # -- refreshing -----------------------------------------------------------------------
    def is_live(self) -> bool:
        return self.is_on

    def activated(self) -> None:
        self.refresh()

    def tick(self) -> None:
        self.refresh()

    def filters_changed(self) -> None:
        self._readings.start()  # the read under way answers for the old filters
        self._cursors = ()  # read everything again, for the new filters
        self.refresh()

    def refresh(self) -> None:
        if self._readings.pending or not self.is_on:
            return
        known = self.entries if self._cursors else []

        def done(reading: Reading) -> None:
            self._cursors = reading.cursors
            cutoff = time.time() - self.ctx.settings.inspector_max_age_s
            kept = [e for e in known if e.time >= cutoff]
            merged = sorted(reading.entries + kept, key=lambda e: e.time, reverse=True)
            self.show_entries(merged[:SHOWN])

        def failed(error: BaseException) -> None:
            self.note.setText(f"Could not read the inspector's entries: {error}")

        self._readings.submit(read_entries, self.ctx.services,
                              replace(self.query(), after=self._cursors),
                              on_done=done, on_error=failed)

    def show_entries(self, entries: list[Entry]) -> None:
        selected = self.table.selectionModel().selectedRows()
        key = self.model.key(self.model.rows[selected[0].row()]) if selected else None
        self.entries = entries
        self.model.set_rows(entries)
        row = self.model.row_for_key(key) if key is not None else None
        if row is not None and not self.table.selectionModel().isRowSelected(row):
            self.table.selectRow(row)
        settings = self.ctx.settings
        self.note.setText(
            f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}, newest first "
            f"(at most {SHOWN} shown); entries are kept for "
            f"{format_duration(settings.inspector_max_age_s)}, at most "
            f"{settings.inspector_max_entries:,} of each kind. Refreshed every 2 s.")

    def _show_detail(self) -> None:
        selected = self.table.selectionModel().selectedRows()
        if not selected:
            self.detail.clear()
            return
        self.detail.setPlainText(describe(self.model.rows[selected[0].row()]))

    def clear(self) -> None:
        self.clear_button.setEnabled(False)

        def cleared(_: Any) -> None:
            self.clear_button.setEnabled(True)
            self.filters_changed()

        def failed(error: BaseException) -> None:
            self.clear_button.setEnabled(True)
            self.note.setText(f"Could not clear the inspector: {error}")

        self.ctx.background.run(clear_entries, self.ctx.services, on_done=cleared,
                                on_error=failed)
