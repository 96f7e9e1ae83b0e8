"""Dashboard, delivery: the delivery rate, the time from send to delivery and the replies of
the last hour, from the metrics the report applier records; "—" before any report."""

from __future__ import annotations

from typing import Any

from pytestqt.qtbot import QtBot

from desktop.app import Console
from desktop.pages.dashboard_page import DashboardPage
from engine.infra import metrics
from engine.infra.embedded_redis import EmbeddedRedis
from engine.infra.metrics import Metric
from tests.desktop.conftest import open_page

WAIT_MS = 20_000


def dashboard(console: Console) -> DashboardPage:
    page = open_page(console, "dashboard")
    assert isinstance(page, DashboardPage)
    return page


def test_no_report_yet_shows_a_dash(console: Console, qtbot: QtBot,
                                    embedded_redis: EmbeddedRedis) -> None:
    page = dashboard(console)
    qtbot.waitUntil(lambda: page.snapshot is not None, timeout=WAIT_MS)
    assert page.card_text("delivered") == "—"
    assert page.cards["delivered"].detail.text() == "no reports yet"
    assert page.card_text("replies") == "0"
    assert page.cards["replies"].detail.text() == "none"


def test_rate_time_to_delivery_and_replies_of_the_last_hour(
        console: Console, qtbot: QtBot, embedded_redis: EmbeddedRedis) -> None:
    client: Any = console.ctx.services.redis()
    # What the report applier records for 48 delivered (4.2 s each on average, the slowest
    # 9.5 s), 2 undelivered and 3 replies.
    sample = metrics.Sample()
    scopes = [metrics.ALL]
    sample.add(scopes, Metric.DELIVERED, 48)
    sample.add(scopes, Metric.UNDELIVERED, 2)
    sample.add(scopes, Metric.DELIVERY_MS, 48 * 4200)
    sample.peak(scopes, Metric.DELIVERY_MAX_MS, 9500)
    sample.add(scopes, Metric.INBOUND, 3)
    metrics.record(client, console.ctx.settings, sample)

    page = dashboard(console)
    qtbot.waitUntil(lambda: page.card_text("delivered") == "96.0%", timeout=WAIT_MS)
    assert page.cards["delivered"].detail.text() == "in 4.2 s · 2 undelivered"
    assert "9.5 s at most" in page.cards["delivered"].toolTip()
    assert page.card_text("replies") == "3"
    assert page.cards["replies"].detail.text() == "on the Inbox page"
    figures = page.figures()
    assert (figures["delivered"], figures["undelivered"]) == (48, 2)


def test_cards_take_more_rows_in_a_narrow_window(console: Console, qtbot: QtBot) -> None:
    page = dashboard(console)
    window = console.window
    window.resize(1400, 800)
    qtbot.waitUntil(lambda: page.card_columns == 6)
    window.resize(window.minimumSize())
    qtbot.waitUntil(lambda: page.card_columns in (3, 4))
    assert all(card.width() >= card.minimumSizeHint().width()
               for card in page.cards.values())
