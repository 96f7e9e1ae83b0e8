"""Inbox: what members sent back (replies, STOP, START), newest first, with who sent it
and the campaign it answers. Search it, show only what is not handled yet, mark messages
handled (or not), and reply to one through the normal send path.

STOP and START need nothing from the operator: the report applier has already put the
number on the opt-out list (or taken it off). The page shows it, for the record.
"""

from __future__ import annotations

from PySide6.QtCore import QItemSelection, QItemSelectionModel, Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QStackedWidget,
    QVBoxLayout,
)

from desktop.background import Latest
from desktop.context import ConsoleContext
from desktop.inbox_model import InboxModel
from desktop.pages.base import Page, page_header
from desktop.pages.reply_dialog import ReplyDialog, who
from desktop.widgets import SearchField, data_table, empty_state, tool_button
from engine.operations.campaigns import CreatedCampaign
from engine.store.inbox import InboxEntry, list_inbox, mark_handled

REFRESH_MS = 5000  # replies arrive on their own: look for new ones this often
EMPTY_TEXT = ("No replies yet.\n\nReplies, STOP and START from members appear here once "
              "the receiver gets them.")


class InboxPage(Page):
    page_id = "inbox"
    title = "Inbox"
    icon_name = "inbox"
    refresh_ms = REFRESH_MS

    def __init__(self, ctx: ConsoleContext) -> None:
        super().__init__(ctx)
        self.model = InboxModel(ctx.services, ctx.background, self)
        self._heads = Latest(ctx.background)  # a filter change drops older answers
        self._keep_selected: set[int] = set()  # ids to select again after a reload
        self._loaded_once = False
        self.reply_dialog: ReplyDialog | None = None
        layout = QVBoxLayout(self)
        layout.addWidget(page_header(
            "Inbox", "What members sent back. STOP and START already changed the opt-out "
                     "list; mark the rest handled once you have dealt with them."))
        layout.addLayout(self._build_tools())

        self.table = data_table(self.model, "inbox-table", single=False)
        for column, width in enumerate((140, 130, 150, 190, 75, 70)):
            self.table.setColumnWidth(column, width)
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._update_buttons())
        self.table.doubleClicked.connect(lambda _: self.open_reply())
        self.empty = empty_state(EMPTY_TEXT)
        self.empty.setObjectName("inbox-empty")
        self.no_match = empty_state("No message matches this search.")
        self.no_match.setObjectName("inbox-no-match")
        self.all_handled = empty_state("Every message is handled. Untick \"Unhandled only\" "
                                       "to see them all.")
        self.all_handled.setObjectName("inbox-all-handled")
        self.body = QStackedWidget()
        for widget in (self.table, self.empty, self.no_match, self.all_handled):
            self.body.addWidget(widget)
        layout.addWidget(self.body, 1)
        footer = QHBoxLayout()
        footer.setSpacing(24)
        self.count_label = QLabel()
        self.count_label.setObjectName("inbox-count")
        self.message = QLabel()  # what the last mark or reply did
        self.message.setObjectName("inbox-message")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        footer.addWidget(self.count_label)
        footer.addWidget(self.message, 1)
        layout.addLayout(footer)

        self.model.loaded.connect(self._loaded)
        ctx.bus.settings_saved.connect(self.refresh)  # perhaps another database
        self._update_buttons()

    def _build_tools(self) -> QHBoxLayout:
        tools = QHBoxLayout()
        self.search = SearchField("Search message, number or name…")
        self.search.setObjectName("inbox-search")
        self.search.setMinimumWidth(180)
        self.search.search_changed.connect(self.model.set_search)
        tools.addWidget(self.search, 2)
        self.unhandled = QCheckBox("Unhandled only")
        self.unhandled.setObjectName("inbox-unhandled")
        self.unhandled.toggled.connect(self.model.set_unhandled_only)
        tools.addWidget(self.unhandled)
        tools.addStretch(1)
        self.handled_button = tool_button(
            "Mark handled", lambda: self.mark(True),
            "You have dealt with the selected messages", name="inbox-mark-handled")
        self.unhandled_button = tool_button(
            "Mark unhandled", lambda: self.mark(False),
            "Show the selected messages as still to deal with", name="inbox-mark-unhandled")
        self.reply_button = tool_button(
            "Reply…", self.open_reply,
            "Send a message back to the member who wrote the selected one (double-click)",
            name="inbox-reply")
        for button in (self.handled_button, self.unhandled_button, self.reply_button):
            tools.addWidget(button)
        return tools

    # -- loading -------------------------------------------------------------------------
    def activated(self) -> None:
        if not self._loaded_once:
            self._loaded_once = True
            self.refresh()
        else:
            self.tick()  # replies may have come meanwhile

    def refresh(self) -> None:
        self._keep_selected = set(self.selected_ids())
        self.model.reload()

    def tick(self) -> None:
        """Reload when a reply came (or one went): the list is newest first, so a new
        message moves every row down, and the selection is put back by id."""
        if self._heads.pending:
            return
        self._heads.submit(self.model.fetch_head, on_done=self._head,
                           on_error=lambda _: None)  # a live view tries again next tick

    def _head(self, head: tuple[int, int | None]) -> None:
        if head != self.model.head():
            self.refresh()

    def _loaded(self, count: int) -> None:
        self._heads.start()  # answers about the list before this one no longer count
        if count:
            self.body.setCurrentWidget(self.table)
        elif self.model.search:
            self.body.setCurrentWidget(self.no_match)
        elif self.model.unhandled_only:
            self.body.setCurrentWidget(self.all_handled)
        else:
            self.body.setCurrentWidget(self.empty)
        noun = "message" if count == 1 else "messages"
        qualifier = " match" if self.model.search else ""
        qualifier += " not handled" if self.model.unhandled_only else ""
        self.count_label.setText(f"{count:,} {noun}{qualifier}")
        self._reselect()
        self._update_buttons()

    def _reselect(self) -> None:
        """Select again, among the rows loaded, the messages selected before the reload."""
        keep, self._keep_selected = self._keep_selected, set()
        if not keep:
            return
        selection = QItemSelection()
        last = self.model.columnCount() - 1
        for row in range(self.model.rowCount()):
            entry = self.model.row_object(row)
            if entry is None:
                break  # beyond the first page: not loaded, not looked for
            if entry.id in keep:
                selection.select(self.model.index(row, 0), self.model.index(row, last))
        self.table.selectionModel().select(
            selection, QItemSelectionModel.SelectionFlag.ClearAndSelect)

    # -- selection -----------------------------------------------------------------------
    def selected_rows(self) -> list[int]:
        return sorted({index.row() for index in self.table.selectionModel().selectedRows()})

    def selected_entries(self) -> list[InboxEntry]:
        """The selected messages whose rows are loaded (all of them, unless a selection
        reaches rows never shown: see mark())."""
        return [e for row in self.selected_rows()
                if (e := self.model.row_object(row)) is not None]

    def selected_ids(self) -> list[int]:
        return [entry.id for entry in self.selected_entries()]

    def _update_buttons(self) -> None:
        entries = self.selected_entries()
        self.handled_button.setEnabled(any(e.handled_at is None for e in entries)
                                       or len(entries) < len(self.selected_rows()))
        self.unhandled_button.setEnabled(any(e.handled_at is not None for e in entries)
                                         or len(entries) < len(self.selected_rows()))
        self.reply_button.setEnabled(len(self.selected_rows()) == 1 and len(entries) == 1)

    # -- handled -------------------------------------------------------------------------
    def mark(self, handled: bool) -> None:
        """Mark the selected messages, by id. Rows selected but never loaded (a long
        selection) are read by position off the UI thread, and only if the rows that are
        loaded still sit where the operator saw them: a reply that came meanwhile moves
        every row down."""
        rows = self.selected_rows()
        if not rows:
            return
        shown = {row: e.id for row in rows if (e := self.model.row_object(row)) is not None}
        filters = {"search": self.model.search or None,
                   "unhandled_only": self.model.unhandled_only}
        first, last = rows[0], rows[-1]

        def work() -> int | None:
            with self.ctx.services.db().session() as session:
                if len(shown) == len(rows):
                    ids = list(shown.values())
                else:
                    found = list_inbox(session, offset=first, limit=last - first + 1,
                                       **filters)  # type: ignore[arg-type]
                    at = {first + i: e.id for i, e in enumerate(found)}
                    if any(at.get(row) != entry_id for row, entry_id in shown.items()):
                        return None  # the list moved under the selection
                    ids = [at[row] for row in rows if row in at]
                return mark_handled(session, ids, handled)

        self.ctx.background.run(work, on_done=lambda changed: self._marked(changed, handled))

    def _marked(self, changed: int | None, handled: bool) -> None:
        if changed is None:
            self.message.setText("The inbox changed while you were looking at it (a message "
                                 "came): nothing was marked. Select the messages again.")
            self.table.clearSelection()
        else:
            state = "handled" if handled else "not handled"
            self.message.setText(f"Marked {changed:,} message(s) {state}.")
        self.refresh()  # the selection stays, by id

    # -- reply ---------------------------------------------------------------------------
    def open_reply(self) -> None:
        entries = self.selected_entries()
        if len(entries) != 1 or len(self.selected_rows()) != 1:
            return
        self.reply_dialog = ReplyDialog(self.ctx, entries[0], self)
        self.reply_dialog.sent.connect(lambda created, e=entries[0]: self._replied(e, created))
        self.reply_dialog.open()

    def _replied(self, entry: InboxEntry, created: CreatedCampaign) -> None:
        self.message.setText(f"Reply to {who(entry)} queued as campaign #{created.id}; "
                             "follow it on the Campaigns page.")
        self.ctx.bus.campaigns_changed.emit()
        self.refresh()  # a reply marks the message handled
