"""Campaigns page, delivery: delivered and undelivered per campaign, the message list
filtered by delivery status with the provider's reason, and Send again to undelivered…,
which previews and confirms, then sends through the real pipeline (embedded Redis, a
worker, the sandbox gateway) to exactly the contacts whose message was not delivered.

The delivery statuses are written to the message rows as the report applier writes them
after the provider's reports (sent, then delivered / undelivered with the reason)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from PySide6.QtWidgets import QMessageBox
from pytestqt.modeltest import ModelTester
from pytestqt.qtbot import QtBot
from sqlalchemy import select, update

from desktop.app import Console
from desktop.pages.campaigns_page import CampaignsPage
from desktop.pages.resend_dialog import ResendDialog
from engine.domain.delivery import DeliveryStatus
from engine.infra.sandbox_gateway import GatewayServer
from engine.operations.campaigns import create_campaign
from engine.store.contacts_import import import_contacts
from engine.store.models import Campaign, MessageStatus, OutgoingMessage, utcnow
from engine.store.optouts import add_optouts
from tests.desktop.conftest import delivered, open_page
from tests.support import write_contacts

WAIT_MS = 20_000
ROWS = [("Amina Mutua", "0700000105", "10000", "2500", "2027-05-05", "east"),
        ("Brian Kiprop", "0700000115", "5000", "0", "2027-03-18", "west"),
        ("Cynthia Odhiambo", "0700000125", "20000", "20000", "2027-06-05", "east"),
        ("David Mwangi", "0700000135", "8000", "1000", "2027-06-25", "west")]
AMINA, BRIAN, CYNTHIA, DAVID = "+254700000105", "+254700000115", "+254700000125", \
    "+254700000135"
# What the provider's reports said, per number (None: no final report yet).
OUTCOME = {AMINA: (DeliveryStatus.DELIVERED, None),
           BRIAN: (DeliveryStatus.UNDELIVERED, "AbsentSubscriber"),
           CYNTHIA: (DeliveryStatus.UNDELIVERED, "DeliveryFailure"),
           DAVID: (DeliveryStatus.AWAITING_REPORT, None)}
TEMPLATE = "Dear #name, #balance remains."


def sent_and_reported(console: Console, tmp_path: Path) -> int:
    """A completed campaign to the four contacts whose messages ended as OUTCOME says."""
    services = console.ctx.services
    import_contacts(services.db(), write_contacts(tmp_path / "c.csv", ROWS), "KE")
    created = create_campaign(services.db(), console.ctx.settings, TEMPLATE,
                              name="March reminder")
    now = utcnow()
    with services.db().session() as session:
        for phone, (delivery, reason) in OUTCOME.items():
            final = delivery in (DeliveryStatus.DELIVERED, DeliveryStatus.UNDELIVERED)
            session.execute(
                update(OutgoingMessage)
                .where(OutgoingMessage.campaign_id == created.id,
                       OutgoingMessage.phone == phone)
                .values(status=MessageStatus.SENT, attempts=1, provider="sandbox",
                        sent_at=now - timedelta(minutes=5),
                        provider_message_id=f"sb-{phone}", delivery=delivery,
                        delivery_error=reason, delivery_at=now if final else None))
        session.execute(update(Campaign).where(Campaign.id == created.id)
                        .values(status="completed", finished_at=now))
    return created.id


def campaigns(console: Console, qtbot: QtBot, campaign_id: int) -> CampaignsPage:
    page = open_page(console, "campaigns")
    assert isinstance(page, CampaignsPage)
    page.select_campaign(campaign_id)
    qtbot.waitUntil(lambda: page.selected() is not None and
                    page.selected().id == campaign_id, timeout=WAIT_MS)
    return page


def cell(page: CampaignsPage, column: str) -> str:
    row = page.table.selectionModel().selectedRows()[0].row()
    titles = [c.title for c in page.model.columns]
    return str(page.model.index(row, titles.index(column)).data())


def message_column(page: CampaignsPage, title: str) -> list[str]:
    col = [c.title for c in page.messages.columns].index(title)
    return [page.messages.index(r, col).data() for r in range(page.messages.rowCount())]


def test_delivery_per_campaign_and_the_messages_by_delivery_status(
        console: Console, qtbot: QtBot, tmp_path: Path, qtmodeltester: ModelTester) -> None:
    campaign_id = sent_and_reported(console, tmp_path)
    page = campaigns(console, qtbot, campaign_id)
    assert cell(page, "Sent") == "4"
    assert cell(page, "Delivered") == "1"
    assert cell(page, "Undelivered") == "2"
    assert page.facts["delivery"].text() == (
        "1 of 4 sent delivered (25.0%); 2 undelivered, 1 awaiting a report")
    qtbot.waitUntil(lambda: page.messages.rowCount() == 4, timeout=WAIT_MS)
    assert message_column(page, "Delivery") == ["delivered", "undelivered", "undelivered",
                                                "awaiting report"]
    assert message_column(page, "Reason") == ["", "AbsentSubscriber", "DeliveryFailure", ""]
    qtmodeltester.check(page.model)
    qtmodeltester.check(page.messages)

    filters = page.delivery_filter
    assert [filters.itemText(i) for i in range(filters.count())] == [
        "All", "Awaiting report", "Delivered", "Undelivered", "Expired"]
    with qtbot.waitSignal(page.messages.loaded, timeout=WAIT_MS):
        filters.setCurrentIndex(filters.findData(str(DeliveryStatus.UNDELIVERED)))
    assert message_column(page, "Recipient") == ["+2547******15", "+2547******25"]
    assert message_column(page, "Reason") == ["AbsentSubscriber", "DeliveryFailure"]
    assert page.messages_count.text() == "2 message(s)"
    with qtbot.waitSignal(page.messages.loaded, timeout=WAIT_MS):
        filters.setCurrentIndex(filters.findData(str(DeliveryStatus.EXPIRED)))
    assert page.messages.rowCount() == 0
    with qtbot.waitSignal(page.messages.loaded, timeout=WAIT_MS):
        filters.setCurrentIndex(0)
    assert page.messages.rowCount() == 4
    assert page.resend_button.isEnabled()


def test_send_again_reaches_exactly_the_undelivered(pipeline_console: Console, qtbot: QtBot,
                                                    gateway: GatewayServer,
                                                    tmp_path: Path) -> None:
    console = pipeline_console
    original = sent_and_reported(console, tmp_path)
    page = campaigns(console, qtbot, original)
    qtbot.waitUntil(page.resend_button.isEnabled, timeout=WAIT_MS)
    page.resend_button.click()
    dialog = page.resend_dialog
    assert isinstance(dialog, ResendDialog)
    qtbot.waitUntil(lambda: dialog.preview is not None, timeout=WAIT_MS)
    assert dialog.editor.toPlainText() == TEMPLATE  # the original's, to edit
    assert dialog.name.text() == "Again: March reminder"
    assert dialog.summary.text().startswith("2 recipient(s); 2 SMS segment(s)")
    assert dialog.sample.toPlainText().startswith(
        "To +2547******15 (Brian Kiprop):\nDear Brian Kiprop, 5,000 remains.")

    dialog.editor.setPlainText("Dear #name, sorry, our last message did not reach you.")
    assert not dialog.send_button.isEnabled()  # until the new text is previewed
    qtbot.waitUntil(lambda: not dialog.preview_pending and dialog.preview is not None,
                    timeout=WAIT_MS)
    assert "Dear Cynthia Odhiambo, sorry" in dialog.sample.toPlainText()
    dialog.send_button.click()
    box = dialog.confirm_box
    assert isinstance(box, QMessageBox)
    assert box.text() == ("Send 'Again: March reminder' to 2 recipient(s) whose message was "
                          "not delivered?")
    next(b for b in box.buttons() if b.text() == "Send").click()
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=WAIT_MS)

    qtbot.waitUntil(lambda: sum(delivered(gateway).values()) == 2, timeout=60_000)
    assert delivered(gateway) == {BRIAN: 1, CYNTHIA: 1}
    with console.ctx.services.db().session() as session:
        again = session.scalar(select(Campaign).where(Campaign.name == "Again: March reminder"))
        assert again is not None
        bodies = sorted(session.scalars(select(OutgoingMessage.body)
                                        .where(OutgoingMessage.campaign_id == again.id)))
    assert bodies == ["Dear Brian Kiprop, sorry, our last message did not reach you.",
                      "Dear Cynthia Odhiambo, sorry, our last message did not reach you."]
    qtbot.waitUntil(lambda: page.selected() is not None and page.selected().id == again.id,
                    timeout=WAIT_MS)  # the page follows the new campaign


def test_send_again_when_every_undelivered_opted_out_says_so(console: Console, qtbot: QtBot,
                                                             tmp_path: Path) -> None:
    original = sent_and_reported(console, tmp_path)
    with console.ctx.services.db().session() as session:
        add_optouts(session, [BRIAN, CYNTHIA], region="KE", reason="replied STOP")
    page = campaigns(console, qtbot, original)
    qtbot.waitUntil(page.resend_button.isEnabled, timeout=WAIT_MS)
    page.ask_resend()
    dialog = page.resend_dialog
    assert dialog is not None
    with qtbot.waitSignal(dialog.previewed, timeout=WAIT_MS):
        pass
    assert not dialog.error.isHidden()
    assert "have opted out: nobody would receive it" in dialog.error.text()
    assert not dialog.send_button.isEnabled()
    with console.ctx.services.db().session() as session:
        assert session.query(Campaign).count() == 1  # nothing was created
