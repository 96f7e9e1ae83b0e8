"""Importing a file the operator picks, for the Contacts and Opt-outs pages: one import at a
time, run in the helper process (parsing a 100,000-row file on a thread of the window's
process would stall it), the outcome in a report dialog whose text can be copied."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QFileDialog, QPushButton, QWidget

from desktop.context import ConsoleContext
from desktop.widgets import ReportDialog
from engine.config.settings import Settings
from engine.store.contacts_import import ImportFileError, ImportResult


class FileImport:
    """A page mixes this in and says what it imports: ``import_title`` (the dialogs'
    title), ``import_filter`` (the file dialog's), ``import_report_name`` (the report's
    object name), ``import_work`` (a staticmethod: the heavy_work function run in the
    helper process) and ``import_report`` (summary and details of a result).
    ``imported`` is called after a successful import with the summary's first line. The
    page keeps ``import_button``, ``report`` and ``last_import``."""

    ctx: ConsoleContext
    import_button: QPushButton
    import_title: str
    import_filter: str
    import_report_name: str
    import_work: Callable[[Settings, Path], ImportResult]
    report: ReportDialog
    last_import: ImportResult | ImportFileError

    def import_report(self, result: Any) -> tuple[str, str]:
        raise NotImplementedError

    def imported(self, summary: str) -> None:
        raise NotImplementedError

    def _widget(self) -> QWidget:
        assert isinstance(self, QWidget)
        return self

    def choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self._widget(), self.import_title,
                                              str(Path.home()), self.import_filter)
        if path:
            self.import_file(Path(path))

    def import_file(self, path: Path) -> None:
        if not self.import_button.isEnabled():
            return  # one import at a time (a shortcut can ask while one runs)
        self.import_button.setEnabled(False)
        self.import_button.setText("Importing…")
        self.ctx.background.run_in_process(self.import_work, self.ctx.settings, path,
                                           on_done=self._imported,
                                           on_error=self._import_failed)

    def _import_done(self) -> None:
        self.import_button.setEnabled(True)
        self.import_button.setText("Import…")

    def _imported(self, result: ImportResult) -> None:
        self._import_done()
        self.last_import = result
        summary, details = self.import_report(result)
        self._report(summary, details)
        self.imported(summary.split("\n")[0])

    def _import_failed(self, error: BaseException) -> None:
        self._import_done()
        if not isinstance(error, ImportFileError):
            self.ctx.background.error.emit(error)
            return
        self.last_import = error
        self._report(f"Nothing was imported: {error}", "")

    def _report(self, summary: str, details: str) -> None:
        self.report = ReportDialog(self._widget(), self.import_title, summary, details)
        self.report.setObjectName(self.import_report_name)
        self.report.open()
