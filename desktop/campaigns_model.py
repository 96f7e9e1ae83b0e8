"""Tables of campaigns and of one campaign's messages, paged from the database."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QBrush

from desktop.background import Background
from desktop.paged_model import Column, Index, PagedTableModel
from desktop.services import Services
from desktop.theme import BAD, GOOD, WARN
from engine.domain.phones import mask_phone
from engine.store.campaign_browser import (
    CampaignRow,
    MessageRow,
    campaign_page,
    count_campaigns,
    count_messages,
    message_page,
)

STATUS_COLORS = {"sent": GOOD, "completed": GOOD, "failed": WARN, "paused": WARN,
                 "dead": BAD, "cancelled": BAD}


def local_time(value: Any) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else ""


class CampaignsModel(PagedTableModel):
    def __init__(self, services: Services, background: Background,
                 parent: QObject | None = None) -> None:
        columns = [
            Column("ID", None, lambda c: str(c.id), align_right=True),
            Column("Name", None, lambda c: c.name),
            Column("Status", None, lambda c: c.status),
            Column("Recipients", None, lambda c: f"{c.recipients:,}", align_right=True),
            Column("Sent", None, lambda c: f"{c.sent:,}", align_right=True),
            Column("Pending", None, lambda c: f"{c.pending:,}", align_right=True),
            Column("Retrying", None, lambda c: f"{c.retrying:,}", align_right=True),
            Column("Dead", None, lambda c: f"{c.dead:,}", align_right=True),
            Column("Queue", None, lambda c: c.queue),
            Column("Created", None, lambda c: local_time(c.created_at)),
        ]
        super().__init__(background, columns, parent)
        self.services = services

    def fetch_count(self) -> int:
        with self.services.db().session() as session:
            return count_campaigns(session)

    def fetch_page(self, offset: int, limit: int) -> list[CampaignRow]:
        with self.services.db().session() as session:
            return campaign_page(session, offset, limit)

    def extra_data(self, index: Index, role: int) -> Any:
        if role == Qt.ItemDataRole.ForegroundRole and index.column() == 2:
            row = self.row_object(index.row())
            color = STATUS_COLORS.get(row.status) if row else None
            return QBrush(color) if color else None
        return None


class MessagesModel(PagedTableModel):
    """One campaign's messages; the phone is masked, as everywhere outside Contacts."""

    def __init__(self, services: Services, background: Background,
                 parent: QObject | None = None) -> None:
        columns = [
            Column("Message", None, lambda m: str(m.id), align_right=True),
            Column("Recipient", None, lambda m: mask_phone(m.phone)),
            Column("Status", None, lambda m: m.status),
            Column("Attempts", None, lambda m: str(m.attempts), align_right=True),
            Column("Segments", None, lambda m: str(m.segments), align_right=True),
            Column("Updated", None, lambda m: local_time(m.updated_at)),
            Column("Last error", None, lambda m: m.last_error or ""),
        ]
        super().__init__(background, columns, parent)
        self.services = services
        self.campaign_id: int | None = None
        self.status: str | None = None

    def show_campaign(self, campaign_id: int | None, status: str | None = None) -> None:
        self.campaign_id, self.status = campaign_id, status
        self.reload()

    def fetch_count(self) -> int:
        if self.campaign_id is None:
            return 0
        with self.services.db().session() as session:
            return count_messages(session, self.campaign_id, self.status)

    def fetch_page(self, offset: int, limit: int) -> list[MessageRow]:
        if self.campaign_id is None:
            return []
        with self.services.db().session() as session:
            return message_page(session, self.campaign_id, self.status, offset, limit)

    def extra_data(self, index: Index, role: int) -> Any:
        row = self.row_object(index.row()) if index.isValid() else None
        if row is None:
            return None
        if role == Qt.ItemDataRole.ForegroundRole and index.column() == 2:
            color = STATUS_COLORS.get(row.status)
            return QBrush(color) if color else None
        if role == Qt.ItemDataRole.ToolTipRole:
            return row.body
        return None
