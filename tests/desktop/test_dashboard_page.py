"""The dashboard over the real pipeline: cards, charts, workload and campaign progress
follow a real campaign; a long wait shows as an alert."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pytestqt.qtbot import QtBot

from desktop.app import Console
from desktop.pages.dashboard_page import DashboardPage
from engine.infra.embedded_redis import EmbeddedRedis
from engine.infra.sandbox_gateway import GatewayServer
from engine.monitoring import monitor
from engine.operations.campaigns import send_campaign
from engine.store.contacts_import import import_contacts
from tests.desktop.conftest import open_page
from tests.support import write_contacts


def dashboard(console: Console) -> DashboardPage:
    page = open_page(console, "dashboard")
    assert isinstance(page, DashboardPage)
    return page


def sent_shown(page: DashboardPage) -> float:
    """Messages the throughput curve accounts for (its points are per-minute rates)."""
    chart = page.throughput_chart
    if chart.points < 2:
        return 0.0
    step = chart._x[1] - chart._x[0]
    return float(chart.y_data("sent").sum() * step / 60)


@pytest.fixture
def one_send_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each job makes one provider call at a time (set before the console starts its
    worker): with the default 25, a campaign of 120 at 100 ms is over in under a second,
    before a 1 s tick has seen it run."""
    monkeypatch.setenv("RELAYDESK_SEND_CONCURRENCY", "1")


def test_the_dashboard_follows_a_running_campaign(one_send_at_a_time: None,
                                                  pipeline_console: Console, qtbot: QtBot,
                                                  gateway: GatewayServer,
                                                  tmp_path: Path) -> None:
    console = pipeline_console
    rows = [(f"Donor {i}", f"07{30000000 + i * 10 + 5}", "1000", "250", "2027-01-01", "")
            for i in range(120)]
    services = console.ctx.services
    import_contacts(services.db(), write_contacts(tmp_path / "c.csv", rows), "KE")
    page = dashboard(console)
    qtbot.waitUntil(lambda: page.card_text("status") == "Active", timeout=20_000)
    assert page.card_text("processes") == "2"
    assert [w.queue for w in page.workload()] == ["high_priority", "messages", "bulk_messages"]
    assert page.run_rows == {}
    assert page.no_runs.isVisibleTo(page)

    # A slow provider keeps the campaign running (three chunks of 50, 50 and 20, two at a
    # time, one call at a time: 7 s at least) for the 1 s ticks to see.
    gateway.state.latency_s = 0.1
    created = send_campaign(services.db(), services.redis(), console.ctx.settings,
                            "Dear #name, #balance remains.", name="Dashboard run")
    campaign_id = created.id
    # While it runs, it has a row with a progress bar.
    qtbot.waitUntil(lambda: campaign_id in page.run_rows, timeout=30_000)
    assert not page.no_runs.isVisibleTo(page)
    assert "Dashboard run" in page.run_rows[campaign_id].name.text()
    gateway.state.latency_s = 0

    qtbot.waitUntil(lambda: page.figures().get("sent_last_hour") == 120, timeout=90_000)
    qtbot.waitUntil(lambda: round(sent_shown(page)) == 120, timeout=10_000)
    assert page.card_text("sent") == "120"
    assert page.throughput_chart.y_data("failed").sum() == 0
    response = page.response_chart.y_data("average")
    assert (response[np.isfinite(response)] > 0).any()  # some bucket had provider calls
    # Finished campaigns leave the panel.
    qtbot.waitUntil(lambda: campaign_id not in page.run_rows, timeout=30_000)
    assert page.no_runs.isVisibleTo(page)

    # Another range reads its own buckets and still accounts for every message.
    page.range_buttons.buttons()[2].click()  # 24 h, per minute
    qtbot.waitUntil(lambda: page.throughput_chart.points >= 1400, timeout=10_000)
    qtbot.waitUntil(lambda: round(sent_shown(page)) == 120, timeout=10_000)


def test_a_long_wait_shows_as_an_alert(console: Console, qtbot: QtBot,
                                       embedded_redis: EmbeddedRedis) -> None:
    from engine.infra.celery_app import PUBLISHED_HEADER
    from engine.infra.connections import celery_for

    client: Any = console.ctx.services.redis()
    app = celery_for(embedded_redis.url())
    app.send_task("relaydesk.process_bulk", args=[1], queue="bulk_messages",
                  headers={PUBLISHED_HEADER: time.time() - 900})
    assert monitor.tick(client, console.ctx.settings, "test")  # what a worker's monitor does

    page = dashboard(console)
    qtbot.waitUntil(lambda: page.alert.isVisibleTo(page), timeout=20_000)
    assert "bulk_messages" in page.alert.text()
    status_bar = console.window.wait_label
    qtbot.waitUntil(status_bar.isVisible, timeout=10_000)  # seen on every page
    assert status_bar.text() == "⚠ Long wait: bulk_messages"
    assert page.card_text("status") == "Inactive"  # no worker is online
    assert page.cards["wait"].detail.text() == "on bulk_messages"
    assert page.card_text("wait").startswith("15 min")
    waiting = {w.queue: w.waiting for w in page.workload()}
    assert waiting == {"high_priority": 0, "messages": 0, "bulk_messages": 1}
    qtbot.waitUntil(lambda: page.depth_chart.y_data("bulk_messages").max() == 1,
                    timeout=10_000)

    client.delete("bulk_messages")
    monitor_owner = "test-2"
    client.delete(monitor.LOCK)
    assert monitor.tick(client, console.ctx.settings, monitor_owner)
    qtbot.waitUntil(lambda: not page.alert.isVisibleTo(page), timeout=20_000)
    qtbot.waitUntil(lambda: not status_bar.isVisible(), timeout=10_000)
