"""Settings page, Reports and replies: the callback URLs to paste into the provider's
dashboard once a public URL is saved (with the token, and a Copy button each), and without
one a note saying what a public URL is for and what still works without it."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QLabel
from pytestqt.qtbot import QtBot

from desktop.app import Console
from tests.desktop.conftest import idle
from tests.desktop.test_settings_page import save_through_page, settings_page, type_into

PUBLIC = "https://relay.example.org"
TOKEN = "parish-callback-token-0123"


def test_without_a_public_url_the_section_says_what_works_and_what_does_not(
        console: Console, qtbot: QtBot) -> None:
    page = settings_page(console, qtbot)
    page.show_group("Reports and replies")
    box = page.callbacks
    qtbot.waitUntil(lambda: box.setup is not None)
    assert box.isVisibleTo(page)
    assert box.fields == {}
    assert not box.rows.isVisibleTo(page)
    note = box.note.text()
    assert "No public URL is set" in note
    assert "tunnel" in note
    assert "reverse proxy" in note
    assert "Twilio messages are still looked up by polling" in note
    assert "Africa's Talking has no such look-up" in note


def test_a_saved_public_url_shows_every_callback_url_with_the_token(
        console: Console, qtbot: QtBot, isolated_env: Path) -> None:
    page = settings_page(console, qtbot)
    box = page.callbacks
    qtbot.waitUntil(lambda: box.setup is not None)
    type_into(page, qtbot, {"RELAYDESK_PUBLIC_URL": PUBLIC + "/",
                            "RELAYDESK_SMS_PROVIDER": "africastalking",
                            "RELAYDESK_AT_USERNAME": "sandbox",
                            "RELAYDESK_AT_API_KEY": "at-key-0123456789"})
    with qtbot.waitSignal(page.callbacks_shown, timeout=10_000):
        save_through_page(console, page, qtbot)
    qtbot.waitUntil(lambda: bool(box.fields) and idle(console))
    # Generated once into the data dir: the receiver reads the same file.
    token = (isolated_env / "callback_token").read_text(encoding="ascii").strip()
    assert len(token) >= 16
    assert box.url("twilio", "Status callback") == f"{PUBLIC}/callbacks/twilio/status"
    assert box.url("twilio", "Incoming messages") == f"{PUBLIC}/callbacks/twilio/inbound"
    at = f"{PUBLIC}/callbacks/africastalking/{token}"
    assert box.url("africastalking", "Delivery reports") == f"{at}/delivery"
    assert box.url("africastalking", "Incoming messages") == f"{at}/inbound"
    assert box.url("africastalking", "Opt-outs") == f"{at}/optout"
    http = f"{PUBLIC}/callbacks/http/{token}"
    assert box.url("http", "Delivery reports") == f"{http}/delivery"
    assert box.url("http", "Incoming messages") == f"{http}/inbound"
    assert "No public URL" not in box.note.text()
    # The chosen provider first.
    first = box.grid.itemAtPosition(0, 0).widget()
    assert isinstance(first, QLabel)
    assert first.text() == "Africa's Talking"
    # Nothing runs the receiver yet: the section says what to set.
    assert not box.warning.isHidden()
    assert "Receiver port" in box.warning.text()

    button = box.copy_buttons["africastalking", "Delivery reports"]
    button.click()
    assert QGuiApplication.clipboard().text() == f"{at}/delivery"
    assert button.text() == "Copied"


def test_a_token_set_in_the_settings_is_the_one_shown(console: Console, qtbot: QtBot) -> None:
    page = settings_page(console, qtbot)
    type_into(page, qtbot, {"RELAYDESK_PUBLIC_URL": PUBLIC,
                            "RELAYDESK_CALLBACK_TOKEN": TOKEN,
                            "RELAYDESK_RECEIVER_PORT": "8026"})
    with qtbot.waitSignal(page.callbacks_shown, timeout=10_000):
        save_through_page(console, page, qtbot)
    box = page.callbacks
    qtbot.waitUntil(lambda: bool(box.fields))
    assert box.url("http", "Incoming messages") == \
        f"{PUBLIC}/callbacks/http/{TOKEN}/inbound"
    assert box.warning.isHidden()  # the receiver runs on 8026
