from __future__ import annotations

import json
import logging
import os
import stat
import tomllib
from pathlib import Path

import keyring
import keyring.core
import pytest
from click.testing import CliRunner
from keyring.backends import chainer, fail
from keyring.errors import KeyringError

from engine.cli.main import cli
from engine.config import settings_store
from engine.config.settings import (
    GROUPS,
    PROVIDERS,
    SettingsError,
    keyring_service,
    load_settings,
    setting_names,
    usable_keyring,
)
from engine.config.settings_store import (
    SettingsValidationError,
    editable_fields,
    preview_settings,
    save,
    validate,
)
from tests.support import MemoryKeyring

TOKEN = "twilio-token-0123456789abcdef"
AT_KEY = "atsk_abcdefghijklmnopqrstuvwxyz"


class BrokenKeyring(MemoryKeyring):
    """A keyring that is there but fails, as a locked or crashed secret service does."""

    def get_password(self, service: str, username: str) -> str | None:
        raise KeyringError("the collection is locked")

    def set_password(self, service: str, username: str, password: str) -> None:
        raise KeyringError("the collection is locked")


@pytest.fixture(autouse=True)
def no_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    """No system keyring (as in CI), and never the developer's real one."""
    monkeypatch.setattr(keyring.core, "_keyring_backend", None)  # restored after the test
    keyring.set_keyring(fail.Keyring())


@pytest.fixture
def memory_keyring() -> MemoryKeyring:
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    return backend  # no_keyring puts the previous backend back


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return tmp_path / "config.toml"  # where isolated_env points RELAYDESK_CONFIG_FILE


def read_toml(path: Path) -> dict[str, object]:
    return tomllib.loads(path.read_text(encoding="utf-8"))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- editable_fields ---------------------------------------------------------------------

def test_every_setting_is_described_for_the_form() -> None:
    fields = editable_fields()
    assert set(fields) == set(setting_names())
    assert [f.group for f in fields.values()] == sorted(
        (f.group for f in fields.values()), key=list(GROUPS).index)  # grouped, in order
    assert fields["RELAYDESK_SMS_PROVIDER"].kind == "choice"
    assert fields["RELAYDESK_SMS_PROVIDER"].choices == PROVIDERS
    assert fields["RELAYDESK_ENV"].choices == ("production", "development")
    assert "KE" in fields["RELAYDESK_DEFAULT_REGION"].choices
    assert fields["RELAYDESK_CHUNK_SIZE"].kind == "int"
    assert fields["RELAYDESK_SENTRY_SAMPLE_RATE"].maximum == 1
    assert fields["RELAYDESK_REDIS_URL"].kind == "url"
    for name in ("RELAYDESK_TWILIO_AUTH_TOKEN", "RELAYDESK_AT_API_KEY", "RELAYDESK_SENTRY_DSN",
                 "RELAYDESK_SMS_HTTP_AUTH_HEADER"):
        assert fields[name].secret
        assert fields[name].kind == "secret"
    assert fields["RELAYDESK_MAX_PROCESSES"].default == "20"
    assert all(f.label and f.help for f in fields.values())


def test_fields_show_value_and_source_but_never_a_secret(
    config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_path.write_text(f'RELAYDESK_CHUNK_SIZE = 25\nRELAYDESK_TWILIO_AUTH_TOKEN = "{TOKEN}"\n')
    Path("relaydesk.env").write_text("RELAYDESK_DEFAULT_REGION=UG\n")
    monkeypatch.setenv("RELAYDESK_ENV_FILE", "relaydesk.env")
    monkeypatch.setenv("RELAYDESK_REDIS_URL", "redis://:hunter2-secret@10.0.0.5:6379/0")
    fields = editable_fields()
    assert (fields["RELAYDESK_CHUNK_SIZE"].value, fields["RELAYDESK_CHUNK_SIZE"].source) == (
        "25", "config")
    assert (fields["RELAYDESK_DEFAULT_REGION"].value,
            fields["RELAYDESK_DEFAULT_REGION"].source) == ("UG", "env file")
    assert fields["RELAYDESK_REDIS_URL"].value == "redis://:****@10.0.0.5:6379/0"
    assert fields["RELAYDESK_REDIS_URL"].source == "environment"
    token = fields["RELAYDESK_TWILIO_AUTH_TOKEN"]
    assert (token.value, token.is_set, token.source) == ("", True, "config")
    bulk = fields["RELAYDESK_BULK_THRESHOLD"]
    assert (bulk.value, bulk.is_set, bulk.source) == ("100", False, "default")
    assert TOKEN not in repr(fields)
    assert "hunter2-secret" not in repr(fields)


# --- validate ----------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "value", "fragments"), [
    ("RELAYDESK_CHUNK_SIZE", "0", ["Chunk size", "positive whole number", "'0'"]),
    ("RELAYDESK_CHUNK_SIZE", "fifty", ["whole number", "e.g. 50"]),
    ("RELAYDESK_PACING_CHUNK_S", "-1", ["zero or more"]),
    ("RELAYDESK_PROVIDER_TIMEOUT_S", "soon", ["must be a number", "e.g. 15"]),
    ("RELAYDESK_RATE_LIMIT", "20 per second", ["e.g. 20/s"]),
    ("RELAYDESK_RATE_LIMIT", "x/s", ["e.g. 20/s"]),
    ("RELAYDESK_DEFAULT_REGION", "XX", ["two-letter"]),
    ("RELAYDESK_ENV", "staging", ["development or production"]),
    ("RELAYDESK_SENTRY_SAMPLE_RATE", "2", ["between 0 and 1"]),
    ("RELAYDESK_CURRENCY_FORMAT", "KES", ["{amount}"]),
    ("RELAYDESK_PRICE_PER_SEGMENT", "-0.5", ["zero or more"]),
    ("RELAYDESK_PRICE_PER_SEGMENT", "cheap", ["number such as 0.80"]),
    ("RELAYDESK_SMS_PROVIDER", "nexmo", ["sandbox, http, twilio, africastalking"]),
    ("RELAYDESK_REDIS_URL", "localhost:6379", ["redis://"]),
    ("RELAYDESK_DATABASE_URL", "mysql://u:p@h/db", ["PostgreSQL"]),
    ("RELAYDESK_DATABASE_URL", "not a url", ["postgresql://user:password@host/dbname"]),
    ("RELAYDESK_SMS_GATEWAY_URL", "ftp://gw", ["https://"]),
    ("RELAYDESK_SENTRY_DSN", "not-a-dsn", ["Client Keys"]),
    ("RELAYDESK_SMS_HTTP_BODY_TEMPLATE", '{"to": {to}', ["must be JSON"]),
    ("RELAYDESK_SMS_HTTP_AUTH_HEADER", "Bearer abc", ["Name: value"]),
])
def test_bad_values_get_a_message_saying_what_to_do(
    name: str, value: str, fragments: list[str]
) -> None:
    errors = validate({name: value})
    assert list(errors) == [name]
    for fragment in fragments:
        assert fragment in errors[name]


def test_good_values_and_empty_ones_pass() -> None:
    assert validate({}) == {}
    assert validate({
        "RELAYDESK_CHUNK_SIZE": "25", "RELAYDESK_RATE_LIMIT": "600/m",
        "RELAYDESK_PRICE_PER_SEGMENT": "0.0079",
        "RELAYDESK_REDIS_URL": "rediss://:pw@redis.example:6380/0",
        "RELAYDESK_DATABASE_URL": "postgres://app:pw@db/relaydesk",
        "RELAYDESK_SENTRY_DSN": "https://k@o1.ingest.example/4",
        "RELAYDESK_SMS_HTTP_AUTH_HEADER": "Authorization: Bearer abc",
        "RELAYDESK_BULK_THRESHOLD": "", "RELAYDESK_TWILIO_AUTH_TOKEN": "",
    }) == {}


def test_secret_values_are_not_echoed_in_messages() -> None:
    errors = validate({"RELAYDESK_SMS_HTTP_AUTH_HEADER": "s3cr3t-no-colon",
                       "RELAYDESK_SENTRY_DSN": "s3cr3t-dsn", "RELAYDESK_REDIS_URL": "http://:s3cr3t@h"})
    assert set(errors) == {"RELAYDESK_SMS_HTTP_AUTH_HEADER", "RELAYDESK_SENTRY_DSN",
                           "RELAYDESK_REDIS_URL"}
    assert "s3cr3t" not in repr(errors)


def test_unknown_settings_and_bad_clears_are_reported() -> None:
    errors = validate({"REDIS_ULR": "redis://x"}, clear=["RELAYDESK_CHUNK_SIZE"])
    assert "not a RelayDesk setting" in errors["REDIS_ULR"]
    assert "not a secret" in errors["RELAYDESK_CHUNK_SIZE"]


def test_provider_needs_its_credentials_typed_now_or_saved_before() -> None:
    errors = validate({"RELAYDESK_SMS_PROVIDER": "twilio"})
    assert set(errors) == {"RELAYDESK_TWILIO_ACCOUNT_SID", "RELAYDESK_TWILIO_AUTH_TOKEN",
                           "RELAYDESK_TWILIO_FROM"}
    assert "Twilio" in errors["RELAYDESK_TWILIO_AUTH_TOKEN"]
    assert "choose another SMS provider" in errors["RELAYDESK_TWILIO_AUTH_TOKEN"]
    save({"RELAYDESK_TWILIO_AUTH_TOKEN": TOKEN})
    # the token saved before counts, though the form sends it empty ("unchanged")
    assert validate({"RELAYDESK_SMS_PROVIDER": "twilio", "RELAYDESK_TWILIO_ACCOUNT_SID": "AC123",
                     "RELAYDESK_TWILIO_FROM": "+14155550100",
                     "RELAYDESK_TWILIO_AUTH_TOKEN": ""}) == {}
    # ... unless it is cleared at the same time
    cleared = validate({"RELAYDESK_SMS_PROVIDER": "twilio", "RELAYDESK_TWILIO_ACCOUNT_SID": "AC123",
                        "RELAYDESK_TWILIO_FROM": "+14155550100"},
                       clear=["RELAYDESK_TWILIO_AUTH_TOKEN"])
    assert list(cleared) == ["RELAYDESK_TWILIO_AUTH_TOKEN"]
    assert list(validate({"RELAYDESK_SMS_PROVIDER": "africastalking",
                          "RELAYDESK_AT_USERNAME": "sandbox"})) == ["RELAYDESK_AT_API_KEY"]
    assert list(validate({"RELAYDESK_SMS_PROVIDER": "http"})) == ["RELAYDESK_SMS_GATEWAY_URL"]


def test_process_bounds_and_backoff_are_checked_together(config_path: Path) -> None:
    errors = validate({"RELAYDESK_MIN_PROCESSES": "8", "RELAYDESK_MAX_PROCESSES": "4"})
    assert list(errors) == ["RELAYDESK_MIN_PROCESSES"]
    assert "lower the fewest or raise the most" in errors["RELAYDESK_MIN_PROCESSES"]
    # against the saved minimum, the error goes next to the field being changed
    config_path.write_text("RELAYDESK_MIN_PROCESSES = 6\n")
    assert list(validate({"RELAYDESK_MAX_PROCESSES": "5"})) == ["RELAYDESK_MAX_PROCESSES"]
    assert validate({"RELAYDESK_MAX_PROCESSES": "6"}) == {}
    errors = validate({"RELAYDESK_RETRY_BACKOFF": "60", "RELAYDESK_RETRY_BACKOFF_MAX": "30"})
    assert "raise it" in errors["RELAYDESK_RETRY_BACKOFF_MAX"]


# --- save: the config file ---------------------------------------------------------------

def test_saved_values_are_what_every_process_then_loads(config_path: Path) -> None:
    result = save({"RELAYDESK_CHUNK_SIZE": "25", "RELAYDESK_RATE_LIMIT": "600/m",
                   "RELAYDESK_PRICE_PER_SEGMENT": "0.0079", "RELAYDESK_MAX_PROCESSES": "12",
                   "RELAYDESK_DEFAULT_REGION": "UG"})
    assert result.path == config_path
    assert set(result.written) == {"RELAYDESK_CHUNK_SIZE", "RELAYDESK_RATE_LIMIT",
                                   "RELAYDESK_PRICE_PER_SEGMENT", "RELAYDESK_MAX_PROCESSES",
                                   "RELAYDESK_DEFAULT_REGION"}
    s = load_settings()
    assert s.chunk_size == 25
    assert str(s.rate_limit) == "600/m"
    assert str(s.price_per_segment) == "0.0079"  # kept exactly, not as a float
    assert (s.min_processes, s.max_processes) == (2, 12)
    assert s.default_region == "UG"
    assert read_toml(config_path)["RELAYDESK_CHUNK_SIZE"] == 25  # an integer in the file
    assert mode(config_path) == 0o600


def test_empty_means_default_and_unchanged_values_are_not_pinned(config_path: Path) -> None:
    config_path.write_text("RELAYDESK_CHUNK_SIZE = 25\nRELAYDESK_BULK_THRESHOLD = 150\n")
    fields = editable_fields()
    form = {name: field.value for name, field in fields.items()}  # the whole form, as shown
    form["RELAYDESK_CHUNK_SIZE"] = ""
    result = save(form)
    assert result.removed == ("RELAYDESK_CHUNK_SIZE",)
    assert result.written == ()
    assert read_toml(config_path) == {"RELAYDESK_BULK_THRESHOLD": 150}
    assert load_settings().chunk_size == 50


def test_keys_save_was_not_given_are_kept(config_path: Path) -> None:
    config_path.write_text(
        '# my notes\nRELAYDESK_BULK_THRESHOLD = 150\nRELAYDESK_SENTRY_RELEASE = "1.2 \\"beta\\""\n'
        'RELAYDESK_PACING_CHUNK_S = 2.5\n'
        '[desktop]\ntheme = "dark"\nsize = {w = 800, h = 600}\nratio = 0.25\n'
        'seen = 2024-05-01T10:00:00Z\nflags = [1, 2]\nnote = "tab\\tand\\u007f"\n')
    before = read_toml(config_path)
    save({"RELAYDESK_CHUNK_SIZE": "30"}, config_path=config_path)
    assert read_toml(config_path) == {**before, "RELAYDESK_CHUNK_SIZE": 30}
    s = load_settings()
    assert (s.bulk_threshold, s.chunk_size, s.pacing_chunk_s) == (150, 30, 2.5)
    assert s.sentry_release == '1.2 "beta"'


def test_a_misspelt_setting_in_the_file_stops_save_untouched(config_path: Path) -> None:
    config_path.write_text('REDIS_ULR = "redis://x"\n')
    with pytest.raises(SettingsError, match="unknown settings: REDIS_ULR"):
        save({"RELAYDESK_CHUNK_SIZE": "30"})
    assert config_path.read_text() == 'REDIS_ULR = "redis://x"\n'


def test_save_creates_the_folder_and_the_file_private(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "config.toml"
    save({"RELAYDESK_CHUNK_SIZE": "30"}, config_path=path)
    assert mode(path) == 0o600
    path.chmod(0o644)  # e.g. written by hand
    save({"RELAYDESK_CHUNK_SIZE": "31"}, config_path=path)
    assert mode(path) == 0o600
    assert read_toml(path) == {"RELAYDESK_CHUNK_SIZE": 31}
    assert load_settings(environ={**os.environ, "RELAYDESK_CONFIG_FILE": str(path)}
                         ).chunk_size == 31


def test_save_replaces_the_file_atomically(
    config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save({"RELAYDESK_CHUNK_SIZE": "30"})
    inode = config_path.stat().st_ino
    save({"RELAYDESK_CHUNK_SIZE": "31"})
    assert config_path.stat().st_ino != inode  # a new file renamed over the old one

    def crash(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(settings_store.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        save({"RELAYDESK_CHUNK_SIZE": "32"})
    assert read_toml(config_path) == {"RELAYDESK_CHUNK_SIZE": 31}  # the old file, whole
    assert sorted(p.name for p in config_path.parent.iterdir()
                  if p.name.startswith(".config.toml")) == []  # no temp file left


def test_invalid_values_are_not_saved(config_path: Path) -> None:
    config_path.write_text("RELAYDESK_CHUNK_SIZE = 25\n")
    with pytest.raises(SettingsValidationError) as info:
        save({"RELAYDESK_CHUNK_SIZE": "0", "RELAYDESK_BULK_THRESHOLD": "300"})
    assert list(info.value.errors) == ["RELAYDESK_CHUNK_SIZE"]
    assert isinstance(info.value, SettingsError)
    assert read_toml(config_path) == {"RELAYDESK_CHUNK_SIZE": 25}


def test_values_hidden_by_the_environment_are_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RELAYDESK_CHUNK_SIZE", "40")
    result = save({"RELAYDESK_CHUNK_SIZE": "30"})
    assert result.shadowed == {"RELAYDESK_CHUNK_SIZE": "environment"}
    assert load_settings().chunk_size == 40  # the environment still wins


def test_a_masked_url_keeps_its_password(config_path: Path) -> None:
    save({"RELAYDESK_REDIS_URL": "redis://:hunter2-secret@10.0.0.5:6379/0"})
    shown = editable_fields()["RELAYDESK_REDIS_URL"].value
    assert shown == "redis://:****@10.0.0.5:6379/0"
    save({"RELAYDESK_REDIS_URL": shown.replace("/0", "/3")})  # the operator changed the db only
    assert load_settings().redis_url == "redis://:hunter2-secret@10.0.0.5:6379/3"
    # Pointed at another server, the password in force is not sent along: type it again.
    moved = shown.replace("10.0.0.5", "10.0.0.6")
    errors = validate({"RELAYDESK_REDIS_URL": moved})
    assert "type it again" in errors["RELAYDESK_REDIS_URL"]
    with pytest.raises(SettingsValidationError):
        save({"RELAYDESK_REDIS_URL": moved})
    assert load_settings().redis_url == "redis://:hunter2-secret@10.0.0.5:6379/3"


# --- save: secrets -----------------------------------------------------------------------

def test_without_a_keyring_secrets_go_to_the_private_file(config_path: Path) -> None:
    result = save({"RELAYDESK_TWILIO_AUTH_TOKEN": TOKEN, "RELAYDESK_CHUNK_SIZE": "30"})
    assert result.secrets == {"RELAYDESK_TWILIO_AUTH_TOKEN": "config file"}
    assert result.keyring_service is None
    assert read_toml(config_path)["RELAYDESK_TWILIO_AUTH_TOKEN"] == TOKEN
    assert mode(config_path) == 0o600
    assert load_settings().twilio_auth_token == TOKEN
    assert TOKEN not in repr(result)


def test_with_a_keyring_secrets_go_there_and_load_back(
    config_path: Path, memory_keyring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    # an earlier plain copy
    config_path.write_text(f'RELAYDESK_TWILIO_AUTH_TOKEN = "old-{TOKEN}"\n')
    result = save({"RELAYDESK_TWILIO_AUTH_TOKEN": TOKEN, "RELAYDESK_AT_API_KEY": AT_KEY})
    service = keyring_service(config_path)
    assert result.secrets == {"RELAYDESK_TWILIO_AUTH_TOKEN": "keyring",
                              "RELAYDESK_AT_API_KEY": "keyring"}
    assert result.keyring_service == service
    assert memory_keyring.items == {(service, "RELAYDESK_TWILIO_AUTH_TOKEN"): TOKEN,
                                    (service, "RELAYDESK_AT_API_KEY"): AT_KEY}
    text = config_path.read_text()
    assert TOKEN not in text
    assert AT_KEY not in text
    assert read_toml(config_path)["keyring"] == {
        "service": service, "secrets": ["RELAYDESK_TWILIO_AUTH_TOKEN", "RELAYDESK_AT_API_KEY"]}
    s = load_settings()
    assert (s.twilio_auth_token, s.at_api_key) == (TOKEN, AT_KEY)
    assert editable_fields()["RELAYDESK_TWILIO_AUTH_TOKEN"].source == "keyring"
    assert TOKEN not in repr(s)
    # the environment still wins over the keyring
    monkeypatch.setenv("RELAYDESK_TWILIO_AUTH_TOKEN", "from-the-environment")
    assert load_settings().twilio_auth_token == "from-the-environment"


def test_empty_secret_is_unchanged_and_clear_removes_it(
    config_path: Path, memory_keyring: MemoryKeyring
) -> None:
    save({"RELAYDESK_TWILIO_AUTH_TOKEN": TOKEN, "RELAYDESK_AT_API_KEY": AT_KEY})
    save({"RELAYDESK_TWILIO_AUTH_TOKEN": "", "RELAYDESK_CHUNK_SIZE": "30"})
    assert load_settings().twilio_auth_token == TOKEN
    result = save({}, clear=["RELAYDESK_TWILIO_AUTH_TOKEN"])
    assert result.cleared == ("RELAYDESK_TWILIO_AUTH_TOKEN",)
    assert (keyring_service(config_path), "RELAYDESK_TWILIO_AUTH_TOKEN") not in memory_keyring.items
    s = load_settings()
    assert (s.twilio_auth_token, s.at_api_key) == (None, AT_KEY)
    save({}, clear=["RELAYDESK_AT_API_KEY"])
    assert memory_keyring.items == {}
    assert read_toml(config_path) == {"RELAYDESK_CHUNK_SIZE": 30}  # no empty [keyring] left


def test_two_config_files_keep_their_secrets_apart(
    tmp_path: Path, memory_keyring: MemoryKeyring
) -> None:
    first, second = tmp_path / "a" / "config.toml", tmp_path / "b" / "config.toml"
    save({"RELAYDESK_AT_API_KEY": "key-for-a"}, config_path=first)
    save({"RELAYDESK_AT_API_KEY": "key-for-b"}, config_path=second)
    assert keyring_service(first) != keyring_service(second)
    for path, key in ((first, "key-for-a"), (second, "key-for-b")):
        env = {**os.environ, "RELAYDESK_CONFIG_FILE": str(path)}
        assert load_settings(environ=env).at_api_key == key


def test_a_failing_keyring_falls_back_and_never_stops_loading(
    config_path: Path, memory_keyring: MemoryKeyring, caplog: pytest.LogCaptureFixture
) -> None:
    save({"RELAYDESK_AT_API_KEY": AT_KEY})  # into the keyring
    keyring.set_keyring(BrokenKeyring())
    with caplog.at_level(logging.WARNING):
        result = save({"RELAYDESK_TWILIO_AUTH_TOKEN": TOKEN})
        assert result.secrets == {"RELAYDESK_TWILIO_AUTH_TOKEN": "config file"}
        s = load_settings()
    assert s.twilio_auth_token == TOKEN
    assert s.at_api_key is None  # could not be read: a warning, not a failure
    assert "RELAYDESK_AT_API_KEY" in caplog.text
    assert AT_KEY not in caplog.text
    assert TOKEN not in caplog.text
    keyring.set_keyring(fail.Keyring())  # now no keyring at all
    with caplog.at_level(logging.WARNING):
        assert load_settings().at_api_key is None
    assert "cannot reach" in caplog.text


def test_usable_keyring_detection(memory_keyring: MemoryKeyring) -> None:
    assert usable_keyring() is memory_keyring
    assert not MemoryKeyring.viable  # never picked by keyring's own detection
    keyring.set_keyring(fail.Keyring())
    assert usable_keyring() is None
    empty_chain = chainer.ChainerBackend()
    keyring.set_keyring(empty_chain)
    if not empty_chain.backends:  # as on a machine without any keyring service
        assert usable_keyring() is None


def test_the_settings_command_never_prints_secrets(
    config_path: Path, memory_keyring: MemoryKeyring
) -> None:
    # (no RELAYDESK_SENTRY_DSN here: the command would start Sentry in the test process)
    save({"RELAYDESK_TWILIO_AUTH_TOKEN": TOKEN,
          "RELAYDESK_SMS_HTTP_AUTH_HEADER": "X-Api-Key: abcdef0123456789"})
    keyring.set_keyring(fail.Keyring())
    save({"RELAYDESK_AT_API_KEY": AT_KEY,
          "RELAYDESK_DATABASE_URL": "postgresql://app:pg-secret-pw@db/relaydesk"})
    keyring.set_keyring(memory_keyring)
    assert load_settings().twilio_auth_token == TOKEN  # both sources are in force
    runner = CliRunner()
    for args in (["settings"], ["settings", "--json"]):
        result = runner.invoke(cli, args, catch_exceptions=False)
        assert result.exit_code == 0
        for secret in (TOKEN[:-4], AT_KEY[:-4], "abcdef0123456789", "pg-secret-pw"):
            assert secret not in result.output
    shown = json.loads(result.output)
    assert shown["RELAYDESK_TWILIO_AUTH_TOKEN"] == "****" + TOKEN[-4:]
    assert shown["RELAYDESK_DATABASE_URL"] == "postgresql://app:****@db/relaydesk"


def test_a_broken_keyring_table_is_a_clear_error(config_path: Path) -> None:
    config_path.write_text('[keyring]\nservice = "relaydesk"\nsecrets = ["RELAYDESK_CHUNK_SIZE"]\n')
    with pytest.raises(SettingsError, match=r"\[keyring\] table"):
        load_settings()


def test_preview_settings_is_the_form_in_force(config_path: Path) -> None:
    save({"RELAYDESK_TWILIO_AUTH_TOKEN": TOKEN, "RELAYDESK_CHUNK_SIZE": "30"})
    s = preview_settings({"RELAYDESK_SMS_PROVIDER": "twilio", "RELAYDESK_TWILIO_ACCOUNT_SID": "AC1",
                          "RELAYDESK_TWILIO_FROM": "+14155550100",
                          "RELAYDESK_TWILIO_AUTH_TOKEN": "", "RELAYDESK_CHUNK_SIZE": ""})
    assert (s.sms_provider, s.twilio_auth_token, s.chunk_size) == ("twilio", TOKEN, 50)
    assert preview_settings({}, clear=["RELAYDESK_TWILIO_AUTH_TOKEN"]).twilio_auth_token is None
    assert read_toml(config_path)["RELAYDESK_CHUNK_SIZE"] == 30  # nothing was saved
