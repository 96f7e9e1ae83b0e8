"""RelayDesk reads only its own settings: no other project's .env, generic variable names
or Celery variables; older config files and keyring entries are migrated, not rejected;
control characters never get into a setting; another application's database is left
alone."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import keyring
import keyring.core
import pytest
from keyring.backends import fail
from sqlalchemy import create_engine, inspect, text

from engine.config.settings import LEGACY_NAMES, SettingsError, load_settings
from engine.config.settings_store import validate
from engine.store.db import DatabaseError, database_url, open_database
from tests.support import MemoryKeyring, run_cli, write_contacts

FOREIGN_ENV = {
    "DATABASE_URL": "sqlite:///{cwd}/other-project.db",
    "REDIS_URL": "redis://127.0.0.1:1/0",
    "SENTRY_DSN": "http://foreignkey@127.0.0.1:1/1",
    "SMS_PROVIDER": "twilio",
    "TWILIO_AUTH_TOKEN": "another-projects-token",
}


@pytest.fixture(autouse=True)
def no_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keyring.core, "_keyring_backend", None)  # restored after the test
    keyring.set_keyring(fail.Keyring())


def test_a_dotenv_in_the_working_directory_changes_nothing() -> None:
    cwd = Path.cwd()
    lines = [f"{k}={v.format(cwd=cwd)}" for k, v in FOREIGN_ENV.items()]
    (cwd / ".env").write_text("\n".join([*lines, "RELAYDESK_CHUNK_SIZE=7"]) + "\n")
    s = load_settings()
    assert (s.database_url, s.redis_url, s.sentry_dsn) == (None, None, None)
    assert (s.sms_provider, s.twilio_auth_token, s.chunk_size) == ("sandbox", None, 50)


def test_generic_environment_names_are_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in FOREIGN_ENV.items():
        monkeypatch.setenv(name, value.format(cwd=Path.cwd()))
    s = load_settings()
    assert (s.database_url, s.redis_url, s.sentry_dsn, s.sms_provider) == (
        None, None, None, "sandbox")


def test_the_cli_in_another_projects_folder_keeps_to_its_own_database(
    isolated_env: Path, tmp_path: Path
) -> None:
    cwd = Path.cwd()
    lines = [f"{k}={v.format(cwd=cwd)}" for k, v in FOREIGN_ENV.items()]
    (cwd / ".env").write_text("\n".join(lines) + "\n")
    contacts = write_contacts(tmp_path / "c.csv", [
        ("Amina", "0712345678", "1000", "100", "2030-01-01", "")])
    result = run_cli("contacts", "import", str(contacts), env={"RELAYDESK_SENTRY_DSN": ""})
    assert result.returncode == 0, result.stderr
    assert not (cwd / "other-project.db").exists()
    assert (isolated_env / "relaydesk.db").exists()
    shown = json.loads(run_cli("settings", "--json").stdout)
    assert shown["RELAYDESK_DATABASE_URL"] is None
    assert "another-projects-token" not in json.dumps(shown)


def test_an_explicit_env_file_is_read(tmp_path: Path) -> None:
    env_file = tmp_path / "relaydesk.env"
    env_file.write_text("RELAYDESK_CHUNK_SIZE=7\nDATABASE_URL=sqlite:///elsewhere.db\n")
    result = run_cli("--env-file", str(env_file), "settings", "--json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["RELAYDESK_CHUNK_SIZE"] == "7"
    assert shown["RELAYDESK_DATABASE_URL"] is None  # the old name is not read...
    assert "RELAYDESK_DATABASE_URL" in result.stderr  # ...and the operator is told why
    missing = run_cli("--env-file", str(tmp_path / "nope.env"), "settings")
    assert missing.returncode != 0
    assert "nope.env" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_celery_environment_variables_cannot_redirect_the_broker(tmp_path: Path) -> None:
    """Celery prefers CELERY_BROKER_URL (and _READ/_WRITE) to its configuration."""
    probe = (
        "from engine.infra.celery_app import app\n"
        "from engine.infra.connections import celery_for\n"
        "celery_for('redis://127.0.0.1:6399/3')\n"
        "print(app.connection_for_write().host)\n"
        "print(app.connection_for_read().host)\n"
        "print(app.loader.__class__.__module__)\n")
    foreign = {"CELERY_BROKER_URL": "redis://10.9.9.9:6379/0",
               "CELERY_BROKER_READ_URL": "redis://10.9.9.8:6379/0",
               "CELERY_BROKER_WRITE_URL": "redis://10.9.9.7:6379/0",
               "CELERY_LOADER": "celery.loaders.default:Loader"}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            env={**os.environ, **foreign}, timeout=60, check=True)
    write_host, read_host, loader = result.stdout.split()
    assert write_host == read_host == "127.0.0.1:6399"
    assert loader == "celery.loaders.app"


def _write(path: Path, body: str) -> None:
    path.write_text(body, encoding="utf-8")
    path.chmod(0o644)  # as an older version or an editor may have left it


def test_a_config_file_with_the_old_names_is_migrated_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "config.toml"  # where isolated_env points RELAYDESK_CONFIG_FILE
    _write(config, 'SMS_PROVIDER = "twilio"\nTWILIO_ACCOUNT_SID = "AC1"\n'
                   'TWILIO_AUTH_TOKEN = "old-token-value"\nTWILIO_FROM = "+14155550100"\n'
                   'RELAYDESK_CHUNK_SIZE = 25\n'
                   'REDIS_URL = "redis://old:6379/0"\nRELAYDESK_REDIS_URL = "redis://new:6379/0"\n'
                   '[desktop]\ntheme = "dark"\n')
    with caplog.at_level(logging.WARNING, logger="engine.config.settings"):
        s = load_settings()
    assert (s.sms_provider, s.twilio_auth_token, s.chunk_size) == (
        "twilio", "old-token-value", 25)
    assert s.redis_url == "redis://new:6379/0"  # set both ways: the new name wins
    data = tomllib.loads(config.read_text(encoding="utf-8"))
    assert not set(data) & set(LEGACY_NAMES)
    assert data["RELAYDESK_TWILIO_FROM"] == "+14155550100"
    assert data["desktop"] == {"theme": "dark"}
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    notices = [r.getMessage() for r in caplog.records]
    assert len(notices) == 1
    assert "TWILIO_AUTH_TOKEN" in notices[0]
    assert "old-token-value" not in notices[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="engine.config.settings"):
        assert load_settings().twilio_auth_token == "old-token-value"
    assert not caplog.records


def test_a_config_file_that_cannot_be_rewritten_is_still_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "config.toml"
    _write(config, 'SMS_PROVIDER = "africastalking"\nAT_USERNAME = "sandbox"\n')
    (tmp_path / "config.toml.lock").mkdir()  # the lock cannot be taken: no rewrite
    with caplog.at_level(logging.WARNING, logger="engine.config.settings"):
        s = load_settings()
    assert (s.sms_provider, s.at_username) == ("africastalking", "sandbox")
    assert "SMS_PROVIDER" in config.read_text(encoding="utf-8")  # left as it was
    [notice] = [r.getMessage() for r in caplog.records]
    assert "could not be rewritten" in notice
    assert "AT_USERNAME" in notice

def test_keyring_entries_under_old_names_are_moved(tmp_path: Path) -> None:
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    config = tmp_path / "config.toml"
    _write(config, 'SMS_PROVIDER = "africastalking"\nAT_USERNAME = "sandbox"\n'
                   '[keyring]\nservice = "relaydesk-test"\nsecrets = ["AT_API_KEY"]\n')
    backend.set_password("relaydesk-test", "AT_API_KEY", "atsk_old_name_key")
    assert load_settings().at_api_key == "atsk_old_name_key"
    data = tomllib.loads(config.read_text(encoding="utf-8"))
    assert data["keyring"]["secrets"] == ["RELAYDESK_AT_API_KEY"]
    assert backend.get_password("relaydesk-test", "RELAYDESK_AT_API_KEY") == \
        "atsk_old_name_key"
    assert backend.get_password("relaydesk-test", "AT_API_KEY") is None


@pytest.mark.parametrize("value", ["X-Api-Key: abc\r\nX-Evil: secretpart42",
                                   "X-Api-Key: secretpart42\x00", "X-Api-Key: \x1bsecretpart42"])
def test_control_characters_in_a_header_are_refused_without_showing_it(
    tmp_path: Path, value: str
) -> None:
    # The config file, as a NUL cannot travel in an environment variable.
    (tmp_path / "config.toml").write_text(
        f"RELAYDESK_SMS_HTTP_AUTH_HEADER = {json.dumps(value)}\n", encoding="utf-8")
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert "RELAYDESK_SMS_HTTP_AUTH_HEADER" in message
    assert "control character" in message
    assert "secretpart42" not in message
    assert "abc" not in message
    errors = validate({"RELAYDESK_SMS_HTTP_AUTH_HEADER": value})
    assert "control character" in errors["RELAYDESK_SMS_HTTP_AUTH_HEADER"]
    assert "secretpart42" not in repr(errors)


def test_a_body_template_may_span_lines_but_urls_may_not(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELAYDESK_SMS_HTTP_BODY_TEMPLATE", '{\n\t"to": "{to}",\r\n "m": "{body}"}')
    assert load_settings().sms_http_body_template is not None
    monkeypatch.setenv("RELAYDESK_SMS_GATEWAY_URL", "https://gw.example/send\r\nHost: evil")
    with pytest.raises(SettingsError, match="control character"):
        load_settings()


def test_a_database_of_another_application_is_not_migrated(isolated_env: Path) -> None:
    isolated_env.mkdir(parents=True, exist_ok=True)
    settings = load_settings()
    with sqlite3.connect(settings.sqlite_path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)")
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    with pytest.raises(DatabaseError) as info:
        open_database(settings)
    assert "users" in str(info.value)
    assert "orders" in str(info.value)
    assert "RELAYDESK_DATABASE_URL" in str(info.value)
    engine = create_engine(database_url(settings))
    assert sorted(inspect(engine).get_table_names()) == ["orders", "users"]
    engine.dispose()


@pytest.mark.postgres
def test_a_postgresql_database_of_another_application_is_not_migrated(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELAYDESK_DATABASE_URL", postgres_url)
    settings = load_settings()
    engine = create_engine(database_url(settings))
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE invoices (id serial primary key)"))
    with pytest.raises(DatabaseError, match="invoices"):
        open_database(settings)
    assert inspect(engine).get_table_names() == ["invoices"]
    engine.dispose()


def test_relaydesk_settings_shows_no_header_value_or_query_secret() -> None:
    env = {"RELAYDESK_SMS_HTTP_AUTH_HEADER": "Authorization: Bearer tok-0123456789abcdefWXYZ",
           "RELAYDESK_SMS_GATEWAY_URL": "https://gw.example/send?api_key=qs-secret-777&x=1"}
    result = run_cli("settings", env=env)
    assert result.returncode == 0, result.stderr
    assert "Authorization: ****" in result.stdout
    for secret in ("tok-0123456789abcdef", "WXYZ", "qs-secret-777"):
        assert secret not in result.stdout
