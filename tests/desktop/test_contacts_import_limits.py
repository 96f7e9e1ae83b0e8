"""The console's import (through its helper process) and contact edit dialog apply the
same rules as the CLI: a broken file is refused whole, absurd amounts and control
characters are row errors, and a long rejection list is capped and counted."""

from __future__ import annotations

from pathlib import Path

from pytestqt.qtbot import QtBot

from desktop.app import Console
from desktop.pages.contact_dialog import ContactDialog
from desktop.pages.contacts_page import ContactsPage
from engine.store.contacts import count_contacts
from engine.store.contacts_import import ImportFileError, ImportResult
from tests.desktop.conftest import contacts_page

HEADER = "name,phone,pledge,paid_amount,due_date,tags\n"


def import_and_wait(page: ContactsPage, qtbot: QtBot, path: Path) -> None:
    page.import_file(path)
    qtbot.waitUntil(lambda: hasattr(page, "report") and page.report.isVisible(),
                    timeout=30_000)


def test_broken_quote_is_refused_whole_in_the_console(console: Console, qtbot: QtBot,
                                                       tmp_path: Path) -> None:
    page = contacts_page(console, qtbot)
    rows = [f"Person {i},07123{i:05d},{i},0,2027-01-31," for i in range(2, 53)]
    rows[2] = '"Bob,0712000004,4,0,2027-01-31,'
    path = tmp_path / "broken.csv"
    path.write_text(HEADER + "\n".join(rows) + "\n")
    import_and_wait(page, qtbot, path)
    assert isinstance(page.last_import, ImportFileError)
    assert page.report.summary.text().startswith("Nothing was imported: broken.csv, line 4: ")
    with console.ctx.services.db().session() as session:
        assert count_contacts(session) == 0


def test_long_rejection_list_is_capped_and_absurd_amounts_are_rows(
        console: Console, qtbot: QtBot, tmp_path: Path) -> None:
    page = contacts_page(console, qtbot)
    path = tmp_path / "many.csv"
    path.write_text(HEADER + "Huge,0712345679,1e999999999,0,2027-01-31,\n"
                    + "Tab,0712345670,1,0,2027-01-31,\"a\tb\"\n"
                    + "".join(f"Bad {i},not-a-phone,1,0,2027-01-31,\n" for i in range(300))
                    + "Good,0712345678,1,0,2027-01-31,\n")
    import_and_wait(page, qtbot, path)
    result = page.last_import
    assert isinstance(result, ImportResult)
    assert result.imported == 1
    assert "Rejected 302 row(s)" in page.report.summary.text()
    details = page.report.details.toPlainText().splitlines()
    assert details[0] == ("line 2: bad pledge: '1e999999999' is above the largest amount "
                          "accepted (1,000,000,000,000)")
    assert details[1].startswith("line 3: tag 'a\\tb' contains a control character (U+0009")
    assert len(details) == 101
    assert details[-1] == "... and 202 more rejected row(s) not listed (only the first 100 are " \
                          "shown)"


def test_edit_dialog_refuses_absurd_amounts(console: Console, qtbot: QtBot,
                                            tmp_path: Path) -> None:
    page = contacts_page(console, qtbot)
    path = tmp_path / "one.csv"
    path.write_text(HEADER + "Ann,0712345678,1,0,2027-01-31,\n")
    import_and_wait(page, qtbot, path)
    page.report.close()
    qtbot.waitUntil(lambda: page.model.rowCount() == 1)
    page.table.selectRow(0)
    page.edit_selected()
    dialog = page.dialog
    assert isinstance(dialog, ContactDialog)
    for field, value, shown in [("pledge", "9e999990", "Not saved: bad pledge: '9e999990' is "
                                 "above the largest amount accepted (1,000,000,000,000)"),
                                ("name", "A\x00nn", "Not saved: name contains a control "
                                 "character (U+0000, character 2): remove it")]:
        dialog.fields["pledge"].setText("1")
        dialog.fields[field].setText(value)
        dialog.error.setText("")
        dialog.save()
        qtbot.waitUntil(lambda: dialog.error.text() != "")
        assert dialog.error.text() == shown
        assert dialog.isVisible()
        dialog.fields["name"].setText("Ann")
