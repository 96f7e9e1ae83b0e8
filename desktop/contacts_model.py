"""The contacts table: a paged model over the contacts query. A contact whose number is on
the opt-out list says so in its own column (read in the same query as the row)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import QApplication

from desktop.background import Background
from desktop.paged_model import Column, Index, PagedTableModel
from desktop.services import Services
from desktop.theme import is_dark
from engine.domain.money import format_amount
from engine.store.contact_browser import ContactQuery, ContactView, contact_page, count_matching

OPTED_OUT = "Opted out"
OPT_OUT_COLUMN = 2
OPTED_OUT_TIP = ("This number is on the opt-out list (Opt-outs page): campaigns leave it "
                 "out.")
# A red with enough contrast on each palette's table background.
OPTED_OUT_COLOR = {False: QColor("#b42318"), True: QColor("#ff8a80")}


class ContactsModel(PagedTableModel):
    def __init__(self, services: Services, background: Background,
                 parent: QObject | None = None) -> None:
        def money(cents: int) -> str:  # the format in force, also after a settings save
            return format_amount(cents, services.settings.currency_format)

        columns = [
            Column("Name", "name", lambda c: c.name),
            Column("Phone", "phone", lambda c: c.phone),
            Column("Opt-out", None, lambda c: OPTED_OUT if c.opted_out else ""),
            Column("Pledge", "pledge", lambda c: money(c.pledge_cents), align_right=True),
            Column("Paid", "paid_amount", lambda c: money(c.paid_cents), align_right=True),
            Column("Balance", "balance", lambda c: money(c.balance_cents), align_right=True),
            Column("Due date", "due_date", lambda c: c.due_date.isoformat()),
            Column("Tags", None, lambda c: ", ".join(c.tags)),
        ]
        super().__init__(background, columns, parent)
        self.services = services
        self.query = ContactQuery()
        self.sort_key = "name"

    def set_filter(self, *, search: str | None = None, tag: str | None = "") -> None:
        """Change the search text and/or the tag ("" leaves the tag as it is)."""
        changes: dict[str, Any] = {}
        if search is not None:
            changes["search"] = search
        if tag != "":
            changes["tag"] = tag
        self.query = replace(self.query, **changes)
        self.reload()

    def current_query(self) -> ContactQuery:
        return replace(self.query, sort=self.sort_key or "name", descending=self.descending)

    def fetch_count(self) -> int:
        with self.services.db().session() as session:
            return count_matching(session, self.current_query())

    def fetch_page(self, offset: int, limit: int) -> list[ContactView]:
        with self.services.db().session() as session:
            return contact_page(session, self.current_query(), offset, limit)

    def extra_data(self, index: Index, role: int) -> Any:
        if index.column() != OPT_OUT_COLUMN:
            return None
        contact = self.row_object(index.row())
        if contact is None or not contact.opted_out:
            return None
        if role == Qt.ItemDataRole.ForegroundRole:
            return OPTED_OUT_COLOR[is_dark(QApplication.instance())]
        if role == Qt.ItemDataRole.FontRole:
            font = QFont()
            font.setBold(True)
            return font
        if role == Qt.ItemDataRole.ToolTipRole:
            return OPTED_OUT_TIP
        return None
