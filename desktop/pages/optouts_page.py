"""Opt-outs: the suppression list. Numbers on it are never texted: campaigns leave them
out when they are planned and again just before each message goes. Browse and search it,
add numbers by hand, remove them, import a file of them, export it to CSV."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QStackedWidget,
    QVBoxLayout,
)

from desktop.context import ConsoleContext
from desktop.file_import import FileImport
from desktop.heavy_work import import_optouts_file
from desktop.optouts_model import OptOutsModel
from desktop.pages.base import Page, page_header
from desktop.pages.optout_dialog import Added, OptOutDialog, change_summary
from desktop.widgets import SearchField, data_table, empty_state, tool_button
from engine.store.contacts_import import ImportFileError
from engine.store.optouts import (
    OptOutChange,
    OptOutImport,
    export_optouts,
    list_optouts,
    remove_optouts,
)


class OptOutsPage(FileImport, Page):
    page_id = "optouts"
    title = "Opt-outs"
    icon_name = "optouts"
    import_title = "Import opt-outs"
    import_filter = "Opt-out lists (*.csv *.txt *.xlsx);;All files (*)"
    import_report_name = "optouts-import-report"
    import_work = staticmethod(import_optouts_file)

    def __init__(self, ctx: ConsoleContext) -> None:
        super().__init__(ctx)
        self.model = OptOutsModel(ctx.services, ctx.background, self)
        self.last_import: OptOutImport | ImportFileError | None = None
        self.last_export: tuple[int, Path] | None = None
        layout = QVBoxLayout(self)
        layout.addWidget(page_header(
            "Opt-outs", "Numbers that must not be texted. Campaigns leave them out when "
            "they are planned and again just before each message goes; the provider's "
            "\"unsubscribed\" and \"blocked\" answers add numbers here by themselves."))
        layout.addLayout(self._build_tools())

        self.table = data_table(self.model, "optouts-table", single=False)
        for column, width in enumerate((160, 120, 150)):
            self.table.setColumnWidth(column, width)
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._update_buttons())
        self.empty = empty_state(
            "No one has opted out.\n\nNumbers added here are never sent to, by any "
            "campaign. Add them by hand, import a list (CSV with a phone column, one "
            "number per line, or Excel), or let the provider's opt-out answers add them.")
        self.empty.setObjectName("optouts-empty")
        self.no_match = empty_state("No opted-out number matches this search.")
        self.body = QStackedWidget()
        for widget in (self.table, self.empty, self.no_match):
            self.body.addWidget(widget)
        layout.addWidget(self.body, 1)
        self.count_label = QLabel()
        self.count_label.setObjectName("optouts-count")
        self.message = QLabel()  # what the last add, remove or export did
        self.message.setObjectName("optouts-message")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        footer = QHBoxLayout()
        footer.setSpacing(24)
        footer.addWidget(self.count_label)
        footer.addWidget(self.message, 1)
        layout.addLayout(footer)

        self.model.loaded.connect(self._loaded)
        ctx.bus.settings_saved.connect(self.refresh)  # perhaps another database
        QShortcut(QKeySequence.StandardKey.Delete, self.table, activated=self.remove_selected)
        self._loaded_once = False
        self._update_buttons()

    def _build_tools(self) -> QHBoxLayout:
        tools = QHBoxLayout()
        self.search = SearchField("Search phone or reason…")
        self.search.setObjectName("optouts-search")
        self.search.setMinimumWidth(180)  # its placeholder whole in the smallest window
        self.search.search_changed.connect(self.model.set_search)
        tools.addWidget(self.search, 2)
        tools.addStretch(1)
        self.add_button = tool_button("Add…", self.open_add,
                                      "Add numbers to the list by hand", name="optouts-add")
        self.remove_button = tool_button("Remove", self.remove_selected,
                                         "Take the selected numbers off the list (Del)",
                                         name="optouts-remove")
        self.import_button = tool_button("Import…", self.choose_file,
                                         "Add the numbers in a CSV, text or Excel file",
                                         name="optouts-import")
        self.export_button = tool_button("Export…", self.choose_export,
                                         "Save the whole list to a CSV file",
                                         name="optouts-export")
        for button in (self.add_button, self.remove_button, self.import_button,
                       self.export_button):
            tools.addWidget(button)
        return tools

    # -- loading -------------------------------------------------------------------------
    def activated(self) -> None:
        if not self._loaded_once:
            self._loaded_once = True
            self.refresh()
        else:  # the provider may have added numbers meanwhile
            self.model.refresh()

    def refresh(self) -> None:
        self.model.reload()

    def _loaded(self, count: int) -> None:
        searching = bool(self.model.search)
        if count:
            self.body.setCurrentWidget(self.table)
        else:
            self.body.setCurrentWidget(self.no_match if searching else self.empty)
        noun = "number" if count == 1 else "numbers"
        self.count_label.setText(f"{count:,} opted-out {noun}" + (" match" if searching
                                                                  else ""))
        self._update_buttons()

    def _changed(self, message: str) -> None:
        """The list changed: show what happened, re-read it, and tell Contacts and
        Compose (their marks and recipient counts depend on it)."""
        self.message.setText(message)
        self.model.reload()
        self.ctx.bus.contacts_changed.emit()

    # -- selection -----------------------------------------------------------------------
    def selected_ranges(self) -> list[tuple[int, int]]:
        return sorted({(r.top(), r.bottom()) for r in self.table.selectionModel().selection()})

    def selected_count(self) -> int:
        return sum(last - first + 1 for first, last in self.selected_ranges())

    def _update_buttons(self) -> None:
        self.remove_button.setEnabled(self.selected_count() > 0)
        self.export_button.setEnabled(self.model.rowCount() > 0 or bool(self.model.search))

    # -- add -----------------------------------------------------------------------------
    def open_add(self) -> None:
        self.dialog = OptOutDialog(self.ctx, self)
        self.dialog.changed.connect(self._added)
        self.dialog.open()

    def _added(self, outcome: Added) -> None:
        self._changed(change_summary(outcome).replace("\n", " "))

    # -- remove --------------------------------------------------------------------------
    def remove_selected(self) -> None:
        """Read the selected numbers (rows never loaded too) off the UI thread, then ask."""
        if not self.selected_count():
            return
        search, ranges = self.model.search or None, self.selected_ranges()
        # What the operator saw on the rows already loaded. The list is newest first, so a
        # number added since (by the provider, say) moves every row down: reading the
        # selection again by position would then remove numbers nobody selected.
        shown = {row: optout.phone for first, last in ranges
                 for row in range(first, last + 1)
                 if (optout := self.model.row_object(row)) is not None}

        def phones() -> list[str] | None:
            with self.ctx.services.db().session() as session:
                fresh = {first + i: o.phone for first, last in ranges
                         for i, o in enumerate(list_optouts(session, search=search,
                                                            offset=first,
                                                            limit=last - first + 1))}
            if any(fresh.get(row) != phone for row, phone in shown.items()):
                return None  # the list moved under the selection
            return [fresh[row] for row in sorted(fresh)]

        self.ctx.background.run(phones, on_done=self.confirm_remove)

    def confirm_remove(self, phones: list[str] | None) -> None:
        """Ask about exactly these numbers; remove exactly these."""
        if phones is None:
            self.message.setText("The list changed while you were looking at it (numbers "
                                 "were added or removed): nothing was removed. Select the "
                                 "numbers again.")
            self.table.clearSelection()
            self.model.reload()
            return
        if not phones:
            return
        shown = ", ".join(phones[:3]) + ("…" if len(phones) > 3 else "")
        box = QMessageBox(QMessageBox.Icon.Warning, "Remove opt-outs",
                          f"Remove {len(phones):,} number(s) from the opt-out list "
                          f"({shown})?", parent=self)
        box.setObjectName("confirm-remove")
        box.setInformativeText("Campaigns will text them again. Remove a number only when "
                               "its owner asked to receive messages again.")
        remove = box.addButton("Remove", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.buttonClicked.connect(lambda b: b is remove and self.remove_phones(phones))
        self.confirm_box = box
        box.open()

    def remove_phones(self, phones: list[str]) -> None:
        region = self.ctx.settings.default_region

        def remove() -> OptOutChange:
            with self.ctx.services.db().session() as session:
                return remove_optouts(session, phones, region=region)

        self.ctx.background.run(remove, on_done=lambda change: self._changed(
            f"Removed {change.removed:,} number(s) from the opt-out list."))

    # -- import --------------------------------------------------------------------------
    def import_report(self, result: OptOutImport) -> tuple[str, str]:
        already = f"; {result.already:,} already on it" if result.already else ""
        summary = f"Added {result.imported:,} number(s) to the opt-out list{already}."
        if not result.rejected_count:
            return summary, ""
        summary += (f"\nRejected {result.rejected_count:,} line(s). Fix them and import the "
                    "file again: numbers already added are not added twice.")
        return summary, "\n".join(result.rejection_lines("line"))

    def imported(self, summary: str) -> None:
        self._changed(summary)

    # -- export --------------------------------------------------------------------------
    def choose_export(self) -> None:
        default = Path.home() / f"opt-outs-{datetime.now():%Y%m%d-%H%M}.csv"
        path, _ = QFileDialog.getSaveFileName(self, "Export opt-outs", str(default),
                                              "CSV files (*.csv)")
        if path:
            self.export_to(Path(path))

    def export_to(self, path: Path) -> None:
        self.export_button.setEnabled(False)

        def run() -> int:
            with self.ctx.services.db().session() as session:
                return export_optouts(session, path)

        def done(count: int) -> None:
            self._update_buttons()
            self.last_export = (count, path)
            self.message.setText(f"{count:,} number(s) exported to {path}")

        def failed(error: BaseException) -> None:
            self._update_buttons()
            self.ctx.background.error.emit(error)

        self.ctx.background.run(run, on_done=done, on_error=failed)
