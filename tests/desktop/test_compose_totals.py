"""Compose's totals over a large audience run in a helper process of their own: typing on
stops the totals under way, and only the totals of the text on screen are shown."""

from __future__ import annotations

import os
from datetime import date

import pytest
from PySide6.QtTest import QTest
from pytestqt.qtbot import QtBot
from sqlalchemy import insert

from desktop.app import Console
from desktop.heavy_work import compose_totals
from desktop.helper_lane import Superseded
from desktop.pages.compose_page import ComposePage
from engine.config.settings import Settings
from engine.domain.audience import EVERYONE
from engine.operations.preview import CHECKPOINT_EVERY, ComposeSummary, summarise
from engine.store.db import Database
from engine.store.models import Contact
from tests.desktop.conftest import idle, open_page

CONTACTS = 20_000  # enough that the totals take a while: typing catches them under way
LONG = "Dear #name, " + "your pledge of #pledge is most welcome; " * 5 + "thank you."
SHORT = "Hi #name"


def insert_contacts(db: Database, count: int) -> None:
    with db.session() as session:
        session.execute(insert(Contact), [
            {"name": f"Member {i}", "phone": f"+2547{i:08d}", "pledge_cents": 100_000,
             "paid_cents": 0, "due_date": date(2027, 7, 1)} for i in range(count)])


def seed_contacts(console: Console, count: int = CONTACTS) -> None:
    insert_contacts(console.ctx.services.db(), count)
    console.ctx.bus.contacts_changed.emit()


def compose_page(console: Console, qtbot: QtBot) -> ComposePage:
    page = open_page(console, "compose")
    assert isinstance(page, ComposePage)
    qtbot.waitUntil(lambda: page.include_tags.list.count() == 0 and idle(console))
    return page


def spy_on_totals(page: ComposePage, monkeypatch: pytest.MonkeyPatch
                  ) -> list[ComposeSummary | None]:
    """Every totals the page shows, in order."""
    shown: list[ComposeSummary | None] = []
    show = page._show_summary

    def recording(summary: ComposeSummary | None) -> None:
        shown.append(summary)
        show(summary)

    monkeypatch.setattr(page, "_show_summary", recording)
    return shown


def test_typing_on_stops_the_totals_under_way_and_shows_only_the_newest(
        console: Console, qtbot: QtBot, monkeypatch: pytest.MonkeyPatch) -> None:
    seed_contacts(console)
    page = compose_page(console, qtbot)
    lane = page._totals.lane
    shown = spy_on_totals(page, monkeypatch)
    page.editor.setPlainText(LONG)
    qtbot.waitUntil(lambda: lane.begun, timeout=20_000)  # the long text's totals under way
    assert lane.pid != os.getpid()  # in a helper process, not on a thread of the console
    calls = lane.calls
    page.editor.selectAll()
    QTest.keyClicks(page.editor, SHORT)  # the operator types on: a new text, key by key
    qtbot.waitUntil(lambda: page.summary is not None and idle(console)
                    and page.send_button.isEnabled(), timeout=60_000)
    assert lane.stopped == 1  # the long text's totals stopped early, not finished...
    assert lane.ended == 0  # ...on their own: the process is still the warm one
    assert lane.calls == calls + 1  # one more, after the pause: the text on screen
    assert [s.segments if s else None for s in shown] == [CONTACTS]  # one segment each
    assert page.totals_labels["recipients"].text() == f"{CONTACTS:,} (all contacts)"
    assert page.editor.toPlainText() == SHORT


def test_the_totals_stop_between_batches_and_leave_the_database_usable(
        db_settings: Settings, db: Database) -> None:
    insert_contacts(db, 5 * CHECKPOINT_EVERY)
    checks: list[bool] = []

    def stale_after_two_batches() -> bool:
        checks.append(True)
        return len(checks) > 2  # after 1,000 and 2,000 recipients: not yet

    with pytest.raises(Superseded):
        compose_totals(stale_after_two_batches, db_settings, SHORT, EVERYONE, False)
    assert len(checks) == 3  # stopped at 3,000 of 5,000 recipients, not at the end
    # The same session machinery answers the next question in full, as summarise() does.
    totals = compose_totals(lambda: False, db_settings, SHORT, EVERYONE, False)
    with db.session() as session:
        assert totals == summarise(session, db_settings, SHORT, EVERYONE)
    assert totals.recipients == 5 * CHECKPOINT_EVERY
