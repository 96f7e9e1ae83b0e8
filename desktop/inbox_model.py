"""The inbox table: a paged model over the messages members sent (engine.store.inbox),
newest first, searched and filtered in SQL."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QBrush, QColor, QFont

from desktop.background import Background
from desktop.paged_model import Column, Index, PagedTableModel
from desktop.services import Services
from desktop.theme import BAD, GOOD
from engine.domain.delivery import ReplyKeyword
from engine.domain.send_window import ScheduleError, zone
from engine.store.inbox import InboxEntry, count_inbox, list_inbox

KEYWORD_TEXT: dict[str, str] = {ReplyKeyword.OPT_OUT: "STOP", ReplyKeyword.OPT_IN: "START"}
KEYWORD_TIP: dict[str, str] = {
    ReplyKeyword.OPT_OUT: "An opt-out word: the number went on the opt-out list, and no "
                          "campaign texts it any more.",
    ReplyKeyword.OPT_IN: "An opt-in word: the number came off the opt-out list (unless you "
                         "put it there by hand: then only you can take it off).",
}
KEYWORD_COLOR: dict[str, QColor] = {ReplyKeyword.OPT_OUT: BAD, ReplyKeyword.OPT_IN: GOOD}
TIME_FORMAT = "%Y-%m-%d %H:%M"


def operator_time(timezone: str, moment: datetime) -> str:
    """A stored UTC time on the operator's clock (RELAYDESK_TIMEZONE, as schedules)."""
    try:
        local = moment.astimezone(zone(timezone))
    except ScheduleError:
        local = moment.astimezone()
    return local.strftime(TIME_FORMAT)


def keyword_text(keyword: str | None) -> str:
    return KEYWORD_TEXT.get(keyword, keyword) if keyword else ""  # (one a newer version wrote)


def one_line(text: str) -> str:
    """A message on one table line: its line breaks as spaces."""
    return " ".join(text.split())


class InboxModel(PagedTableModel):
    def __init__(self, services: Services, background: Background,
                 parent: QObject | None = None) -> None:
        columns = [
            Column("Received", None, lambda e: self.local_time(e.received_at)),
            Column("From", None, lambda e: e.phone),
            Column("Contact", None, lambda e: e.contact_name or ""),
            Column("Campaign", None, lambda e: e.campaign_name or ""),
            Column("Keyword", None, lambda e: keyword_text(e.keyword)),
            Column("Handled", None, lambda e: "✓" if e.handled_at else ""),
            Column("Message", None, lambda e: one_line(e.text)),  # last: the room left
        ]
        super().__init__(background, columns, parent)
        self.services = services
        self.search = ""
        self.unhandled_only = False

    def column(self, title: str) -> int:
        return next(i for i, c in enumerate(self.columns) if c.title == title)

    def local_time(self, moment: datetime) -> str:
        return operator_time(self.services.settings.timezone, moment)

    @property
    def filtered(self) -> bool:
        return bool(self.search) or self.unhandled_only

    def set_search(self, text: str) -> None:
        if text.strip() != self.search:
            self.search = text.strip()
            self.reload()

    def set_unhandled_only(self, unhandled: bool) -> None:
        if unhandled != self.unhandled_only:
            self.unhandled_only = unhandled
            self.reload()

    def _filters(self) -> dict[str, Any]:
        return {"search": self.search or None, "unhandled_only": self.unhandled_only}

    def fetch_count(self) -> int:
        with self.services.db().session() as session:
            return count_inbox(session, **self._filters())

    def fetch_page(self, offset: int, limit: int) -> list[InboxEntry]:
        with self.services.db().session() as session:
            return list_inbox(session, offset=offset, limit=limit, **self._filters())

    def fetch_head(self) -> tuple[int, int | None]:
        """(count, newest id) for the filters: whether the list changed (off the UI thread)."""
        with self.services.db().session() as session:
            newest = list_inbox(session, limit=1, **self._filters())
            return count_inbox(session, **self._filters()), newest[0].id if newest else None

    def head(self) -> tuple[int, int | None]:
        """(count, newest id) as shown."""
        first = self.row_object(0) if self.rowCount() else None
        return self.rowCount(), first.id if first is not None else None

    def extra_data(self, index: Index, role: int) -> Any:
        row = self.row_object(index.row())
        if row is None:
            return None
        title = self.columns[index.column()].title
        if role == Qt.ItemDataRole.TextAlignmentRole and title in ("Keyword", "Handled"):
            return int(Qt.AlignmentFlag.AlignCenter)
        if role == Qt.ItemDataRole.FontRole and row.handled_at is None:
            font = QFont()
            font.setBold(True)  # not handled yet: it stands out, as unread mail does
            return font
        if role == Qt.ItemDataRole.ForegroundRole and title == "Keyword" and row.keyword:
            color = KEYWORD_COLOR.get(row.keyword)
            return QBrush(color) if color is not None else None
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(row, title)
        return None

    def _tooltip(self, row: InboxEntry, title: str) -> str | None:
        if title == "Message":
            return row.text
        if title == "Keyword" and row.keyword:
            return KEYWORD_TIP.get(row.keyword)
        if title == "Handled" and row.handled_at is not None:
            return f"Handled {self.local_time(row.handled_at)}"
        if title == "Campaign" and row.campaign_id is not None:
            return f"{row.campaign_name} (#{row.campaign_id}): the last campaign sent to this " \
                   "number"
        if title == "From":
            return f"Via {row.provider}"
        return None
