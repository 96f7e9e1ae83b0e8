"""Settings page: the form shows the settings in force, checks values as they are typed,
saves to the 0600 config file (secrets to the keyring or the file, never shown back), and
tests Redis and the database with the values on the form."""

from __future__ import annotations

import socket
import stat
import tomllib
from pathlib import Path

import keyring
import keyring.core
import pytest
from keyring.backends import fail
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QLineEdit
from pytestqt.qtbot import QtBot

from desktop.app import Console
from desktop.pages.settings_page import SettingsPage
from engine.config.settings import (
    GROUPS,
    PROVIDERS,
    SETTINGS,
    RateLimit,
    keyring_service,
    load_settings,
)
from engine.config.settings_store import editable_fields
from engine.infra.embedded_redis import EmbeddedRedis
from tests.desktop.conftest import idle, open_page
from tests.support import MemoryKeyring

TOKEN = "twilio-token-0123456789abcdef"
CHECK_TIMEOUT_MS = 15_000


@pytest.fixture(autouse=True)
def no_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    """No system keyring (as in CI), and never the developer's real one."""
    monkeypatch.setattr(keyring.core, "_keyring_backend", None)  # restored after the test
    keyring.set_keyring(fail.Keyring())


def settings_page(console: Console, qtbot: QtBot) -> SettingsPage:
    page = open_page(console, "settings")
    assert isinstance(page, SettingsPage)
    qtbot.waitUntil(lambda: bool(page.editors) and idle(console))
    return page


def type_into(page: SettingsPage, qtbot: QtBot, values: dict[str, str]) -> None:
    """Type like an operator, then wait for the (debounced) validation of the last edit."""
    for name, text in values.items():
        editor = page.editors[name]
        if editor.line is not None:
            editor.line.clear()
            qtbot.keyClicks(editor.line, text)
        else:
            editor.set_text(text)
    assert page.validation_pending
    qtbot.waitUntil(lambda: not page.validation_pending)


def save_through_page(console: Console, page: SettingsPage, qtbot: QtBot) -> None:
    assert page.save_button.isEnabled()
    with qtbot.waitSignals([page.saved, console.ctx.bus.settings_saved], timeout=10_000):
        qtbot.mouseClick(page.save_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: idle(console))  # the validation after the reload


def config(path: Path) -> dict[str, object]:
    return tomllib.loads(path.read_text(encoding="utf-8"))


def shown_texts(page: SettingsPage) -> str:
    texts = [w.text() for w in page.findChildren(QLineEdit)]
    texts += [w.placeholderText() for w in page.findChildren(QLineEdit)]
    texts += [w.text() for w in page.findChildren(QLabel)]
    return "\n".join(texts)


def test_form_shows_every_setting_with_defaults(console: Console, qtbot: QtBot,
                                                isolated_env: Path) -> None:
    page = settings_page(console, qtbot)
    assert set(page.editors) == set(editable_fields())
    assert page.group_names == list(GROUPS)
    assert page.editors["RELAYDESK_CHUNK_SIZE"].text() == "50"
    assert page.editors["RELAYDESK_MAX_ATTEMPTS"].text() == "3"
    assert page.editors["RELAYDESK_SMS_PROVIDER"].text() == "sandbox"
    assert page.editors["RELAYDESK_DEFAULT_REGION"].text() == "KE"
    assert page.editors["RELAYDESK_REDIS_URL"].text() == ""
    assert "redis://" in page.editors["RELAYDESK_REDIS_URL"].line.placeholderText()  # type: ignore[union-attr]
    # the help is there, as tooltip and caption
    chunk = page.editors["RELAYDESK_CHUNK_SIZE"]
    assert "Messages per bulk chunk" in chunk.editor.toolTip()
    assert chunk.caption.text() == "Messages per bulk chunk."
    assert chunk.source.isHidden()  # a default says nothing about its source
    # the tests set the data dir in the environment: the form says where to change it
    data_dir = page.editors["RELAYDESK_DATA_DIR"]
    assert data_dir.text() == str(isolated_env)
    assert not data_dir.source.isHidden()
    assert "Set in the environment (RELAYDESK_DATA_DIR)" in data_dir.source.text()
    assert "overridden" in data_dir.source.text()
    # where the settings live and where secrets go
    assert str(isolated_env.parent / "config.toml") in page.where.text()
    assert all("config file, readable only by you (mode 0600)" in label.text()
               for label in page.secret_notes)
    assert not page.errors
    assert not page.save_button.isEnabled()  # nothing changed yet
    assert not page.revert_button.isEnabled()
    # only the chosen provider's fields are shown
    form = page.forms["RELAYDESK_TWILIO_AUTH_TOKEN"]
    assert not form.isRowVisible(page.editors["RELAYDESK_TWILIO_AUTH_TOKEN"])
    assert form.isRowVisible(page.editors["RELAYDESK_SMS_GATEWAY_URL"])
    page.editors["RELAYDESK_SMS_PROVIDER"].set_text("twilio")
    assert form.isRowVisible(page.editors["RELAYDESK_TWILIO_AUTH_TOKEN"])
    assert not form.isRowVisible(page.editors["RELAYDESK_SMS_GATEWAY_URL"])


def test_the_form_is_built_from_the_settings_table(console: Console, qtbot: QtBot) -> None:
    """Every setting of the table, with its label and help, in its section; the provider
    fields follow the table's providers."""
    page = settings_page(console, qtbot)
    assert list(page.editors) == [s.name for s in SETTINGS]
    for setting in SETTINGS:
        editor = page.editors[setting.name]
        assert (editor.label.text(), editor.caption.text()) == (setting.label, setting.help)
        section = page.group_stack.widget(page.group_names.index(setting.group))
        assert section.isAncestorOf(editor), setting.name
    for provider in PROVIDERS:
        page.editors["RELAYDESK_SMS_PROVIDER"].set_text(provider)
        for setting in SETTINGS:
            shown = page.forms[setting.name].isRowVisible(page.editors[setting.name])
            assert shown == (not setting.providers or provider in setting.providers), \
                (provider, setting.name)


def test_bad_values_are_explained_and_block_saving(console: Console, qtbot: QtBot,
                                                   isolated_env: Path) -> None:
    page = settings_page(console, qtbot)
    type_into(page, qtbot, {"RELAYDESK_RATE_LIMIT": "fast"})
    rate = page.editors["RELAYDESK_RATE_LIMIT"]
    assert not rate.error.isHidden()
    assert rate.error.text().startswith("Rate limit")
    assert "'fast'" in rate.error.text()
    assert not page.save_button.isEnabled()
    assert page.revert_button.isEnabled()
    assert "Rate limit (Sending)" in page.status.text()
    sending = page.group_list.item(page.group_names.index("Sending"))
    assert sending.toolTip() == "1 setting(s) to fix"

    type_into(page, qtbot, {"RELAYDESK_MIN_PROCESSES": "30"})
    low = page.editors["RELAYDESK_MIN_PROCESSES"]
    assert not low.error.isHidden()
    assert "Fewest processes (30) is more than most processes (20)" in low.error.text()
    assert "Fix 2 settings before saving" in page.status.text()
    page.save()  # Ctrl+S too: nothing happens while the form has errors
    assert not page._saving
    assert not (isolated_env.parent / "config.toml").exists()

    type_into(page, qtbot, {"RELAYDESK_MIN_PROCESSES": "4", "RELAYDESK_RATE_LIMIT": "20/s"})
    assert not page.errors
    assert rate.error.isHidden()
    assert low.error.isHidden()
    assert page.save_button.isEnabled()
    assert page.status.text() == "Unsaved changes."


def test_provider_without_its_credentials_cannot_be_saved(console: Console,
                                                          qtbot: QtBot) -> None:
    page = settings_page(console, qtbot)
    type_into(page, qtbot, {"RELAYDESK_SMS_PROVIDER": "twilio"})
    assert set(page.errors) == {"RELAYDESK_TWILIO_ACCOUNT_SID", "RELAYDESK_TWILIO_AUTH_TOKEN",
                               "RELAYDESK_TWILIO_FROM"}
    assert "To send with Twilio, enter Twilio auth token" in \
        page.editors["RELAYDESK_TWILIO_AUTH_TOKEN"].error.text()
    assert not page.save_button.isEnabled()
    page.revert()
    qtbot.waitUntil(lambda: idle(console))
    assert page.editors["RELAYDESK_SMS_PROVIDER"].text() == "sandbox"
    assert not page.errors
    assert not page.save_button.isEnabled()
    assert not page.revert_button.isEnabled()


def test_save_writes_the_config_file_and_reloads_settings(console: Console, qtbot: QtBot,
                                                          isolated_env: Path) -> None:
    page = settings_page(console, qtbot)
    path = isolated_env.parent / "config.toml"
    type_into(page, qtbot, {"RELAYDESK_CHUNK_SIZE": "25", "RELAYDESK_RATE_LIMIT": "20/s",
                            "RELAYDESK_CURRENCY_FORMAT": "KES {amount}"})
    save_through_page(console, page, qtbot)

    data = config(path)
    assert data["RELAYDESK_CHUNK_SIZE"] == 25
    assert data["RELAYDESK_RATE_LIMIT"] == "20/s"
    assert data["RELAYDESK_CURRENCY_FORMAT"] == "KES {amount}"
    assert "RELAYDESK_MAX_ATTEMPTS" not in data  # untouched defaults are not pinned
    assert "RELAYDESK_DATA_DIR" not in data  # nor values from the environment
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    settings = console.ctx.services.settings
    assert settings.chunk_size == 25
    assert settings.rate_limit == RateLimit(20, 1.0)
    assert settings.currency_format == "KES {amount}"

    report = page.status.text()
    assert report.startswith(f"Saved to {path}.")
    assert "Changed: Chunk size, Rate limit, Currency format." in report
    assert "Running workers pick up the new settings when restarted" in report
    chunk = page.editors["RELAYDESK_CHUNK_SIZE"]
    assert chunk.text() == "25"
    assert chunk.source.text() == "Saved in the config file."
    assert not page.save_button.isEnabled()

    # back to the default: an emptied field leaves the file
    type_into(page, qtbot, {"RELAYDESK_CHUNK_SIZE": ""})
    save_through_page(console, page, qtbot)
    assert "RELAYDESK_CHUNK_SIZE" not in config(path)
    assert "Back to the default: Chunk size." in page.status.text()
    assert console.ctx.services.settings.chunk_size == 50
    assert chunk.text() == "50"


def test_data_dir_from_the_command_line_is_kept_and_not_saved(
        console: Console, qtbot: QtBot, isolated_env: Path, tmp_path: Path) -> None:
    other = tmp_path / "other-data"
    # as `relaydesk --data-dir OTHER gui` starts the console
    console.ctx.services.settings = load_settings({"RELAYDESK_DATA_DIR": str(other)})
    page = settings_page(console, qtbot)
    data_dir = page.editors["RELAYDESK_DATA_DIR"]
    assert data_dir.text() == str(other)
    assert data_dir.line is not None
    assert data_dir.line.isReadOnly()
    assert data_dir.source.text().startswith("Set on the command line for this session")
    type_into(page, qtbot, {"RELAYDESK_CHUNK_SIZE": "30"})
    save_through_page(console, page, qtbot)
    assert "RELAYDESK_DATA_DIR" not in config(isolated_env.parent / "config.toml")
    assert console.ctx.services.settings.data_dir == other
    assert console.ctx.services.settings.chunk_size == 30
    assert data_dir.text() == str(other)


def test_ctrl_s_saves(console: Console, qtbot: QtBot, isolated_env: Path) -> None:
    page = settings_page(console, qtbot)
    type_into(page, qtbot, {"RELAYDESK_MAX_ATTEMPTS": "5"})
    console.window.activateWindow()
    page.editors["RELAYDESK_MAX_ATTEMPTS"].editor.setFocus()
    qtbot.waitUntil(lambda: console.app.activeWindow() is console.window)
    with qtbot.waitSignal(page.saved, timeout=10_000):
        qtbot.keyClick(page.editors["RELAYDESK_MAX_ATTEMPTS"].editor, Qt.Key.Key_S,
                       Qt.KeyboardModifier.ControlModifier)
    assert config(isolated_env.parent / "config.toml")["RELAYDESK_MAX_ATTEMPTS"] == 5


def test_secret_goes_to_the_config_file_is_never_shown_and_can_be_cleared(
        console: Console, qtbot: QtBot, isolated_env: Path) -> None:
    page = settings_page(console, qtbot)
    path = isolated_env.parent / "config.toml"
    token = page.editors["RELAYDESK_TWILIO_AUTH_TOKEN"]
    assert token.line is not None
    assert token.line.echoMode() == QLineEdit.EchoMode.Password
    assert token.line.placeholderText() == "Not set"
    assert token.clear_button is not None
    assert not token.clear_button.isEnabled()  # nothing to clear

    type_into(page, qtbot, {"RELAYDESK_TWILIO_AUTH_TOKEN": TOKEN})
    save_through_page(console, page, qtbot)
    assert config(path)["RELAYDESK_TWILIO_AUTH_TOKEN"] == TOKEN
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert console.ctx.services.settings.twilio_auth_token == TOKEN
    assert ("Twilio auth token stored in the config file (readable only by you)."
            in page.status.text())
    assert token.text() == ""
    assert token.line.placeholderText() == "•••• saved in the config file — type to replace"
    assert TOKEN not in shown_texts(page)
    assert token.clear_button.isEnabled()

    token.clear_button.click()
    assert token.clearing
    assert token.line.placeholderText() == "Removed when you save"
    assert token.clear_button.text() == "Undo clear"
    qtbot.waitUntil(lambda: idle(console))
    save_through_page(console, page, qtbot)
    assert "RELAYDESK_TWILIO_AUTH_TOKEN" not in config(path)
    assert "Removed: Twilio auth token." in page.status.text()
    assert console.ctx.services.settings.twilio_auth_token is None
    assert not token.clearing
    assert token.line.placeholderText() == "Not set"


def test_secret_goes_to_the_system_keyring_when_there_is_one(
        console: Console, qtbot: QtBot, isolated_env: Path) -> None:
    store = MemoryKeyring()
    keyring.set_keyring(store)
    page = settings_page(console, qtbot)
    path = isolated_env.parent / "config.toml"
    assert all("stored in the system keyring" in label.text() for label in page.secret_notes)

    type_into(page, qtbot, {"RELAYDESK_TWILIO_AUTH_TOKEN": TOKEN})
    save_through_page(console, page, qtbot)
    service = keyring_service(path)
    assert store.items == {(service, "RELAYDESK_TWILIO_AUTH_TOKEN"): TOKEN}
    data = config(path)
    assert "RELAYDESK_TWILIO_AUTH_TOKEN" not in data
    assert data["keyring"] == {"service": service, "secrets": ["RELAYDESK_TWILIO_AUTH_TOKEN"]}
    assert TOKEN not in path.read_text(encoding="utf-8")
    assert "Twilio auth token stored in the system keyring." in page.status.text()
    assert console.ctx.services.settings.twilio_auth_token == TOKEN
    token = page.editors["RELAYDESK_TWILIO_AUTH_TOKEN"]
    assert token.line is not None
    assert token.line.placeholderText() == "•••• saved in the system keyring — type to replace"
    assert TOKEN not in shown_texts(page)

    # typing after "Clear" replaces the secret instead of removing it
    assert token.clear_button is not None
    token.clear_button.click()
    type_into(page, qtbot, {"RELAYDESK_TWILIO_AUTH_TOKEN": TOKEN + "-new"})
    assert not token.clearing
    save_through_page(console, page, qtbot)
    assert store.items == {(service, "RELAYDESK_TWILIO_AUTH_TOKEN"): TOKEN + "-new"}

    token.clear_button.click()
    save_through_page(console, page, qtbot)
    assert store.items == {}
    assert "keyring" not in config(path)
    assert console.ctx.services.settings.twilio_auth_token is None


def run_check(page: SettingsPage, qtbot: QtBot, kind: str) -> tuple[bool, str]:
    page.show_group("Provider" if kind == "provider" else "Connections")
    with qtbot.waitSignal(page.checked, timeout=CHECK_TIMEOUT_MS):
        qtbot.mouseClick(page.checks[kind].button, Qt.MouseButton.LeftButton)
        assert page.checks[kind].running  # the button says it is testing meanwhile
        assert page.checks[kind].button.text() == "Testing…"
    control = page.checks[kind]
    assert control.last is not None
    assert control.button.isEnabled()
    assert control.result.isVisible()
    return control.last.ok, control.result.text()


def test_redis_check_uses_the_url_on_the_form(console: Console, qtbot: QtBot,
                                              embedded_redis: EmbeddedRedis) -> None:
    page = settings_page(console, qtbot)
    type_into(page, qtbot, {"RELAYDESK_REDIS_URL": embedded_redis.url()})  # typed, not saved
    ok, shown = run_check(page, qtbot, "redis")
    assert ok, shown
    assert "Connected to Redis" in shown
    assert "✓" in shown
    # editing the URL makes the result stale
    type_into(page, qtbot, {"RELAYDESK_REDIS_URL": "redis://127.0.0.1:1/0"})
    assert page.checks["redis"].result.isHidden()


def test_redis_check_on_a_closed_port_says_what_failed(console: Console,
                                                       qtbot: QtBot) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    page = settings_page(console, qtbot)
    type_into(page, qtbot, {"RELAYDESK_REDIS_URL": f"redis://127.0.0.1:{port}/0"})
    ok, shown = run_check(page, qtbot, "redis")
    assert not ok
    assert f"Could not connect to 127.0.0.1:{port}" in shown
    assert "✗" in shown


def test_database_check_on_the_default_sqlite(console: Console, qtbot: QtBot,
                                              isolated_env: Path) -> None:
    page = settings_page(console, qtbot)
    ok, shown = run_check(page, qtbot, "database")
    assert ok, shown
    assert "SQLite" in shown
    assert str(isolated_env / "relaydesk.db") in shown


def test_provider_check_with_the_sandbox(console: Console, qtbot: QtBot) -> None:
    page = settings_page(console, qtbot)
    ok, shown = run_check(page, qtbot, "provider")
    assert ok, shown
    assert "sandbox" in shown.lower()
