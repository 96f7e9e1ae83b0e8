"""The one settings object every RelayDesk process loads the same way.

Precedence, highest first: explicit overrides (CLI options such as ``--data-dir``),
environment variables, a ``.env`` file in the working directory, the config file
(``config.toml`` in the user config dir, or ``RELAYDESK_CONFIG_FILE``), built-in defaults.
Every source uses the same names, the environment-variable names, so an operator
can move a value between them without translating it.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import phonenumbers
import platformdirs
from dotenv import dotenv_values

from engine.secrets import mask_secret, mask_url

APP_NAME = "relaydesk"

Environment = Literal["development", "production"]
PROVIDERS = ("sandbox", "http", "twilio", "africastalking")


class SettingsError(ValueError):
    """A setting has a value RelayDesk cannot use; the message says which and why."""


@dataclass(frozen=True)
class RateLimit:
    """A global send rate such as ``20/s``, stored as messages per second."""

    count: int
    period_s: float

    @property
    def per_second(self) -> float:
        return self.count / self.period_s

    def __str__(self) -> str:
        unit = {1.0: "s", 60.0: "m", 3600.0: "h"}.get(self.period_s)
        return f"{self.count}/{unit}" if unit else f"{self.count}/{self.period_s:g}s"


_PERIODS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0,
            "h": 3600.0, "hour": 3600.0}


def parse_rate_limit(text: str) -> RateLimit | None:
    """Parse ``N/s``, ``N/m`` or ``N/h``; an empty string means no limit."""
    text = text.strip().lower()
    if not text:
        return None
    count_text, sep, unit = text.partition("/")
    if not sep or unit not in _PERIODS:
        raise ValueError("write it as a count per unit, e.g. 20/s, 600/m or 10000/h")
    count = int(count_text)
    if count <= 0:
        raise ValueError("the count must be a positive whole number")
    return RateLimit(count, _PERIODS[unit])


def _optional_str(text: str) -> str | None:
    return text.strip() or None


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError("must be a positive whole number")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also rejects NaN
        raise ValueError("must be zero or more")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise ValueError("must be between 0 and 1")
    return value


def _environment(text: str) -> Environment:
    value = text.strip().lower()
    if value == "development":
        return "development"
    if value == "production":
        return "production"
    raise ValueError("must be development or production")


def _region(text: str) -> str:
    value = text.strip().upper()
    if value not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError("must be a two-letter country code such as KE, UG, TZ, NG or US")
    return value


def _currency_format(text: str) -> str:
    if "{amount}" not in text:
        raise ValueError("must contain {amount}, e.g. 'KES {amount}'")
    return text


def _provider(text: str) -> str:
    value = text.strip().lower()
    if value not in PROVIDERS:
        raise ValueError(f"must be one of {', '.join(PROVIDERS)}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError("must be more than zero")
    return value


def _path(text: str) -> Path:
    return Path(text).expanduser()


@dataclass(frozen=True)
class _Field:
    name: str  # environment-variable name, used by every source
    attr: str
    parse: Callable[[str], Any]
    secret: bool = False
    url: bool = False


_FIELDS: tuple[_Field, ...] = (
    _Field("RELAYDESK_DATA_DIR", "data_dir", _path),
    _Field("RELAYDESK_ENV", "env", _environment),
    _Field("REDIS_URL", "redis_url", _optional_str, url=True),
    _Field("DATABASE_URL", "database_url", _optional_str, url=True),
    _Field("SENTRY_DSN", "sentry_dsn", _optional_str, secret=True),
    _Field("SENTRY_RELEASE", "sentry_release", _optional_str),
    _Field("SENTRY_ENVIRONMENT", "sentry_environment", _optional_str),
    _Field("SENTRY_SAMPLE_RATE", "sentry_sample_rate", _fraction),
    _Field("SENTRY_TRACES_SAMPLE_RATE", "sentry_traces_sample_rate", _fraction),
    _Field("RELAYDESK_DEFAULT_REGION", "default_region", _region),
    _Field("RELAYDESK_CURRENCY_FORMAT", "currency_format", _currency_format),
    _Field("RELAYDESK_BULK_THRESHOLD", "bulk_threshold", _positive_int),
    _Field("RELAYDESK_CHUNK_SIZE", "chunk_size", _positive_int),
    _Field("RELAYDESK_PACING_INDIVIDUAL_S", "pacing_individual_s", _non_negative_float),
    _Field("RELAYDESK_PACING_CHUNK_S", "pacing_chunk_s", _non_negative_float),
    _Field("RELAYDESK_RATE_LIMIT", "rate_limit", parse_rate_limit),
    _Field("RELAYDESK_MAX_ATTEMPTS", "max_attempts", _positive_int),
    _Field("RELAYDESK_RETRY_BACKOFF", "retry_backoff_s", _non_negative_float),
    _Field("RELAYDESK_RETRY_BACKOFF_MAX", "retry_backoff_max_s", _non_negative_float),
    _Field("RELAYDESK_SEND_CONCURRENCY", "send_concurrency", _positive_int),
    _Field("RELAYDESK_PROVIDER_TIMEOUT_S", "provider_timeout_s", _positive_float),
    _Field("RELAYDESK_BREAKER_THRESHOLD", "breaker_threshold", _positive_int),
    _Field("RELAYDESK_BREAKER_COOLDOWN_S", "breaker_cooldown_s", _non_negative_float),
    _Field("RELAYDESK_WORKER_CONCURRENCY", "worker_concurrency", _positive_int),
    _Field("RELAYDESK_WORKERS", "workers", _positive_int),
    _Field("SMS_PROVIDER", "sms_provider", _provider),
    _Field("SMS_GATEWAY_URL", "sms_gateway_url", _optional_str),
    _Field("SMS_HTTP_BODY_TEMPLATE", "sms_http_body_template", _optional_str),
    _Field("SMS_HTTP_AUTH_HEADER", "sms_http_auth_header", _optional_str, secret=True),
    _Field("TWILIO_ACCOUNT_SID", "twilio_account_sid", _optional_str),
    _Field("TWILIO_AUTH_TOKEN", "twilio_auth_token", _optional_str, secret=True),
    _Field("TWILIO_FROM", "twilio_from", _optional_str),
    _Field("TWILIO_API_URL", "twilio_api_url", _optional_str),
    _Field("AT_USERNAME", "at_username", _optional_str),
    _Field("AT_API_KEY", "at_api_key", _optional_str, secret=True),
    _Field("AT_SENDER_ID", "at_sender_id", _optional_str),
    _Field("AT_API_URL", "at_api_url", _optional_str),
)


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def default_config_file() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / "config.toml"


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    env: Environment = "production"
    redis_url: str | None = None
    database_url: str | None = None
    sentry_dsn: str | None = None
    sentry_release: str | None = None
    sentry_environment: str | None = None
    sentry_sample_rate: float = 1.0
    sentry_traces_sample_rate: float = 0.0
    default_region: str = "KE"
    currency_format: str = "{amount}"
    bulk_threshold: int = 100
    chunk_size: int = 50
    pacing_individual_s: float = 2.0
    pacing_chunk_s: float = 10.0
    rate_limit: RateLimit | None = None
    max_attempts: int = 3
    retry_backoff_s: float = 30.0
    retry_backoff_max_s: float = 3600.0
    send_concurrency: int = 8  # concurrent provider calls inside one chunk task
    provider_timeout_s: float = 15.0
    breaker_threshold: int = 20  # transient failures in a row that open the breaker
    breaker_cooldown_s: float = 30.0
    worker_concurrency: int = 2  # processes per worker
    workers: int = 1  # workers `relaydesk supervise` keeps running
    sms_provider: str = "sandbox"
    sms_gateway_url: str | None = None
    sms_http_body_template: str | None = None
    sms_http_auth_header: str | None = None
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_from: str | None = None
    twilio_api_url: str | None = None
    at_username: str | None = None
    at_api_key: str | None = None
    at_sender_id: str | None = None
    at_api_url: str | None = None

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "relaydesk.db"

    def describe(self) -> dict[str, str | None]:
        """Every setting by its environment name, with secrets masked, for display."""
        shown: dict[str, str | None] = {}
        for field in _FIELDS:
            value = getattr(self, field.attr)
            text = None if value is None else str(value)
            if text is not None and field.secret:
                text = mask_secret(text)
            elif text is not None and field.url:
                text = mask_url(text)
            shown[field.name] = text
        return shown


def _read_config_file(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"config file {path} is not valid TOML: {exc}. "
                            "Fix or delete it.") from exc
    known = {f.name for f in _FIELDS}
    unknown = sorted(set(data) - known)
    if unknown:
        raise SettingsError(f"config file {path} has unknown settings: {', '.join(unknown)}. "
                            f"Known settings: {', '.join(sorted(known))}.")
    return {key: str(value) for key, value in data.items()}


def _read_dotenv(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def load_settings(
    overrides: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Load settings from every source; raise SettingsError naming the bad value's source."""
    environ = os.environ if environ is None else environ
    config_file = Path(environ.get("RELAYDESK_CONFIG_FILE") or default_config_file())
    layers: list[tuple[str, Mapping[str, str]]] = [
        ("command line", overrides or {}),
        ("environment", environ),
        (".env file", _read_dotenv(Path.cwd() / ".env")),
        (f"config file {config_file}", _read_config_file(config_file)),
    ]
    values: dict[str, Any] = {}
    for field in _FIELDS:
        for source, layer in layers:
            if field.name in layer:
                raw = layer[field.name]
                try:
                    values[field.attr] = field.parse(raw)
                except ValueError as exc:
                    shown = mask_secret(raw) if field.secret else raw
                    raise SettingsError(
                        f"{field.name}={shown!r} (from {source}) is not valid: {exc}"
                    ) from None
                break
    values.setdefault("data_dir", default_data_dir())
    return Settings(**values)


def setting_names() -> list[str]:
    return [f.name for f in _FIELDS]


assert {f.attr for f in _FIELDS} == {f.name for f in fields(Settings)}, "settings table out of sync"
