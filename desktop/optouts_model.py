"""The opt-out table: a paged model over the suppression list (engine.store.optouts)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from PySide6.QtCore import QObject, Qt

from desktop.background import Background
from desktop.paged_model import Column, Index, PagedTableModel
from desktop.services import Services
from engine.domain.send_window import ScheduleError, zone
from engine.store.models import OptOut, OptSource
from engine.store.optouts import count_optouts, list_optouts

SOURCE_TEXT = {
    OptSource.MANUAL: "Added here",
    OptSource.IMPORT: "Imported",
    OptSource.PROVIDER: "Provider",
    OptSource.REPLY: "Replied STOP",
}
SOURCE_TIP = {
    OptSource.MANUAL: "Added by hand (console or 'relaydesk optouts add')",
    OptSource.IMPORT: "Imported from a file",
    OptSource.PROVIDER: "The provider said the recipient opted out or blocked the sender",
    OptSource.REPLY: "The recipient answered STOP",
}


def source_text(source: str) -> str:
    try:
        return SOURCE_TEXT[OptSource(source)]
    except ValueError:  # a source a newer version wrote
        return source


class OptOutsModel(PagedTableModel):
    def __init__(self, services: Services, background: Background,
                 parent: QObject | None = None) -> None:
        columns = [
            Column("Phone", None, lambda o: o.phone),
            Column("Source", None, lambda o: source_text(o.source)),
            Column("Added", None, lambda o: self.local_time(o.created_at)),
            Column("Reason", None, lambda o: o.reason),  # last: it takes the room left
        ]
        super().__init__(background, columns, parent)
        self.services = services
        self.search = ""

    def local_time(self, moment: datetime) -> str:
        """A stored UTC time on the operator's clock (RELAYDESK_TIMEZONE, as schedules)."""
        try:
            local = moment.astimezone(zone(self.services.settings.timezone))
        except ScheduleError:
            local = moment.astimezone()
        return local.strftime("%Y-%m-%d %H:%M")

    def set_search(self, text: str) -> None:
        if text.strip() != self.search:
            self.search = text.strip()
            self.reload()

    def fetch_count(self) -> int:
        with self.services.db().session() as session:
            return count_optouts(session, self.search or None)

    def fetch_page(self, offset: int, limit: int) -> list[OptOut]:
        with self.services.db().session() as session:
            return list_optouts(session, search=self.search or None, offset=offset,
                                limit=limit)

    def extra_data(self, index: Index, role: int) -> Any:
        if role != Qt.ItemDataRole.ToolTipRole:
            return None
        row = self.row_object(index.row())
        if row is None:
            return None
        if self.columns[index.column()].title == "Source":
            try:
                return SOURCE_TIP[OptSource(row.source)]
            except ValueError:
                return None
        if self.columns[index.column()].title == "Reason":
            return row.reason or None
        return None
