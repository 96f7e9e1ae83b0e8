"""Contacts page: import through the page (good and bad files), browse, filter, edit, delete,
and a paged model that stays bounded at many rows."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication
from pytestqt.modeltest import ModelTester
from pytestqt.qtbot import QtBot

from desktop.app import Console
from desktop.contacts_model import OPT_OUT_COLUMN, OPTED_OUT_COLOR, ContactsModel
from desktop.paged_model import MAX_PAGES, PAGE_SIZE
from desktop.pages.contact_dialog import ContactDialog
from desktop.pages.contacts_page import ContactsPage
from desktop.pages.optouts_page import OptOutsPage
from desktop.theme import apply_theme
from engine.store.contacts_import import import_contacts
from engine.store.models import OptSource
from engine.store.optouts import add_optouts, remove_optouts
from tests.desktop.conftest import contacts_page, idle, open_page
from tests.support import write_contacts

GOOD = [
    ("Amina Mutua", "0700000105", "10000", "2500", "2027-05-05", "east;choir"),
    ("Brian Kiprop", "0700000115", "5000", "0", "2027-03-18", "west"),
    ("Cynthia Odhiambo", "0700000125", "20000", "20000", "2027-06-05", "east"),
]


def import_through_page(page: ContactsPage, qtbot: QtBot, path: Path) -> None:
    with qtbot.waitSignal(page.model.loaded, timeout=20_000):
        page.import_file(path)
    qtbot.waitUntil(page.report.isVisible)


def test_import_good_file_fills_the_table(console: Console, qtbot: QtBot,
                                          tmp_path: Path) -> None:
    page = contacts_page(console, qtbot)
    assert page.body.currentWidget() is page.empty  # a sensible empty state first
    import_through_page(page, qtbot, write_contacts(tmp_path / "good.csv", GOOD))
    assert "Imported 3 new contact(s), updated 0" in page.report.summary.text()
    assert page.model.rowCount() == 3
    assert page.body.currentWidget() is page.table
    names = [page.model.index(r, 0).data() for r in range(3)]
    assert names == ["Amina Mutua", "Brian Kiprop", "Cynthia Odhiambo"]
    assert page.model.index(0, 5).data() == "7,500"  # balance
    assert page.count_label.text() == "3 contacts"
    qtbot.waitUntil(lambda: page.tag.count() == 4)  # all + choir, east, west


def test_import_bad_rows_are_listed_and_copyable(console: Console, qtbot: QtBot,
                                                 tmp_path: Path) -> None:
    page = contacts_page(console, qtbot)
    rows = [*GOOD[:1], ("No Phone", "", "100", "0", "2027-01-01", ""),
            ("Bad Date", "0700000135", "100", "0", "01/02/2027", "")]
    import_through_page(page, qtbot, write_contacts(tmp_path / "mixed.csv", rows))
    assert "Imported 1 new contact(s)" in page.report.summary.text()
    assert "Rejected 2 row(s)" in page.report.summary.text()
    details = page.report.details.toPlainText()
    assert "line 3: bad phone" in details
    assert "line 4: bad due_date: '01/02/2027'; write it as YYYY-MM-DD" in details
    page.report.copy()
    assert "line 4" in console.app.clipboard().text()


def test_unreadable_file_imports_nothing(console: Console, qtbot: QtBot,
                                         tmp_path: Path) -> None:
    page = contacts_page(console, qtbot)
    path = tmp_path / "empty.csv"
    path.write_text("")
    page.import_file(path)
    # The import's helper process may start slowly on a loaded machine.
    qtbot.waitUntil(lambda: hasattr(page, "report") and page.report.isVisible(),
                    timeout=20_000)
    assert page.report.summary.text().startswith("Nothing was imported: empty.csv is empty")
    assert page.import_button.isEnabled()


def test_search_and_tag_filter_in_sql(console: Console, qtbot: QtBot, tmp_path: Path) -> None:
    page = contacts_page(console, qtbot)
    import_through_page(page, qtbot, write_contacts(tmp_path / "good.csv", GOOD))
    with qtbot.waitSignal(page.model.loaded):
        page.search.setText("kip")
    assert page.model.rowCount() == 1
    assert page.model.index(0, 0).data() == "Brian Kiprop"
    with qtbot.waitSignal(page.model.loaded):
        page.search.setText("")
    qtbot.waitUntil(lambda: page.tag.findData("east") >= 0)
    with qtbot.waitSignal(page.model.loaded):
        page.tag.setCurrentIndex(page.tag.findData("east"))
    assert page.model.rowCount() == 2
    with qtbot.waitSignal(page.model.loaded):
        page.search.setText("nobody")
    assert page.body.currentWidget() is page.no_match


def test_sorting_happens_in_the_query(console: Console, qtbot: QtBot, tmp_path: Path) -> None:
    page = contacts_page(console, qtbot)
    import_through_page(page, qtbot, write_contacts(tmp_path / "good.csv", GOOD))
    with qtbot.waitSignal(page.model.loaded):
        page.table.sortByColumn(5, Qt.SortOrder.DescendingOrder)  # balance
    balances = [page.model.index(r, 5).data() for r in range(3)]
    assert balances == ["7,500", "5,000", "0"]
    with qtbot.waitSignal(page.model.loaded):
        page.table.sortByColumn(0, Qt.SortOrder.DescendingOrder)  # name
    assert page.model.index(0, 0).data() == "Cynthia Odhiambo"


def test_edit_validates_then_saves(console: Console, qtbot: QtBot, tmp_path: Path) -> None:
    page = contacts_page(console, qtbot)
    import_through_page(page, qtbot, write_contacts(tmp_path / "good.csv", GOOD))
    page.table.selectRow(1)
    page.edit_selected()
    dialog = page.dialog
    assert isinstance(dialog, ContactDialog)
    dialog.fields["phone"].setText("12")
    dialog.save()
    qtbot.waitUntil(dialog.error.isVisible)
    assert "Not saved: bad phone" in dialog.error.text()
    assert dialog.isVisible()
    dialog.fields["phone"].setText("0700000105")  # Amina's number
    dialog.save()
    qtbot.waitUntil(lambda: "already has the phone" in dialog.error.text())
    dialog.fields["phone"].setText("0700000145")
    dialog.fields["tags"].setText("vip; west")
    with qtbot.waitSignal(page.model.loaded):
        dialog.save()
    assert page.model.index(1, 1).data() == "+254700000145"
    assert page.model.index(1, 7).data() == "vip, west"


def test_delete_and_compose_for_selected(console: Console, qtbot: QtBot,
                                         tmp_path: Path) -> None:
    page = contacts_page(console, qtbot)
    import_through_page(page, qtbot, write_contacts(tmp_path / "good.csv", GOOD))
    page.table.selectRow(0)
    with qtbot.waitSignal(console.ctx.bus.recipients_chosen) as chosen:
        page.compose_for_selected()
    assert len(chosen.args[0]) == 1
    assert console.window.current_page() is console.window.page("compose")
    open_page(console, "contacts")
    page.delete_selected()
    qtbot.waitUntil(lambda: hasattr(page, "confirm_box") and page.confirm_box.isVisible())
    assert page.confirm_box.text() == "Delete 1 contact(s) (Amina Mutua)?"
    with qtbot.waitSignal(page.model.loaded):
        next(b for b in page.confirm_box.buttons() if b.text() == "Delete").click()
    assert page.model.rowCount() == 2


def test_paged_model_at_many_rows(console: Console, qtbot: QtBot, tmp_path: Path,
                                  qtmodeltester: ModelTester) -> None:
    rows = [(f"Person {i:05d}", f"07{10000000 + i * 10 + 5}", "100", "0", "2027-01-01", "")
            for i in range(12_000)]
    import_contacts(console.ctx.services.db(), write_contacts(tmp_path / "many.csv", rows),
                    "KE")
    model = ContactsModel(console.ctx.services, console.ctx.background)
    with qtbot.waitSignal(model.loaded, timeout=20_000):
        model.reload()
    assert model.rowCount() == 12_000
    assert model.index(0, 0).data() == "Person 00000"
    assert model.index(11_999, 0).data() == "…"  # not fetched yet: no full load
    with qtbot.waitSignal(model.page_loaded, timeout=20_000):
        pass
    assert model.index(11_999, 0).data() == "Person 11999"
    for page in range(0, 12_000 // PAGE_SIZE):  # touch every page: memory stays bounded
        model.row_object(page * PAGE_SIZE)
    qtbot.waitUntil(lambda: idle(console), timeout=60_000)
    assert len(model.loaded_pages()) <= MAX_PAGES
    qtmodeltester.check(model)


def test_select_all_names_every_contact_not_only_loaded_rows(
        console: Console, qtbot: QtBot, tmp_path: Path) -> None:
    rows = [(f"Person {i:04d}", f"07{10000000 + i * 10 + 5}", "100", "0", "2027-01-01", "")
            for i in range(1_000)]
    import_contacts(console.ctx.services.db(), write_contacts(tmp_path / "many.csv", rows),
                    "KE")
    page = contacts_page(console, qtbot)
    qtbot.waitUntil(lambda: page.model.rowCount() == 1_000)
    page.table.selectAll()
    assert page.selected_count() == 1_000
    with qtbot.waitSignal(console.ctx.bus.recipients_chosen) as chosen:
        page.compose_for_selected()
    assert len(set(chosen.args[0])) == 1_000


def test_opted_out_contacts_are_marked(console: Console, qtbot: QtBot, qapp: QApplication,
                                       tmp_path: Path) -> None:
    with console.ctx.services.db().session() as session:
        add_optouts(session, ["0700000115"], region="KE")  # Brian Kiprop
    page = contacts_page(console, qtbot)
    import_through_page(page, qtbot, write_contacts(tmp_path / "good.csv", GOOD))

    def marks() -> list[str]:
        return [page.model.index(r, OPT_OUT_COLUMN).data() for r in range(3)]

    assert marks() == ["", "Opted out", ""]
    brian = page.model.index(1, OPT_OUT_COLUMN)
    assert brian.data(Qt.ItemDataRole.ForegroundRole) == OPTED_OUT_COLOR[False]
    assert "opt-out list" in brian.data(Qt.ItemDataRole.ToolTipRole)
    assert page.model.index(0, OPT_OUT_COLUMN).data(Qt.ItemDataRole.ToolTipRole) is None
    apply_theme(qapp, "dark")  # a red that reads on the dark table too
    assert brian.data(Qt.ItemDataRole.ForegroundRole) == OPTED_OUT_COLOR[True]
    apply_theme(qapp, "light")

    # Added on the Opt-outs page: Contacts re-reads its rows.
    optouts = open_page(console, "optouts")
    assert isinstance(optouts, OptOutsPage)
    qtbot.waitUntil(lambda: idle(console))
    optouts.open_add()
    optouts.dialog.numbers.setPlainText("0700000125")  # Cynthia Odhiambo
    with qtbot.waitSignal(page.model.loaded, timeout=20_000):
        optouts.dialog.add_button.click()
    assert marks() == ["", "Opted out", "Opted out"]

    # Added by someone else (a worker on a provider's answer): shown when Contacts is.
    with console.ctx.services.db().session() as session:
        remove_optouts(session, ["0700000115"], region="KE")
        add_optouts(session, ["0700000105"], region="KE", source=OptSource.PROVIDER)
    open_page(console, "contacts")
    qtbot.waitUntil(lambda: marks() == ["Opted out", "", "Opted out"])
