"""Sending from the console through the real pipeline: compose → confirm → live progress,
a test send, and pause / resume / cancel on the Campaigns page."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtWidgets import QMessageBox
from pytestqt.modeltest import ModelTester
from pytestqt.qtbot import QtBot

from desktop.app import Console
from desktop.pages.campaigns_page import CampaignsPage
from desktop.pages.compose_page import ComposePage
from engine.infra.sandbox_gateway import GatewayServer
from engine.store.contacts_import import import_contacts
from tests.desktop.conftest import delivered, idle, open_page
from tests.support import write_contacts


def seed(console: Console, tmp_path: Path, count: int) -> list[str]:
    rows = [(f"Person {i}", f"07{20000000 + i * 10 + 5}", "1000", "250", "2027-01-01", "")
            for i in range(count)]
    import_contacts(console.ctx.services.db(), write_contacts(tmp_path / "c.csv", rows), "KE")
    return [f"+2547{20000000 + i * 10 + 5}" for i in range(count)]


def compose(console: Console, qtbot: QtBot, text: str) -> ComposePage:
    page = open_page(console, "compose")
    assert isinstance(page, ComposePage)
    console.ctx.bus.contacts_changed.emit()
    page.editor.setPlainText(text)
    qtbot.waitUntil(lambda: page.send_button.isEnabled() and idle(console), timeout=20_000)
    return page


def click(box: QMessageBox, text: str) -> None:
    button = next(b for b in box.buttons() if b.text() == text)
    button.click()


def test_send_shows_live_progress_until_completed(pipeline_console: Console, qtbot: QtBot,
                                                  gateway: GatewayServer,
                                                  tmp_path: Path) -> None:
    phones = seed(pipeline_console, tmp_path, 120)  # bulk route: 3 chunks
    page = compose(pipeline_console, qtbot, "Dear #name, #balance remains.")
    page.name.setText("Reminder from the console")
    page.confirm_send()
    click(page.confirm_box, "Send")
    qtbot.waitUntil(page.progress_box.isVisible, timeout=20_000)
    qtbot.waitUntil(lambda: page.progress.summary is not None and
                    page.progress.summary["status"] == "completed", timeout=90_000)
    assert page.progress.counts["sent"].text() == "120"
    assert page.progress.counts["pending"].text() == "0"
    assert page.progress.bar.value() == 120
    assert page.progress.title.text() == "Reminder from the console — completed"
    assert delivered(gateway) == dict.fromkeys(phones, 1)


def test_test_send_goes_to_one_number(pipeline_console: Console, qtbot: QtBot,
                                      gateway: GatewayServer, tmp_path: Path) -> None:
    seed(pipeline_console, tmp_path, 3)
    page = compose(pipeline_console, qtbot, "Hello #name")
    page.ask_test_send()
    page.test_dialog.phone.setText("0799999995")
    page.test_dialog.accept()
    qtbot.waitUntil(lambda: page.progress.summary is not None and
                    page.progress.summary["status"] == "completed", timeout=60_000)
    assert delivered(gateway) == {"+254799999995": 1}
    assert [m["body"] for m in gateway_messages(gateway)] == ["Hello Person 0"]


def gateway_messages(gateway: GatewayServer) -> list[dict[str, str]]:
    from tests.support import http_json

    return list(http_json(gateway.url + "/messages"))


@pytest.fixture
def slow_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    # Room to pause, and to cancel the second campaign before it ends: 12.5 s from its
    # first chunk to its last (at 1.5 s a loaded machine took longer to reach Cancel).
    monkeypatch.setenv("RELAYDESK_PACING_CHUNK_S", "2.5")


def test_pause_resume_cancel_from_the_campaigns_page(slow_chunks: None,
                                                     pipeline_console: Console, qtbot: QtBot,
                                                     gateway: GatewayServer, tmp_path: Path,
                                                     qtmodeltester: ModelTester) -> None:
    phones = seed(pipeline_console, tmp_path, 300)  # 6 chunks, 2.5 s apart
    compose_page = compose(pipeline_console, qtbot, "Dear #name")
    compose_page.send(compose_page.request())
    qtbot.waitUntil(lambda: compose_page.last_campaign is not None, timeout=20_000)
    page = open_page(pipeline_console, "campaigns")
    assert isinstance(page, CampaignsPage)
    qtbot.waitUntil(page.pause_button.isEnabled, timeout=20_000)
    page.control("pause")
    qtbot.waitUntil(lambda: page.progress.summary is not None and
                    page.progress.summary["status"] == "paused", timeout=20_000)
    assert page.resume_button.isEnabled()
    assert not page.pause_button.isEnabled()
    sent_at_pause = sum(delivered(gateway).values())
    assert sent_at_pause < 300
    page.control("resume")
    qtbot.waitUntil(lambda: page.progress.summary is not None and
                    page.progress.summary["status"] == "completed", timeout=90_000)
    assert delivered(gateway) == dict.fromkeys(phones, 1)  # each exactly once

    first = compose_page.last_campaign
    compose(pipeline_console, qtbot, "Again #name")
    compose_page.send(compose_page.request())
    qtbot.waitUntil(lambda: compose_page.last_campaign is not first, timeout=20_000)
    second_id = compose_page.last_campaign.id
    open_page(pipeline_console, "campaigns")
    page.select_campaign(second_id)
    qtbot.waitUntil(lambda: page.selected() is not None and page.selected().id == second_id
                    and page.cancel_button.isEnabled(), timeout=20_000)
    page.confirm_cancel()
    click(page.confirm_box, "Cancel campaign")
    qtbot.waitUntil(lambda: page.progress.summary is not None and
                    page.progress.summary["status"] == "cancelled", timeout=20_000)
    summary = page.progress.summary
    assert summary["cancelled"] + summary["sent"] == 300
    assert summary["cancelled"] > 0
    qtbot.waitUntil(lambda: page.messages.rowCount() == 300, timeout=20_000)
    qtmodeltester.check(page.model)
    qtmodeltester.check(page.messages)
