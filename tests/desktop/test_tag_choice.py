"""Tag lists of Contacts and Compose: only the newest read of the tags is shown."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot
from sqlalchemy.orm import Session

from desktop import tag_choice
from desktop.app import Console
from engine.store.contacts import all_tags
from engine.store.contacts_import import import_contacts
from tests.desktop.conftest import idle
from tests.support import write_contacts

ROWS = [
    ("Amina Mutua", "0700000105", "10000", "2500", "2027-05-05", "east"),
    ("Brian Kiprop", "0700000115", "5000", "0", "2027-03-18", "west"),
    ("Cynthia Odhiambo", "0700000125", "20000", "20000", "2027-06-05", "east"),
]


def test_a_tag_read_answering_late_does_not_replace_a_newer_one(
        console: Console, qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found under load: the read started when Compose opened (no contacts yet) answered
    after the one an import started, and emptied the tag lists."""
    qtbot.waitUntil(lambda: idle(console))
    release = threading.Event()
    calls: list[int] = []

    def first_read_answers_last(session: Session) -> list[tuple[str, int]]:
        calls.append(1)
        tags = all_tags(session)
        if len(calls) == 1:
            release.wait(timeout=20)
        return tags

    monkeypatch.setattr(tag_choice, "all_tags", first_read_answers_last)
    shown: list[list[tuple[str, int]]] = []
    reader = tag_choice.TagReader(console.ctx, shown.append)
    try:
        reader.load()  # no contacts yet; held back
        qtbot.waitUntil(lambda: len(calls) == 1)
        import_contacts(console.ctx.services.db(), write_contacts(tmp_path / "c.csv", ROWS),
                        "KE")
        reader.load()
        qtbot.waitUntil(lambda: len(shown) == 1)
    finally:
        release.set()
    qtbot.waitUntil(lambda: idle(console))
    assert shown == [[("east", 2), ("west", 1)]]
