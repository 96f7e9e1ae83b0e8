"""Compose page: live preview per recipient, unknown tags, totals, plan, and sending
through the real pipeline (embedded Redis, sandbox gateway, a real worker process)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from PySide6.QtWidgets import QLabel, QMessageBox
from pytestqt.qtbot import QtBot

from desktop.app import Console
from desktop.pages.compose_page import ComposePage
from desktop.send_later_dialog import SendLaterDialog
from engine.domain.audience import Audience
from engine.domain.send_window import QuietHours
from engine.store.contacts_import import import_contacts
from engine.store.models import Campaign, CampaignStatus, OutgoingMessage
from engine.store.optouts import add_optouts
from tests.desktop.conftest import idle, open_page
from tests.support import write_contacts

ROWS = [
    ("Amina Mutua", "0700000105", "10000", "2500", "2027-05-05", "east"),
    ("Brian Kiprop", "0700000115", "5000", "0", "2027-03-18", "west"),
    ("Cynthia Odhiambo", "0700000125", "20000", "20000", "2027-06-05", "east"),
]
TEMPLATE = "Dear #name, #balance of your #pledge pledge remains."


def seed(console: Console, tmp_path: Path, rows: list[tuple[str, ...]] | None = None) -> None:
    path = write_contacts(tmp_path / "contacts.csv", rows or ROWS)  # type: ignore[arg-type]
    import_contacts(console.ctx.services.db(), path, "KE")
    console.ctx.bus.contacts_changed.emit()


def compose(console: Console, qtbot: QtBot, text: str = TEMPLATE) -> ComposePage:
    page = open_page(console, "compose")
    assert isinstance(page, ComposePage)
    page.editor.setPlainText(text)
    qtbot.waitUntil(lambda: page.summary is not None and idle(console), timeout=20_000)
    return page


def test_preview_steps_through_recipients(console: Console, qtbot: QtBot,
                                          tmp_path: Path) -> None:
    seed(console, tmp_path)
    page = compose(console, qtbot)
    assert page.recipient_label.text() == "Recipient 1 of 3: Amina Mutua (+2547******05)"
    assert page.rendered.toPlainText() == "Dear Amina Mutua, 7,500 of your 10,000 pledge remains."
    assert page.message_stats.text() == "54 characters · GSM-7 · 1 segment(s)"
    assert not page.previous_button.isEnabled()
    page.step(+1)
    qtbot.waitUntil(lambda: "Brian Kiprop" in page.recipient_label.text())
    assert page.rendered.toPlainText().startswith("Dear Brian Kiprop, 5,000")
    page.step(+1)
    qtbot.waitUntil(lambda: "Recipient 3 of 3" in page.recipient_label.text())
    assert not page.next_button.isEnabled()
    assert page.totals_labels["recipients"].text() == "3 (all contacts)"
    assert page.totals_labels["segments"].text() == "3"
    assert page.totals_labels["route"].text() == "Individual: 3 job(s) on messages"
    assert page.totals_labels["characters"].text() == "163, all GSM-7"
    assert page.send_button.isEnabled()


def test_stepping_never_leaves_stale_totals_to_send(console: Console, qtbot: QtBot,
                                                    tmp_path: Path) -> None:
    seed(console, tmp_path)
    page = compose(console, qtbot)
    qtbot.waitUntil(lambda: page.include_tags.list.count() == 2)  # east, west
    page.include_tags.set_chosen(["east"])  # totals now being recounted...
    assert not page.send_button.isEnabled()  # ...so nothing can be sent meanwhile
    assert not page.later_button.isEnabled()
    assert page.count_label.text() == "Counting…"
    page.refresh_preview()
    page.step(+1)  # a step while the totals are pending must not discard them
    qtbot.waitUntil(lambda: page.totals_labels["recipients"].text() ==
                    "2 (tagged east)", timeout=10_000)
    qtbot.waitUntil(page.send_button.isEnabled)
    page.confirm_send()
    assert page.confirm_box.text() == "Send to 2 recipient(s) (tagged east)?"
    page.confirm_box.reject()


def test_no_contact_selected_means_no_recipients_not_everyone(console: Console,
                                                              qtbot: QtBot,
                                                              tmp_path: Path) -> None:
    seed(console, tmp_path)
    page = compose(console, qtbot)
    page.choose_contacts([])  # the Contacts page's selection emptied
    page.to_selected.setChecked(True)
    assert page.recipients() is None
    qtbot.waitUntil(lambda: page.count_label.text() == "–" and idle(console))
    assert not page.send_button.isEnabled()


def test_unknown_tag_is_flagged_and_blocks_sending(console: Console, qtbot: QtBot,
                                                   tmp_path: Path) -> None:
    seed(console, tmp_path)
    page = compose(console, qtbot)
    page.editor.setPlainText("Dear #nmae, thanks")
    qtbot.waitUntil(page.problems.isVisible)
    assert "#nmae: did you mean #name?" in page.problems.text()
    assert not page.send_button.isEnabled()
    qtbot.waitUntil(lambda: "Fix the unknown tag" in page.message_stats.text())
    page.editor.setPlainText("Dear ##nmae #name")  # '##' is a literal '#'
    qtbot.waitUntil(lambda: page.rendered.toPlainText() == "Dear #nmae Amina Mutua")
    page.editor.setPlainText("Karibu #name ✓")  # a character outside GSM-7
    qtbot.waitUntil(lambda: page.totals_labels["characters"].text() ==
                    "66; 3 message(s) need UCS-2 (70 a segment)")
    assert page.problems.isHidden()


def test_tag_buttons_insert_tags(console: Console, qtbot: QtBot, tmp_path: Path) -> None:
    seed(console, tmp_path)
    page = compose(console, qtbot, "Hello")
    page.editor.moveCursor(page.editor.textCursor().MoveOperation.End)
    page.findChild(type(page.previous_button), "insert-days_remain").click()
    assert page.editor.toPlainText() == "Hello #days_remain"


def test_recipients_by_tag_and_selection(console: Console, qtbot: QtBot,
                                         tmp_path: Path) -> None:
    seed(console, tmp_path)
    page = compose(console, qtbot)
    qtbot.waitUntil(lambda: page.include_tags.list.count() == 2)  # east, west
    page.include_tags.set_chosen(["west"])
    qtbot.waitUntil(lambda: page.totals_labels["recipients"].text() ==
                    "1 (tagged west)", timeout=10_000)
    # The totals and the shown recipient arrive separately; never the old one with new totals.
    assert "Amina" not in page.recipient_label.text()
    qtbot.waitUntil(lambda: page.recipient_label.text().startswith(
        "Recipient 1 of 1: Brian Kiprop"), timeout=10_000)
    page.choose_contacts([3, 1])
    qtbot.waitUntil(lambda: page.totals_labels["recipients"].text() ==
                    "2 (2 selected contact(s))", timeout=10_000)


def test_bulk_plan_cost_and_urgent(console: Console, qtbot: QtBot, tmp_path: Path) -> None:
    rows = [(f"Person {i}", f"07{10000000 + i * 10 + 5}", "100", "0", "2027-01-01", "")
            for i in range(150)]
    seed(console, tmp_path, rows)
    services = console.ctx.services
    services.settings = replace(services.settings, price_per_segment=Decimal("0.8"))
    page = compose(console, qtbot)
    assert page.totals_labels["route"].text() == (
        "Bulk: 1 job on bulk_messages, split into 3 chunk(s) of up to 50")
    assert page.totals_labels["duration"].text() == "20 s (pacing)"
    assert page.totals_labels["cost"].text().startswith("120.00 (150 × 0.8)")
    page.urgent.setChecked(True)  # urgent changes the queue of individual jobs only
    qtbot.waitUntil(page.send_button.isEnabled)
    assert "bulk_messages" in page.totals_labels["route"].text()
    page.confirm_send()
    box = page.confirm_box
    assert isinstance(box, QMessageBox)
    assert box.text() == "Send to 150 recipient(s) (all contacts)?"
    assert "150 SMS segment(s)" in box.informativeText()
    assert "Estimated cost: 120.00" in box.informativeText()
    box.reject()


def dated_rows() -> list[tuple[str, ...]]:
    """Due dates relative to today (the console's zone is UTC in tests), far enough from the
    filter bounds that a test crossing midnight still sees the same contacts."""
    today = datetime.now(UTC).date()

    def due(days: int) -> str:
        return (today + timedelta(days=days)).isoformat()

    return [
        ("Amina Mutua", "0700000105", "10000", "2500", due(3), "east"),  # owes 7,500
        ("Brian Kiprop", "0700000115", "5000", "0", due(-5), "west"),  # owes 5,000, overdue
        ("Cynthia Odhiambo", "0700000125", "20000", "20000", due(30), "east"),  # paid up
        ("Daudi Were", "0700000135", "300", "200", due(3), "east;choir"),  # opted out
    ]


def opt_out(console: Console, phone: str) -> None:
    with console.ctx.services.db().session() as session:
        add_optouts(session, [phone], region="KE", reason="asked to stop")


def counted(page: ComposePage, qtbot: QtBot, text: str) -> None:
    qtbot.waitUntil(lambda: page.count_label.text() == text, timeout=10_000)


def test_filters_change_the_live_count_and_leave_out_the_opted_out(
        console: Console, qtbot: QtBot, tmp_path: Path) -> None:
    seed(console, tmp_path, dated_rows())
    opt_out(console, "0700000135")
    page = compose(console, qtbot)
    counted(page, qtbot, "3 recipients (1 opted out, left out)")
    assert page.totals_labels["recipients"].text() == (
        "3 (all contacts; 1 opted out, left out)")
    qtbot.waitUntil(lambda: page.include_tags.list.count() == 3)  # choir, east, west
    page.include_tags.set_chosen(["east"])
    assert not page.send_button.isEnabled()  # the count on screen is stale
    counted(page, qtbot, "2 recipients (1 opted out, left out)")
    page.owing.setChecked(True)  # Cynthia paid in full
    counted(page, qtbot, "1 recipient (1 opted out, left out)")
    page.exclude_tags.set_chosen(["choir"])  # Daudi: no longer matched at all
    counted(page, qtbot, "1 recipient")
    page.include_tags.set_chosen([])
    page.min_balance_on.setChecked(True)
    page.min_balance.setValue(6000)  # Amina owes 7,500, Brian 5,000
    counted(page, qtbot, "1 recipient")
    assert page.recipients() == Audience(exclude_tags=("choir",), owing=True,
                                         min_balance_cents=600_000)
    page.min_balance_on.setChecked(False)
    counted(page, qtbot, "2 recipients")  # Amina and Brian
    page.due.setCurrentIndex(page.due.findData("overdue"))
    counted(page, qtbot, "1 recipient")
    qtbot.waitUntil(lambda: "Brian Kiprop" in page.recipient_label.text(), timeout=10_000)
    page.due.setCurrentIndex(page.due.findData("within"))
    page.due_days.setValue(7)
    qtbot.waitUntil(lambda: "Amina Mutua" in page.recipient_label.text(), timeout=10_000)
    assert page.recipients() == Audience(exclude_tags=("choir",), owing=True,
                                         due_within_days=7)
    qtbot.waitUntil(page.send_button.isEnabled)
    page.confirm_send()
    assert page.confirm_box.text() == (
        "Send to 1 recipient(s) (not tagged choir, owing, due within 7 day(s))?")
    page.confirm_box.reject()


def test_send_later_refuses_past_and_quiet_times_then_schedules(
        console: Console, qtbot: QtBot, tmp_path: Path) -> None:
    seed(console, tmp_path)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    # Quiet hours from two to four hours ahead, whatever the time of day the test runs.
    quiet = QuietHours.parse(f"{now + timedelta(hours=2):%H:%M}-"
                             f"{now + timedelta(hours=4):%H:%M}")
    services = console.ctx.services
    services.settings = replace(services.settings, quiet_hours=quiet)
    page = compose(console, qtbot)
    page.name.setText("Thursday reminder")
    qtbot.waitUntil(page.later_button.isEnabled)
    page.later_button.click()
    dialog = page.later_dialog
    assert isinstance(dialog, SendLaterDialog)
    assert "UTC" in dialog.findChild(QLabel, "send-later-zone").text()
    assert dialog.findChild(QLabel, "send-later-quiet").text().startswith(str(quiet))

    dialog.set_when(f"{now:%Y-%m-%d %H:%M}")  # this minute has begun: already past
    dialog.accept()
    assert dialog.isVisible()
    assert "is already past" in dialog.error.text()
    inside = now + timedelta(hours=3)
    dialog.set_when(f"{inside:%Y-%m-%d %H:%M}")
    assert dialog.error.isHidden()  # a new choice clears the old refusal
    dialog.accept()
    assert dialog.isVisible()
    assert f"{inside:%Y-%m-%d %H:%M} is inside the quiet hours ({quiet}, UTC)" in \
        dialog.error.text()

    later = now + timedelta(hours=5)
    dialog.set_when(f"{later:%Y-%m-%d %H:%M}")
    dialog.accept()
    assert not dialog.isVisible()
    box = page.confirm_box
    assert box.text() == (f"Schedule for 3 recipient(s) (all contacts), to go out on "
                          f"{later:%Y-%m-%d %H:%M} (UTC)?")
    next(b for b in box.buttons() if b.text() == "Schedule").click()
    qtbot.waitUntil(lambda: page.last_campaign is not None, timeout=30_000)
    assert page.last_campaign.scheduled_at == later
    assert page.progress_box.title() == "Scheduled"
    assert page.scheduled_note.text().startswith(
        f"Scheduled: goes out on {later:%Y-%m-%d %H:%M} (UTC).")
    with services.db().session() as session:
        campaign = session.get(Campaign, page.last_campaign.id)
        assert campaign is not None
        assert (campaign.status, campaign.name, campaign.scheduled_at) == (
            CampaignStatus.SCHEDULED, "Thursday reminder", later)
        assert campaign.quiet_hours == str(quiet)
        assert session.query(OutgoingMessage).count() == 0  # rendered when it is due
    qtbot.waitUntil(lambda: page.progress.summary is not None and
                    page.progress.summary["status"] == "scheduled", timeout=10_000)


def test_unicode_is_shown_with_its_cost_and_replaced_with_gsm7(
        console: Console, qtbot: QtBot, tmp_path: Path) -> None:
    seed(console, tmp_path)
    services = console.ctx.services
    services.settings = replace(services.settings, price_per_segment=Decimal("0.5"))
    page = compose(console, qtbot, "Hello #name")
    assert page.replace_button.isHidden()  # nothing to replace
    assert page.totals_labels["unicode"].text() == "none"
    # 96 characters: one GSM-7 segment each without the curly apostrophe, 2 UCS-2 ones with.
    text = "Dear #name, it’s your pledge" + " of #pledge; thank you, the committee" * 2
    page.editor.setPlainText(text)
    qtbot.waitUntil(lambda: page.totals_labels["unicode"].text() != "none" and
                    page.send_button.isEnabled(), timeout=10_000)
    assert page.replace_button.isVisible()
    assert "’" in page.unicode_note.text()
    assert page.totals_labels["unicode"].text() == (
        "’ ×3 (template; use '); costs 3 extra segment(s) (1.50)")
    assert page.totals_labels["cost"].text() == "3.00 (6 × 0.5); 1.50 of it for Unicode"
    page.confirm_send()
    assert "Of these, 3 are for characters that have a GSM-7 equivalent (1.50)" in \
        page.confirm_box.informativeText()
    page.confirm_box.reject()

    page.replace_button.click()
    assert page.editor.toPlainText() == text.replace("’", "'")
    assert page.replace_button.isHidden()
    assert page.unicode_note.isHidden()
    qtbot.waitUntil(lambda: page.totals_labels["unicode"].text() == "none", timeout=10_000)
    assert page.totals_labels["cost"].text() == "1.50 (3 × 0.5)"
    page.editor.undo()  # one undo brings the apostrophe back
    assert page.editor.toPlainText() == text
    assert page.replace_button.isVisible()
