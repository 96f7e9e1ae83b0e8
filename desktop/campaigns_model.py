"""Tables of campaigns and of one campaign's messages, paged from the database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QBrush, QColor
from sqlalchemy import select

from desktop.background import Background
from desktop.paged_model import Column, Index, PagedTableModel
from desktop.services import Services
from desktop.theme import BAD, GOOD, WARN
from engine.domain.delivery import DeliveryStatus
from engine.domain.phones import mask_phone
from engine.domain.send_window import SendWindow
from engine.pipeline.campaign_start import MISSED_PREFIX
from engine.store.campaign_browser import (
    CampaignRow,
    MessageRow,
    campaign_page,
    count_campaigns,
    count_messages,
    message_page,
)
from engine.store.campaign_rows import campaign_audience, campaign_window
from engine.store.campaign_state import held_until
from engine.store.models import Campaign, CampaignStatus, MessageStatus

DELIVERY_TEXT: dict[str, str] = {DeliveryStatus.AWAITING_REPORT: "awaiting report",
                 DeliveryStatus.DELIVERED: "delivered",
                 DeliveryStatus.UNDELIVERED: "undelivered",
                 DeliveryStatus.EXPIRED: "expired"}
DELIVERY_COLORS: dict[str, QColor] = {DeliveryStatus.DELIVERED: GOOD,
                                      DeliveryStatus.UNDELIVERED: BAD,
                                      DeliveryStatus.EXPIRED: WARN}
DELIVERY_TIP: dict[str, str] = {
    DeliveryStatus.AWAITING_REPORT: "The provider took it; its delivery report has not come",
    DeliveryStatus.DELIVERED: "The phone got it",
    DeliveryStatus.UNDELIVERED: "The network or the phone did not take it",
    DeliveryStatus.EXPIRED: "No delivery report came in time: unknown (a report that "
                            "comes later still counts)",
}
STATUS_COLORS = {"sent": GOOD, "completed": GOOD, "failed": WARN, "paused": WARN,
                 "dead": BAD, "cancelled": BAD, "missed its time": WARN}


def delivery_text(delivery: str | None) -> str:
    """A message's delivery status in words; "" before it is sent."""
    if not delivery:
        return ""
    return DELIVERY_TEXT.get(delivery, delivery)


def delivery_summary(row: CampaignRow) -> str | None:
    """``118 of 124 sent delivered (95.2%); 2 undelivered, 3 awaiting a report, 1 expired``;
    None before anything was sent."""
    counts = row.delivery_counts
    total = sum(counts.values())
    if not total:
        return None
    parts = [f"{counts.get(s, 0):,} {t}" for s, t in (
        (DeliveryStatus.UNDELIVERED, "undelivered"),
        (DeliveryStatus.AWAITING_REPORT, "awaiting a report"),
        (DeliveryStatus.EXPIRED, "expired (no report)")) if counts.get(s, 0)]
    return (f"{row.delivered:,} of {total:,} sent delivered ({row.delivered / total:.1%})"
            + (f"; {', '.join(parts)}" if parts else ""))


def local_time(value: Any) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else ""


@dataclass(frozen=True)
class CampaignEntry(CampaignRow):
    """A campaign's row with who and when: its audience, its schedule in its own zone, the
    opted-out contacts left out, and why it waits when it waits on purpose."""

    audience: str  # Audience.describe()
    window: SendWindow  # the time zone and quiet hours it recorded
    scheduled_at: datetime | None
    suppressed: int  # left out at planning, and stopped at send time
    held_until: datetime | None  # running, inside its quiet hours: sending resumes then

    @property
    def missed(self) -> bool:
        return self.status == CampaignStatus.SCHEDULED and \
            (self.pause_reason or "").startswith(MISSED_PREFIX)

    @property
    def shown_status(self) -> str:
        return "missed its time" if self.missed else self.status

    def scheduled_for(self) -> str:
        """Its scheduled time in its zone (kept after it started); "" if never scheduled."""
        if self.scheduled_at is None:
            return ""
        local = self.scheduled_at.astimezone(self.window.zone)
        return f"{local:%Y-%m-%d %H:%M} {self.window.timezone}"

    def when(self) -> str:
        """``2026-12-03 09:00 Africa/Nairobi`` for a scheduled campaign; the hold for one
        waiting for its send window; "" otherwise."""
        if self.status == CampaignStatus.SCHEDULED:
            return self.scheduled_for()
        if self.held_until is not None:
            return self.window.describe_hold(self.held_until)
        return ""


def entries(campaigns: list[Campaign], rows: list[CampaignRow],
            now: datetime) -> list[CampaignEntry]:
    """``rows`` with what ``campaigns`` (the same ones, by id) say about who and when."""
    by_id = {c.id: c for c in campaigns}
    found = []
    for row in rows:
        campaign = by_id[row.id]
        found.append(CampaignEntry(
            **vars(row), audience=campaign_audience(campaign).describe(),
            window=campaign_window(campaign), scheduled_at=campaign.scheduled_at,
            suppressed=campaign.suppressed + row.counts.get(MessageStatus.SUPPRESSED, 0),
            held_until=held_until(campaign, row.counts, now)))
    return found


class CampaignsModel(PagedTableModel):
    def __init__(self, services: Services, background: Background,
                 parent: QObject | None = None) -> None:
        columns = [
            Column("ID", None, lambda c: str(c.id), align_right=True),
            Column("Name", None, lambda c: c.name),
            Column("Status", None, lambda c: c.shown_status),
            Column("When", None, lambda c: c.when()),
            Column("Recipients", None, lambda c: f"{c.recipients:,}", align_right=True),
            Column("Sent", None, lambda c: f"{c.sent:,}", align_right=True),
            Column("Delivered", None, lambda c: f"{c.delivered:,}", align_right=True),
            Column("Undelivered", None, lambda c: f"{c.undelivered:,}", align_right=True),
            Column("Pending", None, lambda c: f"{c.pending:,}", align_right=True),
            Column("Retrying", None, lambda c: f"{c.retrying:,}", align_right=True),
            Column("Dead", None, lambda c: f"{c.dead:,}", align_right=True),
            Column("Opted out", None, lambda c: f"{c.suppressed:,}", align_right=True),
            Column("Audience", None, lambda c: c.audience),
            Column("Queue", None, lambda c: c.queue),
            Column("Created", None, lambda c: local_time(c.created_at)),
        ]
        super().__init__(background, columns, parent)
        self.services = services

    def fetch_count(self) -> int:
        with self.services.db().session() as session:
            return count_campaigns(session)

    def fetch_page(self, offset: int, limit: int) -> list[CampaignEntry]:
        with self.services.db().session() as session:
            rows = campaign_page(session, offset, limit)
            campaigns = list(session.scalars(
                select(Campaign).where(Campaign.id.in_([r.id for r in rows]))))
            return entries(campaigns, rows, datetime.now(UTC))

    def extra_data(self, index: Index, role: int) -> Any:
        row = self.row_object(index.row()) if index.isValid() else None
        if row is None:
            return None
        if role == Qt.ItemDataRole.ForegroundRole and index.column() == 2:
            color = STATUS_COLORS.get(row.shown_status)
            return QBrush(color) if color else None
        title = self.columns[index.column()].title
        if role == Qt.ItemDataRole.ForegroundRole and title == "Undelivered" and \
                row.undelivered:
            return QBrush(BAD)
        if role == Qt.ItemDataRole.ToolTipRole and index.column() in (2, 3):
            return row.pause_reason or None  # "missed its time (…): send it now or …"
        if role == Qt.ItemDataRole.ToolTipRole and title in ("Delivered", "Undelivered"):
            return delivery_summary(row) or "Nothing sent yet"
        return None


class MessagesModel(PagedTableModel):
    """One campaign's messages; the phone is masked, as everywhere outside Contacts."""

    def __init__(self, services: Services, background: Background,
                 parent: QObject | None = None) -> None:
        columns = [
            Column("Message", None, lambda m: str(m.id), align_right=True),
            Column("Recipient", None, lambda m: mask_phone(m.phone)),
            Column("Status", None, lambda m: m.status),
            Column("Delivery", None, lambda m: delivery_text(m.delivery)),
            Column("Reason", None, lambda m: m.delivery_error or ""),
            Column("Attempts", None, lambda m: str(m.attempts), align_right=True),
            Column("Segments", None, lambda m: str(m.segments), align_right=True),
            Column("Updated", None, lambda m: local_time(m.updated_at)),
            Column("Last error", None, lambda m: m.last_error or ""),
        ]
        super().__init__(background, columns, parent)
        self.services = services
        self.campaign_id: int | None = None
        self.status: str | None = None
        self.delivery: str | None = None

    def show_campaign(self, campaign_id: int | None, status: str | None = None,
                      delivery: str | None = None) -> None:
        self.campaign_id, self.status, self.delivery = campaign_id, status, delivery
        self.reload()

    def fetch_count(self) -> int:
        if self.campaign_id is None:
            return 0
        with self.services.db().session() as session:
            return count_messages(session, self.campaign_id, self.status, self.delivery)

    def fetch_page(self, offset: int, limit: int) -> list[MessageRow]:
        if self.campaign_id is None:
            return []
        with self.services.db().session() as session:
            return message_page(session, self.campaign_id, self.status, offset, limit,
                                delivery=self.delivery)

    def extra_data(self, index: Index, role: int) -> Any:
        row = self.row_object(index.row()) if index.isValid() else None
        if row is None:
            return None
        title = self.columns[index.column()].title
        if role == Qt.ItemDataRole.ForegroundRole:
            colors = {"Status": STATUS_COLORS.get(row.status),
                      "Delivery": DELIVERY_COLORS.get(row.delivery or "")}
            color = colors.get(title)
            return QBrush(color) if color else None
        if role == Qt.ItemDataRole.ToolTipRole:
            tips = {"Delivery": DELIVERY_TIP.get(row.delivery or ""),
                    "Reason": row.delivery_error}
            return tips.get(title) or row.body
        return None
