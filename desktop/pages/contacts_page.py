"""Contacts: import a CSV file, browse 100,000 contacts with search and tag filter (those on
the opt-out list marked), edit, delete, and hand a selection to Compose."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
)

from desktop.contacts_model import ContactsModel
from desktop.context import ConsoleContext
from desktop.file_import import FileImport
from desktop.heavy_work import import_file
from desktop.paged_model import PAGE_SIZE
from desktop.pages.base import Page, page_header
from desktop.pages.contact_dialog import ContactDialog
from desktop.tag_choice import TagReader, fill_tags
from desktop.widgets import SearchField, data_table, empty_state
from engine.store.contact_browser import ContactView, delete_contacts, ids_in_rows
from engine.store.contacts_import import ImportFileError, ImportResult

ALL_TAGS = "All contacts"


class ContactsPage(FileImport, Page):
    page_id = "contacts"
    title = "Contacts"
    icon_name = "contacts"
    import_title = "Import contacts"
    import_filter = "Contacts (*.csv *.txt *.xlsx);;All files (*)"
    import_report_name = "import-report"
    import_work = staticmethod(import_file)

    def __init__(self, ctx: ConsoleContext) -> None:
        super().__init__(ctx)
        self.model = ContactsModel(ctx.services, ctx.background, self)
        self._tags = TagReader(ctx, self._show_tags)
        self.last_import: ImportResult | ImportFileError | None = None
        layout = QVBoxLayout(self)
        layout.addWidget(page_header(
            "Contacts", "The people campaigns go to. Import a CSV file or an Excel workbook with "
            "the columns name, phone, pledge, paid_amount, due_date and (optional) tags "
            "separated by ';'."))

        layout.addLayout(self._build_tools())

        self.table = data_table(self.model, "contacts-table", single=False)
        self.table.setSortingEnabled(True)
        self.table.horizontalHeader().setSortIndicator(0, Qt.SortOrder.AscendingOrder)
        for column, width in enumerate((220, 150, 90, 110, 110, 110, 100)):
            self.table.setColumnWidth(column, width)
        self.table.doubleClicked.connect(lambda _: self.edit_selected())
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._update_buttons())

        self.empty = empty_state("No contacts yet.\n\nImport a CSV file to start: "
                                 "resources/sample_contacts.csv shows the columns.")
        self.no_match = empty_state("No contact matches this search or tag.")
        self.body = QStackedWidget()
        for widget in (self.table, self.empty, self.no_match):
            self.body.addWidget(widget)
        layout.addWidget(self.body, 1)
        self.count_label = QLabel()
        self.count_label.setObjectName("contacts-count")
        layout.addWidget(self.count_label)

        self.model.loaded.connect(self._loaded)
        ctx.bus.contacts_changed.connect(self.refresh)
        ctx.bus.settings_saved.connect(self.refresh)  # another database, another format
        QShortcut(QKeySequence("Ctrl+I"), self, activated=self.choose_file,
                  context=Qt.ShortcutContext.WindowShortcut)
        QShortcut(QKeySequence.StandardKey.Delete, self.table, activated=self.delete_selected)
        self._update_buttons()
        self._loaded_once = False

    def _build_tools(self) -> QHBoxLayout:
        tools = QHBoxLayout()
        self.search = SearchField("Search name or phone…")
        self.search.setObjectName("contacts-search")
        self.search.search_changed.connect(lambda text: self.model.set_filter(search=text))
        tools.addWidget(self.search, 2)
        self.tag = QComboBox()
        self.tag.setObjectName("contacts-tag")
        self.tag.setMinimumWidth(160)
        self.tag.addItem(ALL_TAGS, None)
        self.tag.currentIndexChanged.connect(
            lambda _: self.model.set_filter(tag=self.tag.currentData()))
        tools.addWidget(self.tag, 1)
        tools.addStretch()
        self.import_button = QPushButton("Import…")
        self.import_button.setObjectName("contacts-import")
        self.import_button.setToolTip("Import contacts from a CSV file (Ctrl+I)")
        self.import_button.clicked.connect(self.choose_file)
        self.edit_button = QPushButton("Edit…")
        self.edit_button.clicked.connect(self.edit_selected)
        self.delete_button = QPushButton("Delete")
        self.delete_button.clicked.connect(self.delete_selected)
        self.compose_button = QPushButton("Compose for selected")
        self.compose_button.setToolTip("Send a campaign to the selected contacts only")
        self.compose_button.clicked.connect(self.compose_for_selected)
        for button in (self.import_button, self.edit_button, self.delete_button,
                       self.compose_button):
            tools.addWidget(button)
        return tools

    def activated(self) -> None:
        if not self._loaded_once:
            self._loaded_once = True
            self.refresh()
        else:  # a provider's opt-out answer may have marked a contact meanwhile
            self.model.refresh()

    def refresh(self) -> None:
        self.model.reload()
        self._tags.load()

    def _show_tags(self, tags: list[tuple[str, int]]) -> None:
        if not fill_tags(self.tag, tags, ALL_TAGS) and self.model.query.tag:
            self.model.set_filter(tag=None)  # the tag is gone: show what the combo says

    def _loaded(self, count: int) -> None:
        filtered = bool(self.model.query.search or self.model.query.tag)
        if count:
            self.body.setCurrentWidget(self.table)
        else:
            self.body.setCurrentWidget(self.no_match if filtered else self.empty)
        suffix = " match" if filtered else ""
        self.count_label.setText(f"{count:,} contact{'s' if count != 1 else ''}{suffix}")
        self._update_buttons()

    # -- selection -------------------------------------------------------------------------
    def selected_ranges(self) -> list[tuple[int, int]]:
        """The selected rows as (first, last) ranges: Ctrl+A on 100,000 rows is one range,
        and most of its rows were never loaded."""
        return sorted({(r.top(), r.bottom()) for r in self.table.selectionModel().selection()})

    def selected_count(self) -> int:
        return sum(last - first + 1 for first, last in self.selected_ranges())

    def selected_contacts(self) -> list[ContactView]:
        """The selected contacts whose rows are loaded (all of them for a row on screen)."""
        rows = [r for first, last in self.selected_ranges() for r in range(first, last + 1)
                if r // PAGE_SIZE in self.model.loaded_pages()]
        return [c for c in (self.model.row_object(r) for r in rows) if c is not None]

    def with_selected_ids(self, then: Callable[[list[int]], None]) -> None:
        """Look up the ids of every selected row (loaded or not) off the UI thread."""
        query, ranges = self.model.current_query(), self.selected_ranges()

        def lookup() -> list[int]:
            with self.ctx.services.db().session() as session:
                return ids_in_rows(session, query, ranges)

        self.ctx.background.run(lookup, on_done=then)

    def _update_buttons(self) -> None:
        selected = self.selected_count()
        self.edit_button.setEnabled(selected == 1)
        self.delete_button.setEnabled(selected > 0)
        self.compose_button.setEnabled(selected > 0)

    # -- actions -------------------------------------------------------------------------
    def import_report(self, result: ImportResult) -> tuple[str, str]:
        summary = f"Imported {result.imported:,} new contact(s), updated {result.updated:,}."
        if not result.rejected_count:
            return summary, ""
        summary += (f"\nRejected {result.rejected_count:,} row(s). Fix them and import the "
                    "file again: rows already imported will be updated, not duplicated.")
        return summary, "\n".join(result.rejection_lines("row"))

    def imported(self, summary: str) -> None:
        self.ctx.bus.contacts_changed.emit()

    def edit_selected(self) -> None:
        selected = self.selected_contacts()
        if len(selected) != 1:
            return
        self.dialog = ContactDialog(self.ctx, selected[0], self)
        self.dialog.accepted.connect(self.ctx.bus.contacts_changed.emit)
        self.dialog.open()

    def delete_selected(self) -> None:
        if self.selected_count():
            self.with_selected_ids(self.confirm_delete)

    def confirm_delete(self, ids: list[int]) -> None:
        """Ask about exactly these contacts; delete exactly these."""
        shown = self.selected_contacts()[:3]
        names = ", ".join(c.name for c in shown) + ("…" if len(ids) > len(shown) else "")
        box = QMessageBox(QMessageBox.Icon.Warning, "Delete contacts",
                          f"Delete {len(ids):,} contact(s) ({names})?", parent=self)
        box.setObjectName("confirm-delete")
        box.setInformativeText("Messages already sent to them stay in their campaigns' "
                               "history.")
        delete = box.addButton("Delete", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.buttonClicked.connect(lambda b: b is delete and self.delete_ids(ids))
        self.confirm_box = box
        box.open()

    def delete_ids(self, ids: list[int]) -> None:
        def remove() -> int:
            with self.ctx.services.db().session() as session:
                return delete_contacts(session, ids)

        self.ctx.background.run(remove, on_done=lambda _: self.ctx.bus.contacts_changed.emit())

    def compose_for_selected(self) -> None:
        def chosen(ids: list[int]) -> None:
            if ids:
                self.ctx.bus.recipients_chosen.emit(ids)
                self.ctx.bus.show_page.emit("compose")

        if self.selected_count():
            self.with_selected_ids(chosen)
