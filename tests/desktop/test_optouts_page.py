"""Opt-outs page: the empty state, adding numbers (bad and already listed ones reported,
nothing typed lost), removing a selection after a question, search, import with per-line
errors, export, and times on the operator's clock."""

from __future__ import annotations

import csv
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from openpyxl import Workbook
from PySide6.QtCore import QItemSelection, QItemSelectionModel
from pytestqt.qtbot import QtBot

from desktop.app import Console
from desktop.pages.optouts_page import OptOutsPage
from engine.store.models import OptOut, OptSource
from engine.store.optouts import add_optouts, count_optouts
from tests.desktop.conftest import idle, open_page

WAIT_MS = 20_000


def optouts_page(console: Console, qtbot: QtBot) -> OptOutsPage:
    page = open_page(console, "optouts")
    assert isinstance(page, OptOutsPage)
    qtbot.waitUntil(lambda: idle(console))
    return page


def seed(console: Console, *phones: str, reason: str = "asked") -> None:
    with console.ctx.services.db().session() as session:
        add_optouts(session, phones, region="KE", reason=reason)


def listed(console: Console) -> int:
    with console.ctx.services.db().session() as session:
        return count_optouts(session)


def column(page: OptOutsPage, col: int) -> list[str]:
    return [page.model.index(r, col).data() for r in range(page.model.rowCount())]


def test_empty_list_says_what_the_page_is_for(console: Console, qtbot: QtBot) -> None:
    page = optouts_page(console, qtbot)
    assert page.body.currentWidget() is page.empty
    assert page.empty.text().startswith("No one has opted out.")
    assert "never sent to" in page.empty.text()
    assert page.count_label.text() == "0 opted-out numbers"
    assert not page.remove_button.isEnabled()
    assert not page.export_button.isEnabled()
    assert page.add_button.isEnabled()
    assert page.import_button.isEnabled()


def test_add_reports_invalid_and_already_listed_and_keeps_what_to_fix(
        console: Console, qtbot: QtBot) -> None:
    seed(console, "0700000105")
    page = optouts_page(console, qtbot)
    assert page.model.rowCount() == 1
    page.open_add()
    dialog = page.dialog
    dialog.numbers.setPlainText("0700000105, 0700000115\nnot a number\n")
    dialog.reason.setText("asked at the office")
    with qtbot.waitSignal(page.model.loaded, timeout=WAIT_MS):
        dialog.add_button.click()
    assert dialog.report_text().splitlines() == [
        "Added 1 number(s) to the opt-out list.",
        "1 already on the list: +254700000105.",
        "1 not added, not a phone number: 'not a number' is not a phone number.",
        "Fix them above and press Add again, or Cancel."]
    assert dialog.isVisible()  # the bad one is still to fix
    assert dialog.numbers.toPlainText() == "not a number"
    assert page.model.rowCount() == 2
    assert "+254700000115" in column(page, 0)
    row = column(page, 0).index("+254700000115")
    assert page.model.index(row, 3).data() == "asked at the office"
    assert page.model.index(row, 1).data() == "Added here"
    assert "Added 1 number(s)" in page.message.text()

    dialog.numbers.setPlainText("0700000125")
    with qtbot.waitSignal(page.model.loaded, timeout=WAIT_MS):
        dialog.add_button.click()
    qtbot.waitUntil(lambda: not dialog.isVisible())  # all good: the dialog closes
    assert page.model.rowCount() == 3
    assert page.count_label.text() == "3 opted-out numbers"


def test_add_with_nothing_typed_says_so(console: Console, qtbot: QtBot) -> None:
    page = optouts_page(console, qtbot)
    page.open_add()
    page.dialog.numbers.setPlainText(" ,\n ")
    page.dialog.add_button.click()
    assert page.dialog.report_text() == "Type or paste at least one phone number."
    assert page.dialog.isVisible()
    assert listed(console) == 0


def test_remove_selected_after_the_question(console: Console, qtbot: QtBot) -> None:
    seed(console, "0700000105", "0700000115", "0700000125")
    page = optouts_page(console, qtbot)
    assert page.model.rowCount() == 3
    model, selection = page.model, QItemSelection()
    selection.select(model.index(0, 0), model.index(1, model.columnCount() - 1))
    page.table.selectionModel().select(selection, QItemSelectionModel.SelectionFlag.Select)
    assert page.remove_button.isEnabled()
    chosen = column(page, 0)[:2]
    page.remove_selected()
    qtbot.waitUntil(lambda: hasattr(page, "confirm_box") and page.confirm_box.isVisible())
    assert page.confirm_box.text().startswith("Remove 2 number(s) from the opt-out list (")
    assert all(phone in page.confirm_box.text() for phone in chosen)
    next(b for b in page.confirm_box.buttons() if b.text() == "Cancel").click()
    qtbot.waitUntil(lambda: idle(console))
    assert listed(console) == 3  # cancelled: nothing removed

    cancelled = page.confirm_box
    page.remove_selected()
    qtbot.waitUntil(lambda: page.confirm_box is not cancelled and page.confirm_box.isVisible())
    with qtbot.waitSignal(page.model.loaded, timeout=WAIT_MS):
        next(b for b in page.confirm_box.buttons() if b.text() == "Remove").click()
    assert page.model.rowCount() == 1
    assert column(page, 0)[0] not in chosen
    assert page.message.text() == "Removed 2 number(s) from the opt-out list."


def test_a_number_added_meanwhile_never_shifts_what_is_removed(console: Console,
                                                               qtbot: QtBot) -> None:
    """The list is newest first: a number the provider adds after the page was read moves
    every row down. Removing the selection must not remove numbers nobody selected."""
    seed(console, "0700000105", "0700000115", "0700000125")
    page = optouts_page(console, qtbot)
    model, selection = page.model, QItemSelection()
    selection.select(model.index(0, 0), model.index(0, model.columnCount() - 1))
    page.table.selectionModel().select(selection, QItemSelectionModel.SelectionFlag.Select)
    seed(console, "0700000135")  # arrives while the operator looks at the page
    page.remove_selected()
    qtbot.waitUntil(lambda: "nothing was removed" in page.message.text(), timeout=WAIT_MS)
    assert not hasattr(page, "confirm_box")  # no question about the wrong numbers
    assert listed(console) == 4
    qtbot.waitUntil(lambda: page.model.rowCount() == 4, timeout=WAIT_MS)


def test_search_phone_local_form_or_reason(console: Console, qtbot: QtBot) -> None:
    seed(console, "0700000105", reason="STOP by phone")
    seed(console, "0700000115", reason="moved away")
    page = optouts_page(console, qtbot)
    with qtbot.waitSignal(page.model.loaded, timeout=WAIT_MS):
        page.search.setText("moved")
    assert column(page, 0) == ["+254700000115"]
    assert page.count_label.text() == "1 opted-out number match"
    with qtbot.waitSignal(page.model.loaded, timeout=WAIT_MS):
        page.search.setText("0700000105")  # as the operator writes it locally
    assert column(page, 0) == ["+254700000105"]
    with qtbot.waitSignal(page.model.loaded, timeout=WAIT_MS):
        page.search.setText("nobody")
    assert page.body.currentWidget() is page.no_match


def test_import_lists_bad_lines_and_adds_the_good(console: Console, qtbot: QtBot,
                                                   tmp_path: Path) -> None:
    seed(console, "0700000105")
    path = tmp_path / "stop.csv"
    path.write_text("phone,reason\n0700000105,again\n12,\n0700000115,replied STOP\n")
    page = optouts_page(console, qtbot)
    with qtbot.waitSignal(page.model.loaded, timeout=WAIT_MS):
        page.import_file(path)
    qtbot.waitUntil(page.report.isVisible)
    summary = page.report.summary.text()
    assert "Added 1 number(s) to the opt-out list; 1 already on it." in summary
    assert "Rejected 1 line(s)" in summary
    assert page.report.details.toPlainText().startswith("line 3: bad phone")
    assert page.import_button.isEnabled()
    assert page.import_button.text() == "Import…"
    assert page.model.rowCount() == 2
    row = column(page, 0).index("+254700000115")
    assert page.model.index(row, 3).data() == "replied STOP"
    assert page.model.index(row, 1).data() == "Imported"


def test_import_of_an_unreadable_file_adds_nothing(console: Console, qtbot: QtBot,
                                                   tmp_path: Path) -> None:
    path = tmp_path / "wrong.csv"
    path.write_text("name,number\nAmina,0700000105\n")
    page = optouts_page(console, qtbot)
    page.import_file(path)
    qtbot.waitUntil(lambda: hasattr(page, "report") and page.report.isVisible(),
                    timeout=WAIT_MS)
    assert page.report.summary.text().startswith(
        "Nothing was imported: wrong.csv has columns but none is called 'phone'")
    assert listed(console) == 0
    assert page.import_button.isEnabled()


def test_export_writes_the_whole_list(console: Console, qtbot: QtBot, tmp_path: Path) -> None:
    seed(console, "0700000105", "0700000115", reason="asked")
    page = optouts_page(console, qtbot)
    assert page.export_button.isEnabled()
    out = tmp_path / "out.csv"
    page.export_to(out)
    qtbot.waitUntil(lambda: page.last_export is not None, timeout=WAIT_MS)
    assert page.last_export == (2, out)
    rows = list(csv.reader(out.read_text(encoding="utf-8").splitlines()))
    assert rows[0] == ["phone", "reason", "source", "created_at"]
    assert sorted(r[0] for r in rows[1:]) == ["+254700000105", "+254700000115"]
    assert {(r[1], r[2]) for r in rows[1:]} == {("asked", "manual")}
    assert page.message.text() == f"2 number(s) exported to {out}"
    assert page.export_button.isEnabled()


def test_added_time_on_the_operators_clock(console: Console, qtbot: QtBot) -> None:
    with console.ctx.services.db().session() as session:
        session.add(OptOut(phone="+254700000105", reason="21610", source=OptSource.PROVIDER,
                           created_at=datetime(2026, 5, 1, 6, 30, tzinfo=UTC)))
    page = optouts_page(console, qtbot)
    assert page.model.index(0, 2).data() == "2026-05-01 06:30"  # the tests' zone is UTC
    assert page.model.index(0, 1).data() == "Provider"
    console.ctx.services.settings = replace(console.ctx.settings, timezone="Africa/Nairobi")
    assert page.model.index(0, 2).data() == "2026-05-01 09:30"


def test_changes_tell_the_other_pages(console: Console, qtbot: QtBot) -> None:
    page = optouts_page(console, qtbot)
    page.open_add()
    page.dialog.numbers.setPlainText("0700000105")
    with qtbot.waitSignal(console.ctx.bus.contacts_changed, timeout=WAIT_MS):
        page.dialog.add_button.click()


def test_import_of_a_workbook_names_sheet_rows(console: Console, qtbot: QtBot,
                                               tmp_path: Path) -> None:
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["phone", "reason"])
    sheet.append([254700000105, "asked"])  # a number stored as a number
    sheet.append(["not a phone", ""])
    sheet.append(["0700000115", None])
    path = tmp_path / "stop.xlsx"
    workbook.save(path)
    page = optouts_page(console, qtbot)
    with qtbot.waitSignal(page.model.loaded, timeout=WAIT_MS):
        page.import_file(path)
    qtbot.waitUntil(page.report.isVisible)
    assert page.report.summary.text().startswith("Added 2 number(s) to the opt-out list.")
    assert page.report.details.toPlainText().startswith("line 3: bad phone")
    assert sorted(column(page, 0)) == ["+254700000105", "+254700000115"]
