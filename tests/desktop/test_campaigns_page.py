"""Campaigns page, who and when: each campaign's audience, its schedule in its own zone (and
"missed its time"), the opted-out left out; Reschedule, Send now and Cancel on a scheduled
campaign, the last through the real pipeline (embedded Redis, a worker, the sandbox
gateway)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from PySide6.QtWidgets import QMessageBox
from pytestqt.qtbot import QtBot

from desktop.app import Console
from desktop.pages.campaigns_page import CampaignsPage
from desktop.send_later_dialog import SendLaterDialog
from engine.domain.audience import Audience
from engine.domain.send_window import QuietHours
from engine.infra.sandbox_gateway import GatewayServer
from engine.operations.campaign_control import CampaignError
from engine.operations.campaigns import create_campaign
from engine.pipeline.campaign_start import start_scheduled
from engine.store.contacts_import import import_contacts
from engine.store.models import Campaign, CampaignStatus
from engine.store.optouts import add_optouts
from tests.desktop.conftest import delivered, open_page
from tests.support import write_contacts

ROWS = [
    ("Amina Mutua", "0700000105", "10000", "2500", "2027-05-05", "east"),
    ("Brian Kiprop", "0700000115", "5000", "0", "2027-03-18", "west"),
    ("Cynthia Odhiambo", "0700000125", "20000", "20000", "2027-06-05", "east"),
]
MINUTE = "%Y-%m-%d %H:%M"


def seed(console: Console, tmp_path: Path) -> None:
    import_contacts(console.ctx.services.db(), write_contacts(tmp_path / "c.csv", ROWS), "KE")
    with console.ctx.services.db().session() as session:
        add_optouts(session, ["0700000125"], region="KE", reason="asked to stop")


def schedule(console: Console, at: datetime, name: str, *, missed: bool = False) -> int:
    """A campaign to the east-tagged contacts at ``at``; ``missed``: a worker found it
    later than RELAYDESK_SCHEDULE_MAX_LATE allows, so it waits for the operator."""
    db, settings = console.ctx.services.db(), console.ctx.settings
    created = create_campaign(db, settings, "Dear #name, #balance remains.",
                              audience=Audience(tags=("east",)), name=name, at=at,
                              now=at - timedelta(hours=1))
    if missed:
        late = at + timedelta(seconds=settings.schedule_max_late_s + 60)
        assert start_scheduled(db, None, settings, created.id, now=late) is None
    return created.id


def campaigns(console: Console, qtbot: QtBot, campaign_id: int) -> CampaignsPage:
    page = open_page(console, "campaigns")
    assert isinstance(page, CampaignsPage)
    page.select_campaign(campaign_id)
    qtbot.waitUntil(lambda: page.selected() is not None and
                    page.selected().id == campaign_id, timeout=20_000)
    return page


def cell(page: CampaignsPage, column: str) -> str:
    row = page.table.selectionModel().selectedRows()[0].row()
    titles = [c.title for c in page.model.columns]
    return str(page.model.index(row, titles.index(column)).data())


def stored(console: Console, campaign_id: int) -> Campaign:
    with console.ctx.services.db().session() as session:
        campaign = session.get(Campaign, campaign_id)
        assert campaign is not None
        session.expunge(campaign)
        return campaign


def test_scheduled_campaign_shows_who_and_when_and_is_rescheduled(
        console: Console, qtbot: QtBot, tmp_path: Path) -> None:
    seed(console, tmp_path)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    # Quiet hours from five to seven hours ahead, whatever the time of day the test runs.
    quiet = QuietHours.parse(f"{now + timedelta(hours=5):%H:%M}-"
                             f"{now + timedelta(hours=7):%H:%M}")
    services = console.ctx.services
    services.settings = replace(services.settings, quiet_hours=quiet)
    first = now + timedelta(hours=2)
    campaign_id = schedule(console, first, "Thursday reminder")
    page = campaigns(console, qtbot, campaign_id)
    assert cell(page, "Status") == "scheduled"
    assert cell(page, "When") == f"{first:{MINUTE}} UTC"
    assert cell(page, "Audience") == "tagged east"
    assert cell(page, "Opted out") == "1"  # Cynthia is tagged east but opted out
    assert page.facts["when"].text() == f"scheduled for {first:{MINUTE}} UTC"
    assert page.facts["audience"].text() == "tagged east"
    assert page.facts["suppressed"].text() == "1 contact(s) on the opt-out list, left out"
    qtbot.waitUntil(page.reschedule_button.isEnabled)
    assert page.send_now_button.isEnabled()
    assert page.cancel_button.isEnabled()
    assert not page.pause_button.isEnabled()
    assert not page.resume_button.isEnabled()

    page.reschedule_button.click()
    dialog = page.reschedule_dialog
    assert isinstance(dialog, SendLaterDialog)
    assert dialog.chosen_text() == f"{first:{MINUTE}}"  # starts at its current time
    inside = now + timedelta(hours=6)  # the campaign's own quiet hours
    dialog.set_when(f"{inside:{MINUTE}}")
    dialog.accept()
    assert "inside the quiet hours" in dialog.error.text()
    later = now + timedelta(hours=8)
    dialog.set_when(f"{later:{MINUTE}}")
    dialog.accept()
    qtbot.waitUntil(lambda: page.facts["when"].text() ==
                    f"scheduled for {later:{MINUTE}} UTC", timeout=20_000)
    assert stored(console, campaign_id).scheduled_at == later

    # What the engine refuses (here: a time past by now) is shown as errors are.
    with qtbot.waitSignal(console.ctx.background.error, timeout=20_000) as refused:
        page.control("reschedule", at=now - timedelta(minutes=1))
    assert isinstance(refused.args[0], CampaignError)
    assert "is already past" in str(refused.args[0])
    qtbot.waitUntil(page.reschedule_button.isEnabled)
    assert stored(console, campaign_id).scheduled_at == later  # unchanged

    page.confirm_cancel()
    box = page.confirm_box
    assert isinstance(box, QMessageBox)
    assert box.text() == (f"Cancel 'Thursday reminder', scheduled for {later:{MINUTE}} UTC? "
                          "Nothing of it has been sent, and it will not go out.")
    next(b for b in box.buttons() if b.text() == "Cancel campaign").click()
    qtbot.waitUntil(lambda: cell(page, "Status") == "cancelled", timeout=20_000)
    assert stored(console, campaign_id).status == CampaignStatus.CANCELLED
    assert not page.reschedule_button.isEnabled()
    assert not page.send_now_button.isEnabled()


def test_scheduled_campaign_preview_has_the_figures_of_its_send_day(
        console: Console, qtbot: QtBot, tmp_path: Path) -> None:
    seed(console, tmp_path)
    first = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(days=2)
    page = campaigns(console, qtbot, schedule(console, first, "Thursday reminder"))
    qtbot.waitUntil(page.preview_button.isEnabled)
    page.preview_button.click()  # rendered off the UI thread
    qtbot.waitUntil(lambda: hasattr(page, "preview_dialog"), timeout=20_000)
    assert page.preview_dialog.summary.text().startswith(
        f"'Thursday reminder' as it will go out at {first:{MINUTE}} UTC, with the figures of "
        f"{first:%Y-%m-%d}: 1 recipient(s), 1 opted out left out")
    assert page.preview_dialog.details.toPlainText() == (
        "To +2547******05 (Amina Mutua):\nDear Amina Mutua, 7,500 remains.")


def test_missed_campaign_is_marked_and_sent_now(pipeline_console: Console, qtbot: QtBot,
                                                gateway: GatewayServer,
                                                tmp_path: Path) -> None:
    seed(pipeline_console, tmp_path)
    due = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=8)
    campaign_id = schedule(pipeline_console, due, "Missed overnight", missed=True)
    page = campaigns(pipeline_console, qtbot, campaign_id)
    assert cell(page, "Status") == "missed its time"
    assert page.facts["when"].text() == (
        f"{due:{MINUTE}} UTC: missed its time (no worker was running then). Send it now "
        "or reschedule it.")
    qtbot.waitUntil(page.send_now_button.isEnabled)
    # No messages yet: no progress bar that would look stuck at 0%, and the reason it waits.
    qtbot.waitUntil(lambda: page.progress.summary is not None, timeout=20_000)
    assert page.progress.bar.isHidden()
    assert page.progress.note.text().startswith("It missed its time")
    assert pipeline_console.ctx.services.redis().ping()
    assert sum(delivered(gateway).values()) == 0  # waiting for the operator, not sent

    page.confirm_send_now()
    box = page.confirm_box
    assert isinstance(box, QMessageBox)
    assert box.text() == f"Send 'Missed overnight' now, instead of at {due:{MINUTE}} UTC?"
    next(b for b in box.buttons() if b.text() == "Send now").click()
    qtbot.waitUntil(lambda: page.progress.summary is not None and
                    page.progress.summary["status"] == "completed", timeout=90_000)
    assert delivered(gateway) == {"+254700000105": 1}  # Amina; Cynthia opted out
    assert not page.progress.bar.isHidden()
    assert page.progress.bar.value() == page.progress.bar.maximum() == 1
    qtbot.waitUntil(lambda: cell(page, "Status") == "completed", timeout=20_000)
    assert cell(page, "When") == ""
    assert page.facts["when"].text() == f"was scheduled for {due:{MINUTE}} UTC"


def test_campaign_held_by_quiet_hours_says_until_when(console: Console, qtbot: QtBot,
                                                      tmp_path: Path) -> None:
    seed(console, tmp_path)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    # Quiet hours from an hour ago to an hour ahead: the queued campaign waits, on purpose.
    end = now + timedelta(hours=1)
    quiet = QuietHours.parse(f"{now - timedelta(hours=1):%H:%M}-{end:%H:%M}")
    services = console.ctx.services
    services.settings = replace(services.settings, quiet_hours=quiet)
    created = create_campaign(services.db(), services.settings, "Dear #name",
                              name="Held overnight")  # queued: its messages are written
    page = campaigns(console, qtbot, created.id)
    assert cell(page, "Status") == "queued"
    assert cell(page, "When") == f"waiting for the send window (until {end:%H:%M})"
    assert page.facts["when"].text() == f"waiting for the send window (until {end:%H:%M})"
    assert cell(page, "Audience") == "all contacts"
    assert cell(page, "Opted out") == "1"
