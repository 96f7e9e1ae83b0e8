"""The failed-jobs table: a paged model over the dead-letter query (engine.store.failed_query)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QApplication

from desktop.background import Background
from desktop.paged_model import PAGE_SIZE, Column, Index, PagedTableModel
from desktop.services import Services
from engine.store.failed_query import (
    FailedQuery,
    FailedRow,
    count_and_first_page,
    count_matching,
    failed_page,
)


def local_time(moment: datetime) -> str:
    """A stored UTC time as the operator's wall clock shows it."""
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def campaign_text(row: FailedRow) -> str:
    if row.campaign_id is None:
        return "(deleted)"
    return row.campaign or f"#{row.campaign_id}"


COLUMNS = [
    Column("Failed at", "failed_at", lambda r: local_time(r.failed_at)),
    Column("Campaign", "campaign", campaign_text),
    Column("Recipient", "recipient", lambda r: r.recipient),
    Column("Queue", "queue", lambda r: r.queue),
    Column("Error type", "error_type", lambda r: r.error_type),
    Column("Attempts", "attempts", lambda r: str(r.attempts), align_right=True),
    Column("Retry", None, lambda r: r.retry_state),
    Column("Error", None, lambda r: r.last_error),
]


class FailedModel(PagedTableModel):
    def __init__(self, services: Services, background: Background,
                 parent: QObject | None = None) -> None:
        super().__init__(background, COLUMNS, parent)
        self.services = services
        self.query = FailedQuery()
        self.sort_key = "failed_at"
        self.descending = True

    def set_filter(self, **changes: Any) -> None:
        """Change any of FailedQuery's filters (search, campaign_id, queue, error_type,
        since, until, include_retried) and reload; unchanged filters leave it alone."""
        query = replace(self.query, **changes)
        if query != self.query:
            self.query = query
            self.reload()

    def current_query(self) -> FailedQuery:
        return replace(self.query, sort=self.sort_key or "failed_at",
                       descending=self.descending)

    def fetch_count(self) -> int:
        with self.services.db().session() as session:
            return count_matching(session, self.current_query())

    def _count_and_first_page(self) -> tuple[int, list[FailedRow]]:
        # What a reload fetches, in one scan when searching (see count_and_first_page).
        with self.services.db().session() as session:
            return count_and_first_page(session, self.current_query(), PAGE_SIZE)

    def fetch_page(self, offset: int, limit: int) -> list[FailedRow]:
        with self.services.db().session() as session:
            return failed_page(session, self.current_query(), offset, limit)

    def extra_data(self, index: Index, role: int) -> Any:
        if role not in (Qt.ItemDataRole.ToolTipRole, Qt.ItemDataRole.ForegroundRole):
            return None
        row = self.row_object(index.row())
        if row is None:
            return None
        if role == Qt.ItemDataRole.ToolTipRole:
            return row.last_error
        if row.retried_at is not None:  # history, not work to do: muted
            return QApplication.palette().color(QPalette.ColorGroup.Disabled,
                                                QPalette.ColorRole.Text)
        return None
