"""Settings › Data kept: the database's size and growth beside how long messages are kept,
what the value being typed would hold, and how space comes back; on SQLite and, when a
server is given, PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from pytestqt.qtbot import QtBot

from desktop.app import Console
from desktop.pages.settings_page import KEEP_FIELD, STORAGE_GROUP, SettingsPage
from desktop.storage_box import space_note
from engine.domain.formatting import format_bytes
from engine.store.db import Database
from engine.store.models import utcnow
from engine.store.storage_figures import StorageFigures
from tests.desktop.conftest import open_page
from tests.engine.test_storage_figures import add_messages


def settings_page(console: Console, qtbot: QtBot) -> SettingsPage:
    page = open_page(console, "settings")
    assert isinstance(page, SettingsPage)
    with qtbot.waitSignal(page.storage_shown, timeout=30_000):
        pass
    page.show_group(STORAGE_GROUP)
    return page


def test_size_growth_and_what_keeping_would_hold_are_shown(
        db: Database, console: Console, qtbot: QtBot) -> None:
    add_messages(db, 300, utcnow() - timedelta(days=45))
    add_messages(db, 120, utcnow() - timedelta(days=2))
    page = settings_page(console, qtbot)
    box = page.storage
    figures = box.figures
    assert figures is not None
    assert (figures.messages, figures.messages_last_30_days) == (420, 120)
    assert box.size.text() == (
        f"{format_bytes(figures.size_bytes)} ("
        + ("the SQLite file with its write-ahead log" if figures.database == "sqlite"
           else "the postgresql database") + "), holding 420 messages.")
    assert box.growth.text().startswith(
        f"120 messages created in the last 30 days: about "
        f"{format_bytes(figures.growth_bytes_per_month)} a month at that rate")
    assert box.keep.text() == ("Kept for ever: nothing is pruned, and the database grows by "
                               f"about {format_bytes(figures.growth_bytes_per_month)} a month.")
    editor = page.editors[KEEP_FIELD]
    editor.set_text("60d")  # as typed: the projection follows before anything is saved
    assert box.keep.text() == ("Keeping 60 days: settled messages take about "
                               f"{format_bytes(2 * figures.growth_bytes_per_month)} once the "
                               "oldest are pruned, at the last 30 days' rate.")
    editor.set_text("sixty")  # not a duration: the field's own error says why
    assert box.keep.isHidden()
    qtbot.waitUntil(lambda: KEEP_FIELD in page.errors)
    page.revert()
    assert box.keep.text().startswith("Kept for ever")
    space = box.space.text()
    if figures.database == "sqlite":
        assert "incremental auto-vacuum" in space  # a new database
    else:
        assert space.startswith("PostgreSQL's autovacuum makes the space of pruned "
                                "messages reusable")


def test_a_first_start_shows_an_empty_database_that_does_not_grow(
        console: Console, qtbot: QtBot) -> None:
    page = settings_page(console, qtbot)
    assert page.storage.size.text().endswith("holding 0 messages.")
    assert page.storage.growth.text() == ("No messages created in the last 30 days: it is "
                                          "not growing now.")
    assert page.storage.keep.text() == "Kept for ever: nothing is pruned."


def test_an_older_sqlite_file_is_told_to_run_db_vacuum_once() -> None:
    older = StorageFigures(size_bytes=2 * 2**30, messages=3_000_000,
                           messages_last_30_days=100_000, growth_bytes_per_month=70 * 2**20,
                           bytes_per_message=734.0, database="sqlite",
                           free_bytes=512 * 2**20, auto_vacuum="none")
    assert space_note(older) == (
        "This SQLite file keeps the space of pruned messages inside it (512.0 MB free "
        "inside it now): run 'relaydesk db vacuum' once, when nothing is sending (it locks "
        "the database while it rewrites the file); from then on each prune gives its space "
        "back.")
