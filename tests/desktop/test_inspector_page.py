"""The Inspector page over the real pipeline: it lists what the console's worker recorded
in development, and in production says why it is off while nothing is recorded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pytestqt.modeltest import ModelTester
from pytestqt.qtbot import QtBot

from desktop.app import Console
from desktop.pages.inspector_page import InspectorPage
from engine.domain.audience import Audience
from engine.infra.inspector_store import KINDS, stream_key
from engine.monitoring import inspector
from engine.operations.campaigns import send_campaign
from engine.store.campaign_state import campaign_summary, is_settled
from engine.store.contacts_import import import_contacts
from tests.desktop.conftest import open_page
from tests.support import wait_for, write_contacts

PHONES = ["0712345655", "0712345666"]  # not like the sandbox's failure numbers


@pytest.fixture(autouse=True)
def no_recording_left() -> Iterator[None]:
    yield
    inspector.stop()  # the console's own SQL was recorded in this process


@pytest.fixture
def development(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYDESK_ENV", "development")


def send(console: Console, tmp_path: Path) -> int:
    """A two-message campaign, sent and delivered (the engine calls, off the UI thread)."""
    services = console.ctx.services
    rows = [(f"Donor {i}", phone, "1000", "250", "2027-01-01", "inspect")
            for i, phone in enumerate(PHONES)]
    import_contacts(services.db(), write_contacts(tmp_path / "c.csv", rows), "KE")
    created = send_campaign(services.db(), services.redis(), services.settings,
                            "Hello #name", audience=Audience(tags=("inspect",)))

    def settled() -> bool:
        with services.db().session() as session:
            summary = campaign_summary(session, created.id)
        return summary is not None and is_settled(summary)

    wait_for(settled, message="the campaign to be delivered")
    return created.id


def shown_kinds(page: InspectorPage) -> set[str]:
    return {e.kind for e in page.model.rows}


def test_page_lists_recorded_entries_in_development(
        development: None, pipeline_console: Console, qtbot: QtBot, tmp_path: Path,
        qtmodeltester: ModelTester) -> None:
    campaign = send(pipeline_console, tmp_path)
    page = open_page(pipeline_console, "inspector")
    assert isinstance(page, InspectorPage)
    assert page.stack.currentIndex() == 1
    assert page.refresh_timer.isActive()  # live while shown
    qtbot.waitUntil(lambda: shown_kinds(page) == set(KINDS), timeout=30_000)
    qtmodeltester.check(page.model)
    times = [e.time for e in page.model.rows]
    assert times == sorted(times, reverse=True)  # newest first

    page.tabs.setCurrentIndex(3)  # HTTP
    qtbot.waitUntil(lambda: shown_kinds(page) == {"http"}, timeout=10_000)
    assert len(page.model.rows) == 2
    page.table.selectRow(0)
    detail = page.detail.toPlainText()
    assert "POST" in detail
    assert "Hello Donor" in detail
    assert "+2547******" in detail
    assert not any(p[1:] in detail for p in PHONES)

    page.tabs.setCurrentIndex(1)  # Jobs, for this campaign and task
    page.campaign.setText(str(campaign))
    page.task.setText("send_message")
    qtbot.waitUntil(lambda: bool(page.model.rows) and shown_kinds(page) == {"job"} and all(
        e.campaign == campaign and e.task == "relaydesk.send_message"
        for e in page.model.rows), timeout=10_000)
    assert {"enqueued", "started", "succeeded", "sent"} <= {e.event for e in page.model.rows}
    page.campaign.setText(str(campaign + 1))
    qtbot.waitUntil(lambda: not page.model.rows, timeout=10_000)

    page.campaign.clear()
    page.task.clear()
    page.tabs.setCurrentIndex(0)
    qtbot.waitUntil(lambda: bool(page.model.rows), timeout=10_000)
    page.clear_button.click()
    client = pipeline_console.ctx.services.redis()
    qtbot.waitUntil(page.clear_button.isEnabled, timeout=10_000)
    assert not any(client.exists(stream_key(k)) for k in ("job", "http"))

    open_page(pipeline_console, "settings")
    assert not page.refresh_timer.isActive()  # no reads while another page is shown


def test_page_says_why_it_is_off_in_production(pipeline_console: Console, qtbot: QtBot,
                                               tmp_path: Path) -> None:
    send(pipeline_console, tmp_path)
    page = open_page(pipeline_console, "inspector")
    assert isinstance(page, InspectorPage)
    assert page.stack.currentIndex() == 0
    assert page.off_label.isVisible()
    text = page.off_label.text()
    assert "The inspector records" in text
    assert "It is off in production" in text
    assert "RELAYDESK_ENV=development" in text
    assert not page.refresh_timer.isActive()
    assert not page.table.isVisible()
    client = pipeline_console.ctx.services.redis()
    assert client.keys("relaydesk:inspector:*") == []  # the worker recorded nothing
