from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from engine.config.masking import mask_secret, mask_url
from engine.config.settings import RateLimit, SettingsError, load_settings, parse_rate_limit


def write_config(tmp_path: Path, body: str) -> None:
    (tmp_path / "config.toml").write_text(body, encoding="utf-8")


def test_defaults_follow_the_original_system(isolated_env: Path) -> None:
    s = load_settings()
    assert s.data_dir == isolated_env
    assert (s.bulk_threshold, s.chunk_size) == (100, 50)
    assert (s.pacing_individual_s, s.pacing_chunk_s) == (2.0, 10.0)
    assert s.redis_url is None
    assert s.database_url is None
    assert s.default_region == "KE"
    assert s.env == "production"


def test_precedence_is_overrides_env_env_file_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(tmp_path, 'RELAYDESK_CHUNK_SIZE = 10\nRELAYDESK_BULK_THRESHOLD = 20\n'
                           'RELAYDESK_DEFAULT_REGION = "UG"\nRELAYDESK_ENV = "development"\n')
    env_file = tmp_path / "site.env"
    env_file.write_text("RELAYDESK_CHUNK_SIZE=11\nRELAYDESK_BULK_THRESHOLD=21\n"
                        "RELAYDESK_DEFAULT_REGION=TZ\n")
    monkeypatch.setenv("RELAYDESK_ENV_FILE", str(env_file))
    monkeypatch.setenv("RELAYDESK_CHUNK_SIZE", "12")
    monkeypatch.setenv("RELAYDESK_BULK_THRESHOLD", "22")
    s = load_settings({"RELAYDESK_CHUNK_SIZE": "13"})
    assert s.chunk_size == 13  # command line beats everything
    assert s.bulk_threshold == 22  # environment beats the env file
    assert s.default_region == "TZ"  # the env file beats the config file
    assert s.env == "development"  # config file beats the default


@pytest.mark.parametrize(("name", "value", "fragment"), [
    ("RELAYDESK_CHUNK_SIZE", "0", "positive"),
    ("RELAYDESK_PACING_CHUNK_S", "-1", "zero or more"),
    ("RELAYDESK_RATE_LIMIT", "20 per second", "e.g. 20/s"),
    ("RELAYDESK_DEFAULT_REGION", "XX", "two-letter"),
    ("RELAYDESK_ENV", "staging", "development or production"),
    ("RELAYDESK_SENTRY_SAMPLE_RATE", "2", "between 0 and 1"),
    ("RELAYDESK_CURRENCY_FORMAT", "KES", "{amount}"),
])
def test_bad_values_name_the_setting_and_source(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert name in str(info.value)
    assert "environment" in str(info.value)
    assert fragment in str(info.value)


def test_config_file_errors_are_clear(tmp_path: Path) -> None:
    write_config(tmp_path, "RELAYDESK_REDIS_URL = \n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings()
    write_config(tmp_path, 'REDIS_ULR = "redis://x"\n')
    with pytest.raises(SettingsError, match="unknown settings: REDIS_ULR"):
        load_settings()


def test_secrets_are_masked_in_describe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYDESK_SENTRY_DSN", "https://abcdef0123456789@o1.ingest.example/42")
    monkeypatch.setenv("RELAYDESK_REDIS_URL", "redis://:hunter2secret@10.0.0.5:6380/1")
    monkeypatch.setenv("RELAYDESK_DATABASE_URL", "postgresql://app:pgpass-secret@db/relaydesk")
    shown = load_settings().describe()
    text = repr(shown)
    for secret in ("abcdef0123456789", "hunter2secret", "pgpass-secret"):
        assert secret not in text
    assert shown["RELAYDESK_REDIS_URL"] == "redis://:****@10.0.0.5:6380/1"
    assert shown["RELAYDESK_DATABASE_URL"] == "postgresql://app:****@db/relaydesk"


def test_bad_secret_value_is_masked_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYDESK_SENTRY_SAMPLE_RATE", "x")
    with pytest.raises(SettingsError, match="RELAYDESK_SENTRY_SAMPLE_RATE"):
        load_settings()


def test_rate_limit_parsing() -> None:
    assert parse_rate_limit("20/s") == RateLimit(20, 1.0)
    assert parse_rate_limit("600/m").per_second == 10  # type: ignore[union-attr]
    assert parse_rate_limit("") is None
    assert str(parse_rate_limit("36000/h")) == "36000/h"
    with pytest.raises(ValueError, match="positive"):
        parse_rate_limit("0/s")


def test_mask_helpers() -> None:
    assert mask_secret("short") == "****"
    assert mask_secret("a-very-long-provider-token-1234") == "****1234"
    assert mask_url("redis://localhost:6379/0") == "redis://localhost:6379/0"
    assert mask_url("rediss://default:pw@[::1]:6379") == "rediss://default:****@[::1]:6379"


def test_cost_and_autoscaling_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings()
    assert (s.price_per_segment, s.min_processes, s.max_processes) == (Decimal(0), 2, 20)
    monkeypatch.setenv("RELAYDESK_PRICE_PER_SEGMENT", "0.0079")
    monkeypatch.setenv("RELAYDESK_MIN_PROCESSES", "4")
    monkeypatch.setenv("RELAYDESK_MAX_PROCESSES", "4")
    s = load_settings()
    assert s.price_per_segment == Decimal("0.0079")  # exact: no float rounding
    assert (s.min_processes, s.max_processes) == (4, 4)


@pytest.mark.parametrize("price", ["-1", "free", "nan", "inf"])
def test_price_must_be_a_non_negative_number(monkeypatch: pytest.MonkeyPatch, price: str) -> None:
    monkeypatch.setenv("RELAYDESK_PRICE_PER_SEGMENT", price)
    with pytest.raises(SettingsError, match="RELAYDESK_PRICE_PER_SEGMENT"):
        load_settings()


def test_min_processes_above_max_names_both_and_their_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(tmp_path, "RELAYDESK_MAX_PROCESSES = 3\n")
    monkeypatch.setenv("RELAYDESK_MIN_PROCESSES", "5")
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert "RELAYDESK_MIN_PROCESSES=5 (from environment)" in message
    assert "RELAYDESK_MAX_PROCESSES=3 (from config file" in message
    assert "lower the minimum or raise the maximum" in message


def test_settings_repr_masks_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYDESK_TWILIO_AUTH_TOKEN", "tw-token-0123456789abcdef")
    monkeypatch.setenv("RELAYDESK_SMS_GATEWAY_URL", "https://user:gw-password@gw.example/send")
    monkeypatch.setenv("RELAYDESK_DATABASE_URL", "postgresql://app:pgpass-secret@db/relaydesk")
    text = repr(load_settings())
    for secret in ("tw-token-0123456789ab", "gw-password", "pgpass-secret"):
        assert secret not in text
    assert "chunk_size=50" in text


def test_other_tables_in_the_config_file_are_left_to_their_readers(tmp_path: Path) -> None:
    write_config(tmp_path, 'RELAYDESK_CHUNK_SIZE = 10\n[desktop]\ntheme = "dark"\n')
    assert load_settings().chunk_size == 10
