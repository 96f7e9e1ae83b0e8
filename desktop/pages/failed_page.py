"""Failed jobs: the dead-letter store at any size. Search and filter, read everything about a
failure, retry or forget a selection or everything that matches, export to CSV."""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QDate, Qt, QUrl
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDateEdit,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QSplitter,
    QStackedWidget,
    QTextBrowser,
    QVBoxLayout,
)

from desktop.background import Latest
from desktop.context import ConsoleContext
from desktop.failed_model import FailedModel, campaign_text, local_time
from desktop.pages.base import Page, page_header
from desktop.widgets import SearchField, data_table, empty_state, tool_button
from engine.operations import failed_jobs
from engine.store.failed_export import export_file
from engine.store.failed_query import (
    FailedDetail,
    FailedQuery,
    Matching,
    campaign_choices,
    distinct_values,
    failed_detail,
    ids_in_rows,
    matching,
)

REFRESH_MS = 5000
ANY = "Any"
NO_DATE = QDate(2000, 1, 1)  # a date edit at its minimum shows ANY: no bound
NO_DETAIL = "Select a failed job to see its message, every attempt and the provider's answer."


class FailedPage(Page):
    page_id = "failed"
    title = "Failed jobs"
    icon_name = "failed"
    refresh_ms = REFRESH_MS

    def __init__(self, ctx: ConsoleContext) -> None:
        super().__init__(ctx)
        self.model = FailedModel(ctx.services, ctx.background, self)
        self.detail: FailedDetail | None = None
        self._details = Latest(ctx.background)  # a new selection drops older answers
        self.last_export: tuple[int, Path] | None = None
        layout = QVBoxLayout(self)
        layout.addWidget(page_header(
            "Failed jobs", "Messages given up after their last attempt. Retry them with a "
            "fresh attempt budget (the record stays, linked to what happens next), forget "
            "them, or export them."))
        layout.addLayout(self._build_filters())
        layout.addLayout(self._build_actions())

        self.table = data_table(self.model, "failed-table", single=False)
        self.table.setSortingEnabled(True)
        self.table.horizontalHeader().setSortIndicator(0, Qt.SortOrder.DescendingOrder)
        for column, width in enumerate((150, 170, 130, 110, 120, 70, 170)):
            self.table.setColumnWidth(column, width)
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._selected())
        self.details = QTextBrowser()
        self.details.setObjectName("failed-detail")
        self.details.setOpenLinks(False)
        self.details.anchorClicked.connect(self._open_link)
        self.details.setPlaceholderText(NO_DETAIL)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.table)
        splitter.addWidget(self.details)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)

        self.empty = empty_state("Nothing has failed.\n\nMessages that cannot be delivered "
                                 "after their last attempt land here for review.")
        self.no_match = empty_state("No failed job matches these filters.")
        self.body = QStackedWidget()
        for widget in (splitter, self.empty, self.no_match):
            self.body.addWidget(widget)
        self.splitter = splitter
        layout.addWidget(self.body, 1)
        self.count_label = QLabel()
        self.count_label.setObjectName("failed-count")
        layout.addWidget(self.count_label)

        self.model.loaded.connect(self._loaded)
        QShortcut(QKeySequence.StandardKey.Delete, self.table, activated=self.forget_selected)
        ctx.bus.campaigns_changed.connect(self._changed_elsewhere)
        ctx.bus.campaign_started.connect(lambda _: self._changed_elsewhere())
        ctx.bus.settings_saved.connect(self.refresh)  # perhaps another database
        self._loaded_once = False
        self._choices_due = False
        self._update_buttons()

    # -- building ------------------------------------------------------------------------
    def _build_filters(self) -> QHBoxLayout:
        bar = QHBoxLayout()
        self.search = SearchField("Search error, recipient, campaign or #id…")
        self.search.setObjectName("failed-search")
        self.search.search_changed.connect(lambda text: self.model.set_filter(search=text))
        bar.addWidget(self.search, 3)
        self.campaign = self._combo("failed-campaign", "All campaigns", "campaign_id")
        self.queue = self._combo("failed-queue", "All queues", "queue")
        self.error_type = self._combo("failed-error-type", "All error types", "error_type")
        for combo in (self.campaign, self.queue, self.error_type):
            bar.addWidget(combo, 1)
        bar.addWidget(QLabel("From"))
        self.since = self._date_edit("failed-since")
        bar.addWidget(self.since)
        bar.addWidget(QLabel("to"))
        self.until = self._date_edit("failed-until")
        bar.addWidget(self.until)
        self.include_retried = QCheckBox("Include retried")
        self.include_retried.setObjectName("failed-include-retried")
        self.include_retried.setToolTip("Also show records already retried, with what "
                                        "became of the retry")
        self.include_retried.toggled.connect(
            lambda on: self.model.set_filter(include_retried=on))
        bar.addWidget(self.include_retried)
        return bar

    def _combo(self, name: str, everything: str, field: str) -> QComboBox:
        combo = QComboBox()
        combo.setObjectName(name)
        combo.setMinimumWidth(130)
        combo.addItem(everything, None)
        combo.currentIndexChanged.connect(
            lambda _: self.model.set_filter(**{field: combo.currentData()}))
        return combo

    def _date_edit(self, name: str) -> QDateEdit:
        edit = QDateEdit()
        edit.setObjectName(name)
        edit.setCalendarPopup(True)
        edit.setDisplayFormat("yyyy-MM-dd")
        edit.setMinimumDate(NO_DATE)
        edit.setSpecialValueText(ANY)
        edit.setDate(NO_DATE)
        edit.setToolTip("Failed on or after / up to this day (local time); 'Any': no bound")
        edit.dateChanged.connect(lambda _: self._dates_changed())
        return edit

    def _build_actions(self) -> QHBoxLayout:
        bar = QHBoxLayout()
        self.retry_button = tool_button("Retry selected", self.retry_selected,
                                        "Send the selected jobs again with a fresh budget")
        self.retry_all_button = tool_button("Retry all matching…", self.retry_all_matching,
                                            "Retry every job the filters match")
        self.forget_button = tool_button("Forget selected", self.forget_selected,
                                         "Remove the selected records (messages stay "
                                         "dead) (Del)")
        self.forget_all_button = tool_button("Forget all matching…",
                                             self.forget_all_matching,
                                             "Remove every record the filters match")
        self.export_button = tool_button("Export CSV…", self.choose_export,
                                         "Save the matching jobs to a CSV file "
                                         "(phone numbers masked)")
        for button in (self.retry_button, self.retry_all_button, self.forget_button,
                       self.forget_all_button):
            bar.addWidget(button)
        bar.addStretch()
        bar.addWidget(self.export_button)
        return bar

    # -- loading -------------------------------------------------------------------------
    def activated(self) -> None:
        if not self._loaded_once:
            self._loaded_once = True
            self.refresh()
        else:
            self.model.refresh()
            self._load_choices()

    def refresh(self) -> None:
        self._choices_due = True  # once the rows are on screen: they come first
        self.model.reload()

    def tick(self) -> None:
        self.model.refresh()  # in place: selection and scroll position stay

    def _changed_elsewhere(self) -> None:
        if self._loaded_once:
            self.model.refresh()
            self._load_choices()

    def _load_choices(self) -> None:
        def read() -> tuple[list[tuple[int, str]], list[str], list[str]]:
            with self.ctx.services.db().session() as session:
                return (campaign_choices(session), distinct_values(session, "queue"),
                        distinct_values(session, "error_type"))

        self.ctx.background.run(read, on_done=self._show_choices)

    def _show_choices(self, choices: tuple[list[tuple[int, str]], list[str], list[str]]) -> None:
        campaigns, queues, error_types = choices
        _refill(self.campaign, [(f"{name} (#{id_})", id_) for id_, name in campaigns])
        _refill(self.queue, [(q, q) for q in queues])
        _refill(self.error_type, [(e, e) for e in error_types])

    def _dates_changed(self) -> None:
        since, until = self.since.date(), self.until.date()
        self.model.set_filter(since=None if since == NO_DATE else _local_midnight(since),
                              until=None if until == NO_DATE
                              else _local_midnight(until.addDays(1)))

    def _loaded(self, count: int) -> None:
        if self._choices_due:
            self._choices_due = False
            self._load_choices()
        filtered = self.model.query.filtered
        if count:
            self.body.setCurrentWidget(self.splitter)
        else:
            self.body.setCurrentWidget(self.no_match if filtered else self.empty)
        noun = "failed job" if count == 1 else "failed jobs"
        self.count_label.setText(f"{count:,} {noun}" + (" match" if filtered else ""))
        self._show_detail(None)
        if count:
            self.table.selectRow(0)  # the newest failure's details, without a click
        self._update_buttons()

    # -- selection and detail ----------------------------------------------------------
    def selected_ranges(self) -> list[tuple[int, int]]:
        return sorted({(r.top(), r.bottom()) for r in self.table.selectionModel().selection()})

    def selected_count(self) -> int:
        return sum(last - first + 1 for first, last in self.selected_ranges())

    def _update_buttons(self) -> None:
        selected = self.selected_count() > 0
        any_rows = self.model.rowCount() > 0
        self.retry_button.setEnabled(selected)
        self.forget_button.setEnabled(selected)
        for button in (self.retry_all_button, self.forget_all_button, self.export_button):
            button.setEnabled(any_rows)

    def _selected(self) -> None:
        self._update_buttons()
        index = self.table.currentIndex()
        row = self.model.row_object(index.row()) if index.isValid() else None
        if row is None or self.selected_count() != 1:
            self._show_detail(None)
            return
        self._details.start()

        def read() -> FailedDetail | None:
            with self.ctx.services.db().session() as session:
                return failed_detail(session, row.id)

        # A bound method: dropped, not called, if the page is gone when the answer comes.
        self._details.submit(read, on_done=self._show_detail)

    def _show_detail(self, detail: FailedDetail | None) -> None:
        self.detail = detail
        if detail is None:
            self._details.start()  # an answer still on its way is stale
            self.details.clear()
            return
        self.details.setHtml(detail_html(detail))

    def _open_link(self, url: QUrl) -> None:
        """A link to another record of the same message: show it, retried ones included."""
        self.include_retried.setChecked(True)
        self.search.setText(f"#{url.path()}")
        self.model.set_filter(search=self.search.text(), include_retried=True)

    # -- actions -------------------------------------------------------------------------
    def with_selected_ids(self, then: Callable[[list[int]], None]) -> None:
        """The ids of every selected row. Loaded rows give their own ids: the table
        refreshes in place while the operator looks, so positions can shift. Rows never
        loaded (Ctrl+A over a long list) are looked up by position, off the UI thread."""
        ranges = self.selected_ranges()
        loaded = [self.model.row_object(r) for first, last in ranges
                  for r in range(first, last + 1)]
        if all(row is not None for row in loaded):
            then([row.id for row in loaded])
            return
        query = self.model.current_query()

        def lookup() -> list[int]:
            with self.ctx.services.db().session() as session:
                return ids_in_rows(session, query, ranges)

        self.ctx.background.run(lookup, on_done=then)

    def retry_selected(self) -> None:
        if self.selected_count():
            self.with_selected_ids(lambda ids: self._confirm(
                "Retry", f"Retry {len(ids):,} failed job(s)?", lambda: self._retry(ids=ids)))

    def forget_selected(self) -> None:
        if self.selected_count():
            self.with_selected_ids(lambda ids: self._confirm(
                "Forget", f"Forget {len(ids):,} failed job(s)?", lambda: self._forget(ids=ids)))

    def retry_all_matching(self) -> None:
        # A record is retried once: with "Include retried" on, the count leaves those out.
        self._with_matching(lambda query, found: self._confirm(
            "Retry", f"Retry all {found.count:,} failed job(s) that match the filters?",
            lambda: self._retry(query=query)), include_retried=False)

    def forget_all_matching(self) -> None:
        self._with_matching(lambda query, found: self._confirm(
            "Forget", f"Forget all {found.count:,} failed job(s) that match the filters?",
            lambda: self._forget(query=query)))

    def _with_matching(self, then: Callable[[FailedQuery, Matching], None], *,
                       include_retried: bool | None = None) -> None:
        """Count what matches now; the action is pinned to those records (a job failing
        while the operator reads the question is not included)."""
        query = self.model.current_query()
        if include_retried is not None:
            query = replace(query, include_retried=include_retried)

        def count() -> Matching:
            with self.ctx.services.db().session() as session:
                return matching(session, query)

        def counted(found: Matching) -> None:
            if found.count:
                then(replace(query, through_id=found.last_id), found)
            else:
                self.count_label.setText("Nothing to do: no failed job matches"
                                         + (" that was not retried already"
                                            if include_retried is False else ""))

        self.ctx.background.run(count, on_done=counted)

    def _confirm(self, verb: str, question: str, action: Callable[[], None]) -> None:
        retry = verb == "Retry"
        box = QMessageBox(QMessageBox.Icon.Question if retry else QMessageBox.Icon.Warning,
                          f"{verb} failed jobs", question, parent=self)
        box.setObjectName("confirm-failed-action")
        box.setInformativeText(
            "Their messages are queued again with a fresh attempt budget; each record "
            "stays, marked retried." if retry else
            "The records are removed from the store; their messages stay dead.")
        go = box.addButton(verb, QMessageBox.ButtonRole.AcceptRole if retry
                           else QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QMessageBox.StandardButton.Cancel)

        def clicked(button: object) -> None:
            if button is go:
                action()

        box.buttonClicked.connect(clicked)
        self.confirm_box = box
        box.open()

    def _retry(self, *, ids: list[int] | None = None, query: FailedQuery | None = None) -> None:
        selection = ids if ids is not None else query or self.model.current_query()

        def run() -> str:
            return failed_jobs.retry(self.ctx.services.db(), self.ctx.services.redis(),
                                     selection).describe()

        self._act(run)

    def _forget(self, *, ids: list[int] | None = None,
                query: FailedQuery | None = None) -> None:
        selection = ids if ids is not None else query or self.model.current_query()

        def run() -> str:
            return f"{failed_jobs.forget(self.ctx.services.db(), selection):,} failed job(s) " \
                "forgotten"

        self._act(run)

    def _act(self, run: Callable[[], str]) -> None:
        """Run the action in the background; ``run`` returns what it did, in words."""
        for button in (self.retry_button, self.retry_all_button, self.forget_button,
                       self.forget_all_button):
            button.setEnabled(False)

        def finished(done: str) -> None:
            self.last_action = done
            self.count_label.setText(self.last_action)
            self.ctx.bus.campaigns_changed.emit()  # retried campaigns are sending again
            self.refresh()

        def failed(error: BaseException) -> None:
            self._update_buttons()
            self.ctx.background.error.emit(error)

        self.ctx.background.run(run, on_done=finished, on_error=failed)

    def choose_export(self) -> None:
        default = Path.home() / f"failed-jobs-{datetime.now():%Y%m%d-%H%M}.csv"
        path, _ = QFileDialog.getSaveFileName(self, "Export failed jobs", str(default),
                                              "CSV files (*.csv)")
        if path:
            self.export_to(Path(path))

    def export_to(self, path: Path) -> None:
        query = self.model.current_query()
        self.export_button.setEnabled(False)

        def run() -> int:
            with self.ctx.services.db().session() as session:
                return export_file(session, query, path)

        def done(count: int) -> None:
            self.export_button.setEnabled(True)
            self.last_export = (count, path)
            self.count_label.setText(f"{count:,} failed job(s) exported to {path}")

        def failed(error: BaseException) -> None:
            self.export_button.setEnabled(True)
            self.ctx.background.error.emit(error)

        self.ctx.background.run(run, on_done=done, on_error=failed)


def _refill(combo: QComboBox, items: list[tuple[str, Any]]) -> None:
    """Refill a filter drop-down keeping its choice (or the first entry if it is gone)."""
    current = combo.currentData()
    combo.blockSignals(True)  # a refill is not the operator choosing
    while combo.count() > 1:
        combo.removeItem(1)
    for text, data in items:
        combo.addItem(text, data)
    index = combo.findData(current)
    combo.setCurrentIndex(max(index, 0))
    combo.blockSignals(False)
    if index < 0 and current is not None:
        combo.currentIndexChanged.emit(0)  # the filtered value is gone: show everything


def _local_midnight(day: QDate) -> datetime:
    moment = datetime.combine(date(day.year(), day.month(), day.day()), time())
    return moment.astimezone().astimezone(UTC)


def detail_html(detail: FailedDetail) -> str:
    """The detail pane: the message, what happened to each attempt, and the raw evidence."""
    row = detail.row
    e = html.escape
    parts = [f"<h3>#{row.id} · {e(row.error_type)} · {e(campaign_text(row))}</h3>",
             f"<p>Failed {e(local_time(row.failed_at))} after {row.attempts} attempt(s) on "
             f"queue <b>{e(row.queue)}</b> to {e(row.recipient)} "
             f"(first failure {e(local_time(detail.first_failed_at))}).</p>"]
    if row.retry_of_id:
        parts.append(f"<p>A retry of <a href='failed:{row.retry_of_id}'>#{row.retry_of_id}"
                     "</a>.</p>")
    if row.retried_at is not None:
        after = (f" It failed again: <a href='failed:{row.next_id}'>#{row.next_id}</a>."
                 if row.next_id else f" Now: {e(row.retry_state.removeprefix('retried, '))}.")
        parts.append(f"<p><b>Retried</b> {e(local_time(row.retried_at))}.{after}</p>")
    parts.append(f"<h4>Message</h4><p>{e(detail.body) or '<i>(no text)</i>'}</p>")
    parts.append("<h4>Attempts</h4><table cellspacing='6'>")
    for attempt in detail.attempts:
        parts.append(f"<tr><td>{attempt.number}</td><td>{e(local_time(attempt.at))}</td>"
                     f"<td>{e(attempt.error)}</td></tr>")
    parts.append("</table>")
    parts.append(f"<h4>Exception</h4><p><b>{e(row.error_type)}</b>: {e(row.last_error)}</p>")
    for title, text in (("Traceback", detail.traceback),
                        ("Provider response", detail.provider_response),
                        ("Payload", detail.payload)):
        if text:
            parts.append(f"<h4>{title}</h4><pre>{e(text)}</pre>")
    parts.append(f"<p style='color: gray'>Task {e(row.task_name)}</p>")
    return "".join(parts)

