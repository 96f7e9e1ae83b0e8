"""Inbox page: the empty state on a first start, replies newest first with who sent them and
the campaign they answer, search, "Unhandled only", marking handled and unhandled, a reply
that arrives while the page is shown, and Reply… through the real pipeline (embedded
Redis, a worker, the sandbox gateway), refused with a clear error for an opted-out number.

The received messages are written as the report applier writes them (inbound_messages
rows): what the page shows is the store's, whoever wrote it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from PySide6.QtCore import QItemSelection, QItemSelectionModel
from pytestqt.modeltest import ModelTester
from pytestqt.qtbot import QtBot

from desktop.app import Console
from desktop.pages.inbox_page import InboxPage
from desktop.pages.reply_dialog import ReplyDialog
from engine.domain.delivery import ReplyKeyword
from engine.infra.sandbox_gateway import GatewayServer
from engine.store.contacts_import import import_contacts
from engine.store.inbox import get_inbound
from engine.store.models import Campaign, Contact, InboundMessage
from engine.store.optouts import add_optouts
from tests.desktop.conftest import delivered, idle, open_page
from tests.support import http_json, write_contacts

WAIT_MS = 20_000
NOW = datetime.now(UTC).replace(microsecond=0)
ROWS = [("Amina Mutua", "0700000105", "10000", "2500", "2027-05-05", "east"),
        ("Brian Kiprop", "0700000115", "5000", "0", "2027-03-18", "west")]
AMINA, BRIAN, STRANGER = "+254700000105", "+254700000115", "+254722000555"


def inbox_page(console: Console, qtbot: QtBot) -> InboxPage:
    page = open_page(console, "inbox")
    assert isinstance(page, InboxPage)
    qtbot.waitUntil(lambda: idle(console) and page.count_label.text() != "")
    return page


def seed_contacts(console: Console, tmp_path: Path) -> dict[str, int]:
    import_contacts(console.ctx.services.db(), write_contacts(tmp_path / "c.csv", ROWS), "KE")
    with console.ctx.services.db().session() as session:
        return {c.phone: c.id for c in session.query(Contact)}


def old_campaign(console: Console, name: str) -> int:
    with console.ctx.services.db().session() as session:
        campaign = Campaign(name=name, template="Dear #name", status="completed",
                            route="individual", queue="messages")
        session.add(campaign)
        session.flush()
        return campaign.id


def receive(console: Console, phone: str, text: str, minutes_ago: int, *,
            contact_id: int | None = None, campaign_id: int | None = None,
            keyword: ReplyKeyword | None = None, handled: bool = False) -> int:
    at = NOW - timedelta(minutes=minutes_ago)
    with console.ctx.services.db().session() as session:
        row = InboundMessage(receipt=uuid.uuid4().hex, provider="sandbox", phone=phone,
                             text=text, received_at=at, contact_id=contact_id,
                             campaign_id=campaign_id, keyword=keyword,
                             handled_at=at if handled else None)
        session.add(row)
        session.flush()
        return row.id


def column(page: InboxPage, title: str) -> list[str]:
    col = page.model.column(title)
    return [page.model.index(r, col).data() for r in range(page.model.rowCount())]


def select_rows(page: InboxPage, *rows: int) -> None:
    model, selection = page.model, QItemSelection()
    for row in rows:
        selection.select(model.index(row, 0), model.index(row, model.columnCount() - 1))
    page.table.selectionModel().select(selection,
                                       QItemSelectionModel.SelectionFlag.ClearAndSelect)


def handled(console: Console, inbound_id: int) -> bool:
    with console.ctx.services.db().session() as session:
        entry = get_inbound(session, inbound_id)
        assert entry is not None
        return entry.handled_at is not None


def test_a_first_start_says_what_will_appear(console: Console, qtbot: QtBot) -> None:
    page = inbox_page(console, qtbot)
    assert page.body.currentWidget() is page.empty
    assert page.empty.text() == ("No replies yet.\n\nReplies, STOP and START from members "
                                 "appear here once the receiver gets them.")
    assert page.count_label.text() == "0 messages"
    for button in (page.handled_button, page.unhandled_button, page.reply_button):
        assert not button.isEnabled()


def seed_inbox(console: Console, tmp_path: Path) -> tuple[int, int]:
    """Four messages: a thanks and a STOP answering a campaign, a stranger's question, and
    an older one already handled. Returns the ids of the thanks and the STOP."""
    ids = seed_contacts(console, tmp_path)
    campaign = old_campaign(console, "March reminder")
    thanks = receive(console, AMINA, "Thank you, I will pay\non Friday", 50,
                     contact_id=ids[AMINA], campaign_id=campaign)
    stop = receive(console, BRIAN, "Stop", 30, contact_id=ids[BRIAN], campaign_id=campaign,
                   keyword=ReplyKeyword.OPT_OUT)
    receive(console, STRANGER, "Who is this?", 10)
    receive(console, AMINA, "Paid 2,000 today", 90, contact_id=ids[AMINA], handled=True)
    return thanks, stop


def test_lists_newest_first_and_searches(console: Console, qtbot: QtBot, tmp_path: Path,
                                         qtmodeltester: ModelTester) -> None:
    seed_inbox(console, tmp_path)
    page = inbox_page(console, qtbot)
    qtmodeltester.check(page.model)
    assert page.body.currentWidget() is page.table
    assert page.count_label.text() == "4 messages"
    assert column(page, "Message") == ["Who is this?", "Stop",
                                       "Thank you, I will pay on Friday", "Paid 2,000 today"]
    assert column(page, "From") == [STRANGER, BRIAN, AMINA, AMINA]
    assert column(page, "Contact") == ["", "Brian Kiprop", "Amina Mutua", "Amina Mutua"]
    assert column(page, "Campaign") == ["", "March reminder", "March reminder", ""]
    assert column(page, "Keyword") == ["", "STOP", "", ""]
    assert column(page, "Handled") == ["", "", "", "✓"]
    assert column(page, "Received")[0] == f"{NOW - timedelta(minutes=10):%Y-%m-%d %H:%M}"

    with qtbot.waitSignal(page.model.loaded, timeout=WAIT_MS):
        page.search.setText("amina")  # a contact's name, in any case
    assert column(page, "Message") == ["Thank you, I will pay on Friday", "Paid 2,000 today"]
    assert page.count_label.text() == "2 messages match"
    with qtbot.waitSignal(page.model.loaded, timeout=WAIT_MS):
        page.search.setText("0722 000")  # a number as written locally
    assert column(page, "From") == [STRANGER]
    with qtbot.waitSignal(page.model.loaded, timeout=WAIT_MS):
        page.search.setText("nothing like this")
    assert page.body.currentWidget() is page.no_match
    assert page.count_label.text() == "0 messages match"


def test_unhandled_only_and_marking_handled(console: Console, qtbot: QtBot, tmp_path: Path,
                                            qtmodeltester: ModelTester) -> None:
    thanks, stop = seed_inbox(console, tmp_path)
    page = inbox_page(console, qtbot)
    with qtbot.waitSignal(page.model.loaded, timeout=WAIT_MS):
        page.unhandled.setChecked(True)
    assert page.count_label.text() == "3 messages not handled"
    assert "Paid 2,000 today" not in column(page, "Message")

    select_rows(page, 1, 2)  # STOP and the thanks
    assert page.handled_button.isEnabled()
    assert not page.unhandled_button.isEnabled()  # neither is handled
    assert not page.reply_button.isEnabled()  # one message at a time
    with qtbot.waitSignal(page.model.loaded, timeout=WAIT_MS):
        page.handled_button.click()
    assert page.message.text() == "Marked 2 message(s) handled."
    assert handled(console, thanks)
    assert handled(console, stop)
    assert column(page, "Message") == ["Who is this?"]  # unhandled only
    with qtbot.waitSignal(page.model.loaded, timeout=WAIT_MS):
        page.unhandled.setChecked(False)
    assert column(page, "Handled") == ["", "✓", "✓", "✓"]

    select_rows(page, 2)
    assert page.unhandled_button.isEnabled()
    with qtbot.waitSignal(page.model.loaded, timeout=WAIT_MS):
        page.unhandled_button.click()
    assert not handled(console, thanks)
    assert handled(console, stop)
    assert page.message.text() == "Marked 1 message(s) not handled."
    assert page.selected_ids() == [thanks]  # the selection stays after the reload
    qtmodeltester.check(page.model)


def test_a_reply_that_arrives_while_shown_keeps_the_selection(console: Console,
                                                             qtbot: QtBot) -> None:
    first = receive(console, AMINA, "First", 20)
    receive(console, BRIAN, "Second", 10)
    page = inbox_page(console, qtbot)
    select_rows(page, 1)
    assert page.selected_ids() == [first]
    receive(console, STRANGER, "Newest", 1)
    with qtbot.waitSignal(page.model.loaded, timeout=WAIT_MS):
        page.tick()  # what the page's timer calls while it is shown
    assert column(page, "Message") == ["Newest", "Second", "First"]
    assert page.selected_ids() == [first]  # moved down a row, still selected
    assert page.selected_rows() == [2]


def test_every_message_handled_says_so_with_unhandled_only(console: Console,
                                                           qtbot: QtBot) -> None:
    receive(console, AMINA, "Done", 20, handled=True)
    page = inbox_page(console, qtbot)
    with qtbot.waitSignal(page.model.loaded, timeout=WAIT_MS):
        page.unhandled.setChecked(True)
    assert page.body.currentWidget() is page.all_handled
    assert "Every message is handled" in page.all_handled.text()


def test_reply_goes_out_through_the_pipeline_and_marks_the_message_handled(
        pipeline_console: Console, qtbot: QtBot, gateway: GatewayServer,
        tmp_path: Path) -> None:
    console = pipeline_console
    ids = seed_contacts(console, tmp_path)
    question = receive(console, AMINA, "What is the paybill number?", 5,
                       contact_id=ids[AMINA])
    page = inbox_page(console, qtbot)
    select_rows(page, 0)
    assert page.reply_button.isEnabled()
    page.reply_button.click()
    dialog = page.reply_dialog
    assert isinstance(dialog, ReplyDialog)
    assert dialog.quote.text() == "What is the paybill number?"
    assert dialog.warning.isHidden()
    assert not dialog.send_button.isEnabled()  # nothing written yet
    qtbot.keyClicks(dialog.editor, "Paybill 400200, account #name")
    assert dialog.length.text() == "29 characters · 1 segment · GSM-7"
    with qtbot.waitSignal(page.model.loaded, timeout=WAIT_MS):
        dialog.send_button.click()
    assert not dialog.isVisible()
    assert page.message.text().startswith("Reply to Amina Mutua (+254700000105) queued as "
                                          "campaign #")
    qtbot.waitUntil(lambda: delivered(gateway)[AMINA] == 1, timeout=60_000)
    sent = [m["body"] for m in http_json(gateway.url + "/messages") if m["to"] == AMINA]
    assert sent == ["Paybill 400200, account #name"]  # sent as written, not a template
    assert handled(console, question)
    assert column(page, "Handled") == ["✓"]


def test_reply_to_an_opted_out_number_is_refused_in_the_dialog(console: Console,
                                                                qtbot: QtBot) -> None:
    with console.ctx.services.db().session() as session:
        add_optouts(session, [BRIAN], region="KE", reason="replied STOP")
    stop = receive(console, BRIAN, "STOP", 5, keyword=ReplyKeyword.OPT_OUT)
    page = inbox_page(console, qtbot)
    select_rows(page, 0)
    page.open_reply()
    dialog = page.reply_dialog
    assert dialog is not None
    assert not dialog.warning.isHidden()  # said before anything is tried
    dialog.editor.setPlainText("Sorry to see you go")
    dialog.send_button.click()
    qtbot.waitUntil(lambda: not dialog.error.isHidden(), timeout=WAIT_MS)
    assert "is on the opt-out list" in dialog.error.text()
    assert dialog.error.text().startswith("Not sent: ")
    assert dialog.isVisible()  # the text is kept
    assert dialog.editor.toPlainText() == "Sorry to see you go"
    assert dialog.send_button.isEnabled()
    assert not handled(console, stop)
    with console.ctx.services.db().session() as session:
        assert session.query(Campaign).count() == 0  # nothing was created
