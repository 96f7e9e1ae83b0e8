"""The dashboard over the real pipeline says a campaign held by its quiet hours is waiting
for its send window, instead of looking stalled. The window is set around now (UTC)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from desktop.app import Console
from desktop.pages.dashboard_page import DashboardPage
from engine.infra.sandbox_gateway import GatewayServer
from engine.operations.campaigns import send_campaign
from engine.store.contacts_import import import_contacts
from tests.desktop.conftest import open_page
from tests.support import write_contacts


@pytest.fixture
def quiet_now(monkeypatch: pytest.MonkeyPatch) -> datetime:
    """Quiet hours from 10 minutes ago to 10 minutes ahead; their end."""
    now = datetime.now(UTC)
    start, end = now - timedelta(minutes=10), now + timedelta(minutes=10)
    monkeypatch.setenv("RELAYDESK_QUIET_HOURS", f"{start:%H:%M}-{end:%H:%M}")
    return end.replace(second=0, microsecond=0)


def test_a_held_campaign_is_shown_waiting_for_its_send_window(
        quiet_now: datetime, pipeline_console: Console, qtbot: QtBot,
        gateway: GatewayServer, tmp_path: Path) -> None:
    console = pipeline_console
    services = console.ctx.services
    rows = [(f"Donor {i}", f"07{30000000 + i * 10 + 7}", "1000", "250", "2027-01-01", "")
            for i in range(3)]
    import_contacts(services.db(), write_contacts(tmp_path / "c.csv", rows), "KE")
    created = send_campaign(services.db(), services.redis(), console.ctx.settings,
                            "Dear #name, #balance remains.", name="Night run")
    page = open_page(console, "dashboard")
    assert isinstance(page, DashboardPage)
    note = f"waiting for the send window (until {quiet_now:%H:%M})"

    qtbot.waitUntil(lambda: created.id in page.run_rows, timeout=30_000)
    row = page.run_rows[created.id]
    qtbot.waitUntil(lambda: row.rate.text() == note, timeout=20_000)
    qtbot.waitUntil(lambda: page.card_text("status") == "Waiting", timeout=20_000)
    assert page.cards["status"].detail.text() == note
    assert gateway.state.received == 0
