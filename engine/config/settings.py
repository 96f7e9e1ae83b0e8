"""The one settings object every RelayDesk process loads the same way.

Precedence, highest first: explicit overrides (CLI options such as ``--data-dir``),
environment variables, an env file named explicitly (``--env-file`` or
``RELAYDESK_ENV_FILE``), the config file (``config.toml`` in the user config dir, or
``RELAYDESK_CONFIG_FILE``), built-in defaults. Every source uses the same names, the
environment-variable names, so an operator can move a value between them without
translating it.

Every name carries the ``RELAYDESK_`` prefix and no ``.env`` file is read from the working
directory: run inside another project's folder, RelayDesk must not pick up that project's
``DATABASE_URL``, ``REDIS_URL`` or ``SENTRY_DSN``. Config files and keyring entries written
under the old unprefixed names are migrated on first load (``LEGACY_NAMES``).

Secrets saved from the console (``engine.config.settings_store``) may live in the system keyring
instead of the config file. The config file then lists them in its ``[keyring]`` table
(``service = "..."``, ``secrets = ["RELAYDESK_TWILIO_AUTH_TOKEN", ...]``), and only those
are read from the keyring, after every other source: a process whose config names no
keyring secret never loads or asks the keyring, so loading stays fast and works headless.
"""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import phonenumbers
import platformdirs
from dotenv import dotenv_values
from filelock import FileLock

from engine.config.config_document import toml_document, write_private_file
from engine.config.masking import MASK, mask_secret, mask_url
from engine.domain.errors import OperatorError
from engine.domain.queues import ALL_QUEUES

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

log = logging.getLogger(__name__)

APP_NAME = "relaydesk"
KEYRING_SERVICE = APP_NAME  # for the default config file; others add their path
KEYRING_TABLE = "keyring"  # the config file's table naming the secrets kept in the keyring

Source = Literal["command line", "environment", "env file", "config", "keyring",
                 "default"]

Environment = Literal["development", "production"]
PROVIDERS = ("sandbox", "http", "twilio", "africastalking")


# Why the job inspector never runs in production, for the error, the CLI and the console.
INSPECTOR_REFUSED = (
    "the inspector records job payloads, SQL statements and provider calls, which is for "
    "development only. Set RELAYDESK_INSPECTOR to auto or off, or set "
    "RELAYDESK_ENV=development on a machine that sends no real campaigns.")


class SettingsError(OperatorError, ValueError):
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


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """Whole seconds from ``90``, ``90s``, ``15m``, ``24h`` or ``30d``."""
    value = text.strip().lower()
    unit = value[-1:] if value[-1:] in _DURATION_UNITS else "s"
    number = value[:-1] if value[-1:] in _DURATION_UNITS else value
    try:
        seconds = round(float(number) * _DURATION_UNITS[unit])
    except ValueError:
        raise ValueError("write it as a number with s, m, h or d, e.g. 90s, 15m, 24h or "
                         "30d") from None
    if seconds <= 0:
        raise ValueError("must be more than zero, e.g. 24h")
    return seconds


@dataclass(frozen=True)
class WaitThresholds:
    """How long a job may wait in its queue before it counts as a long wait."""

    default_s: float
    per_queue: tuple[tuple[str, float], ...] = ()

    def for_queue(self, queue: str) -> float:
        return dict(self.per_queue).get(queue, self.default_s)

    def __str__(self) -> str:
        parts = [f"{self.default_s:g}"] + [f"{q}={s:g}" for q, s in self.per_queue]
        return ",".join(parts)


def parse_wait_thresholds(text: str) -> WaitThresholds:
    """``60`` or ``60,bulk_messages=600``: seconds for every queue, then overrides."""
    default: float | None = None
    per_queue: list[tuple[str, float]] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, sep, seconds_text = part.rpartition("=")
        seconds = float(parse_duration(seconds_text))
        if not sep:
            default = seconds
        elif name.strip() in ALL_QUEUES:
            per_queue.append((name.strip(), seconds))
        else:
            raise ValueError(f"unknown queue {name.strip()!r}; queues are "
                             f"{', '.join(ALL_QUEUES)} (e.g. 60,bulk_messages=600)")
    if default is None:
        raise ValueError("start with the seconds for every queue, e.g. 60 or "
                         "60,bulk_messages=600")
    return WaitThresholds(default, tuple(per_queue))


def _reject_control_characters(text: str, allowed: frozenset[str] = frozenset()) -> str:
    for position, char in enumerate(text, 1):
        if char in _CONTROL_CHARACTERS and char not in allowed:
            # Never the value itself: it may be a token.
            raise ValueError(f"contains a control character (such as a line break or a NUL) "
                             f"at position {position}: enter it again without it")
    return text


def _optional_str(text: str) -> str | None:
    return _reject_control_characters(text.strip()) or None


def _body_template(text: str) -> str | None:
    return _reject_control_characters(text.strip(), _BODY_WHITESPACE) or None


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


InspectorSwitch = Literal["auto", "on", "off"]


def _inspector_switch(text: str) -> InspectorSwitch:
    value = text.strip().lower()
    if value in ("auto", ""):
        return "auto"
    if value in ("on", "true", "yes", "1"):
        return "on"
    if value in ("off", "false", "no", "0"):
        return "off"
    raise ValueError("must be on, off or auto (auto: on in development, off in production)")


def _region(text: str) -> str:
    value = text.strip().upper()
    if value not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError("must be a two-letter country code such as KE, UG, TZ, NG or US")
    return value


def _currency_format(text: str) -> str:
    _reject_control_characters(text)
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


# A provider call must end well within the claim lease on its message
# (engine.store.delivery_state.CLAIM_LEASE_S, this plus a margin): a call still running when the
# lease ends could be sent a second time by the sweep.
MAX_PROVIDER_TIMEOUT_S = 30.0


def _provider_timeout(text: str) -> float:
    value = _positive_float(text)
    if value > MAX_PROVIDER_TIMEOUT_S:
        raise ValueError(
            f"must be at most {MAX_PROVIDER_TIMEOUT_S:g} seconds, e.g. 15: a longer call "
            "could outlast the claim on its message, which may then be sent twice")
    return value


def _path(text: str) -> Path:
    return Path(_reject_control_characters(text)).expanduser()


def _price(text: str) -> Decimal:
    """A non-negative decimal kept exact (``0.0079`` stays ``0.0079``): prices per segment
    are often fractions of the smallest coin."""
    try:
        value = Decimal(text.strip().replace(",", ""))
    except InvalidOperation:
        raise ValueError("must be a number such as 0.80 or 0.0079") from None
    if not value.is_finite() or value < 0:
        raise ValueError("must be zero or more, e.g. 0.80")
    return value


@dataclass(frozen=True)
class SettingField:
    name: str  # environment-variable name, used by every source
    attr: str
    parse: Callable[[str], Any]
    secret: bool = False
    url: bool = False
    header: bool = False  # "Name: value": only the name may be shown


_FIELDS: tuple[SettingField, ...] = (
    SettingField("RELAYDESK_DATA_DIR", "data_dir", _path),
    SettingField("RELAYDESK_ENV", "env", _environment),
    SettingField("RELAYDESK_INSPECTOR", "inspector", _inspector_switch),
    SettingField("RELAYDESK_INSPECTOR_MAX_AGE", "inspector_max_age_s", parse_duration),
    SettingField("RELAYDESK_INSPECTOR_MAX_ENTRIES", "inspector_max_entries", _positive_int),
    SettingField("RELAYDESK_REDIS_URL", "redis_url", _optional_str, url=True),
    SettingField("RELAYDESK_DATABASE_URL", "database_url", _optional_str, url=True),
    SettingField("RELAYDESK_SENTRY_DSN", "sentry_dsn", _optional_str, secret=True),
    SettingField("RELAYDESK_SENTRY_RELEASE", "sentry_release", _optional_str),
    SettingField("RELAYDESK_SENTRY_ENVIRONMENT", "sentry_environment", _optional_str),
    SettingField("RELAYDESK_SENTRY_SAMPLE_RATE", "sentry_sample_rate", _fraction),
    SettingField("RELAYDESK_SENTRY_TRACES_SAMPLE_RATE", "sentry_traces_sample_rate", _fraction),
    SettingField("RELAYDESK_DEFAULT_REGION", "default_region", _region),
    SettingField("RELAYDESK_CURRENCY_FORMAT", "currency_format", _currency_format),
    SettingField("RELAYDESK_PRICE_PER_SEGMENT", "price_per_segment", _price),
    SettingField("RELAYDESK_BULK_THRESHOLD", "bulk_threshold", _positive_int),
    SettingField("RELAYDESK_CHUNK_SIZE", "chunk_size", _positive_int),
    SettingField("RELAYDESK_PACING_INDIVIDUAL_S", "pacing_individual_s", _non_negative_float),
    SettingField("RELAYDESK_PACING_CHUNK_S", "pacing_chunk_s", _non_negative_float),
    SettingField("RELAYDESK_RATE_LIMIT", "rate_limit", parse_rate_limit),
    SettingField("RELAYDESK_MAX_ATTEMPTS", "max_attempts", _positive_int),
    SettingField("RELAYDESK_RETRY_BACKOFF", "retry_backoff_s", _non_negative_float),
    SettingField("RELAYDESK_RETRY_BACKOFF_MAX", "retry_backoff_max_s", _non_negative_float),
    SettingField("RELAYDESK_SEND_CONCURRENCY", "send_concurrency", _positive_int),
    SettingField("RELAYDESK_PROVIDER_TIMEOUT_S", "provider_timeout_s", _provider_timeout),
    SettingField("RELAYDESK_BREAKER_THRESHOLD", "breaker_threshold", _positive_int),
    SettingField("RELAYDESK_BREAKER_COOLDOWN_S", "breaker_cooldown_s", _non_negative_float),
    SettingField("RELAYDESK_WORKER_CONCURRENCY", "worker_concurrency", _positive_int),
    SettingField("RELAYDESK_WORKERS", "workers", _positive_int),
    SettingField("RELAYDESK_MIN_PROCESSES", "min_processes", _positive_int),
    SettingField("RELAYDESK_MAX_PROCESSES", "max_processes", _positive_int),
    SettingField("RELAYDESK_METRICS_KEEP_10S", "metrics_keep_10s_s", parse_duration),
    SettingField("RELAYDESK_METRICS_KEEP_MINUTES", "metrics_keep_minutes_s", parse_duration),
    SettingField("RELAYDESK_METRICS_KEEP_HOURS", "metrics_keep_hours_s", parse_duration),
    SettingField("RELAYDESK_LONG_WAIT", "long_wait", parse_wait_thresholds),
    SettingField("RELAYDESK_ALERT_WEBHOOK", "alert_webhook", _optional_str, secret=True),
    SettingField("RELAYDESK_ALERT_EMAIL", "alert_email", _optional_str),
    SettingField("RELAYDESK_SMTP_URL", "smtp_url", _optional_str, url=True),
    SettingField("RELAYDESK_SMS_PROVIDER", "sms_provider", _provider),
    SettingField("RELAYDESK_SMS_GATEWAY_URL", "sms_gateway_url", _optional_str, url=True),
    SettingField("RELAYDESK_SMS_HTTP_BODY_TEMPLATE", "sms_http_body_template", _body_template),
    SettingField("RELAYDESK_SMS_HTTP_AUTH_HEADER", "sms_http_auth_header", _optional_str,
                 secret=True, header=True),
    SettingField("RELAYDESK_TWILIO_ACCOUNT_SID", "twilio_account_sid", _optional_str),
    SettingField("RELAYDESK_TWILIO_AUTH_TOKEN", "twilio_auth_token", _optional_str, secret=True),
    SettingField("RELAYDESK_TWILIO_FROM", "twilio_from", _optional_str),
    SettingField("RELAYDESK_TWILIO_API_URL", "twilio_api_url", _optional_str, url=True),
    SettingField("RELAYDESK_AT_USERNAME", "at_username", _optional_str),
    SettingField("RELAYDESK_AT_API_KEY", "at_api_key", _optional_str, secret=True),
    SettingField("RELAYDESK_AT_SENDER_ID", "at_sender_id", _optional_str),
    SettingField("RELAYDESK_AT_API_URL", "at_api_url", _optional_str, url=True),
)


# Names the settings had before every one carried the RELAYDESK_ prefix. A config file or
# keyring entries written under them are migrated when first read; the environment and
# env files are never read under them (those are another program's names too).
LEGACY_NAMES: dict[str, str] = {
    old: "RELAYDESK_" + old for old in (
        "REDIS_URL", "DATABASE_URL", "SENTRY_DSN", "SENTRY_RELEASE", "SENTRY_ENVIRONMENT",
        "SENTRY_SAMPLE_RATE", "SENTRY_TRACES_SAMPLE_RATE", "SMS_PROVIDER", "SMS_GATEWAY_URL",
        "SMS_HTTP_BODY_TEMPLATE", "SMS_HTTP_AUTH_HEADER", "TWILIO_ACCOUNT_SID",
        "TWILIO_AUTH_TOKEN", "TWILIO_FROM", "TWILIO_API_URL", "AT_USERNAME", "AT_API_KEY",
        "AT_SENDER_ID", "AT_API_URL")
}
_OLD_NAME = {new: old for old, new in LEGACY_NAMES.items()}
ENV_FILE_VARIABLE = "RELAYDESK_ENV_FILE"

# Control characters have no place in a setting: a CR/LF in a header value would make the
# provider call fail with the header (and its token) in the exception text. A body template
# may span lines (JSON whitespace).
_CONTROL_CHARACTERS = {chr(c) for c in (*range(0x20), *range(0x7F, 0xA0))}
_BODY_WHITESPACE = frozenset({"\t", "\n", "\r"})

def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def default_config_file() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / "config.toml"


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    env: Environment = "production"
    # The job inspector (engine.monitoring.inspector) records jobs, SQL and provider calls;
    # it is for development only and refused in production.
    inspector: InspectorSwitch = "auto"
    inspector_max_age_s: int = 3600
    inspector_max_entries: int = 5000  # per kind: jobs, SQL statements, HTTP calls
    redis_url: str | None = None
    database_url: str | None = None
    sentry_dsn: str | None = None
    sentry_release: str | None = None
    sentry_environment: str | None = None
    sentry_sample_rate: float = 1.0
    sentry_traces_sample_rate: float = 0.0
    default_region: str = "KE"
    currency_format: str = "{amount}"
    # Price of one SMS segment in the currency of currency_format, for cost estimates.
    price_per_segment: Decimal = Decimal("0")
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
    min_processes: int = 2  # autoscaling bounds: fewest and most worker processes
    max_processes: int = 20
    # Metrics buckets of 10 s, 1 min and 1 h are kept this long (Redis memory stays flat).
    metrics_keep_10s_s: int = 3600
    metrics_keep_minutes_s: int = 86_400
    metrics_keep_hours_s: int = 30 * 86_400
    long_wait: WaitThresholds = WaitThresholds(60.0)  # Horizon's default threshold
    alert_webhook: str | None = None  # POSTed a JSON alert; often holds a token
    alert_email: str | None = None
    smtp_url: str | None = None  # smtp[s]://user:password@host:port for alert_email
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
    def inspector_on(self) -> bool:
        if self.inspector == "auto":
            return self.env == "development"
        return self.inspector == "on" and self.env == "development"

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "relaydesk.db"

    def __repr__(self) -> str:
        # The dataclass repr would show tokens and URL passwords in tracebacks and logs.
        shown = ", ".join(f"{f.attr}={masked_value(f, getattr(self, f.attr))!r}" for f in _FIELDS)
        return f"Settings({shown})"

    def describe(self) -> dict[str, str | None]:
        """Every setting by its environment name, with secrets masked, for display."""
        shown: dict[str, str | None] = {}
        for field in _FIELDS:
            value = masked_value(field, getattr(self, field.attr))
            shown[field.name] = None if value is None else str(value)
        return shown


def masked_value(field: SettingField, value: Any) -> Any:
    """The value itself, or for a secret or a URL its text with the secret part masked."""
    if value is None or not (field.secret or field.url):
        return value
    if field.header:
        name, sep, _ = str(value).partition(":")
        return f"{name.strip()}: {MASK}" if sep else MASK
    return mask_secret(str(value)) if field.secret else mask_url(str(value))


@dataclass(frozen=True)
class KeyringRef:
    """The config file's ``[keyring]`` table: which secrets live in the system keyring."""

    service: str
    names: tuple[str, ...]


@dataclass(frozen=True)
class ConfigFile:
    path: Path
    values: dict[str, str]  # the settings it sets, as text
    keyring: KeyringRef | None


def config_file_path(environ: Mapping[str, str] | None = None) -> Path:
    """The config file every process reads: ``RELAYDESK_CONFIG_FILE`` or the per-user one."""
    environ = os.environ if environ is None else environ
    return Path(environ.get("RELAYDESK_CONFIG_FILE") or default_config_file())


def keyring_service(config_file: Path) -> str:
    """The keyring service for a config file's secrets: ``relaydesk`` for the per-user
    file, ``relaydesk:<path>`` for any other, so two setups never share a token."""
    if config_file.expanduser().resolve() == default_config_file().resolve():
        return KEYRING_SERVICE
    return f"{KEYRING_SERVICE}:{config_file.expanduser().resolve()}"


def _keyring_ref(path: Path, table: object) -> KeyringRef:
    secret_names = {f.name for f in _FIELDS if f.secret}
    names = table.get("secrets", []) if isinstance(table, dict) else None
    service = table.get("service") if isinstance(table, dict) else None
    if (not isinstance(service, str) or not isinstance(names, list)
            or not set(names) <= secret_names):
        raise SettingsError(
            f"config file {path} has a [{KEYRING_TABLE}] table RelayDesk cannot read: it needs "
            f"service = \"...\" and secrets = [...] naming only "
            f"{', '.join(sorted(secret_names))}. Fix it, or save the settings again.")
    return KeyringRef(service, tuple(str(n) for n in names))


def _parse_config_text(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"config file {path} is not valid TOML: {exc}. "
                            "Fix or delete it.") from exc


def _has_legacy_names(data: dict[str, Any]) -> bool:
    table = data.get(KEYRING_TABLE)
    listed = table.get("secrets", []) if isinstance(table, dict) else []
    return any(name in LEGACY_NAMES for name in [*data, *listed] if isinstance(name, str))


def _with_new_names(data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The config document with the old unprefixed names renamed (a name set both ways
    keeps the new one's value), and the old names found."""
    data = dict(data)
    renamed = [name for name in data if name in LEGACY_NAMES]
    for old in renamed:
        value = data.pop(old)
        data.setdefault(LEGACY_NAMES[old], value)
    table = data.get(KEYRING_TABLE)
    if isinstance(table, dict) and isinstance(table.get("secrets"), list):
        renamed += [n for n in table["secrets"] if n in LEGACY_NAMES]
        listed = [LEGACY_NAMES.get(n, n) for n in table["secrets"]]
        data[KEYRING_TABLE] = {**data.pop(KEYRING_TABLE),  # tables go after plain keys
                               "secrets": list(dict.fromkeys(listed))}
    return data, list(dict.fromkeys(renamed))


def _migrate_legacy_names(path: Path) -> dict[str, Any]:
    """Rewrite a config file that uses the old unprefixed names under the new ones,
    atomically and under the same lock as a save. Returns the file's new content."""
    try:
        with FileLock(str(path.with_name(path.name + ".lock")), timeout=10):
            # Read again: another process may have just done it.
            data, renamed = _with_new_names(_parse_config_text(path))
            if renamed:
                write_private_file(path, toml_document(data))
    except OSError as exc:  # e.g. a config file an administrator keeps read-only
        data, renamed = _with_new_names(_parse_config_text(path))
        log.warning("config file %s uses the old names %s and could not be rewritten (%s): "
                    "they are read under their RELAYDESK_ names; rename them in the file",
                    path, ", ".join(renamed), type(exc).__name__)
        return data
    if renamed:
        log.warning("config file %s: renamed %s to RelayDesk's own names (RELAYDESK_...)",
                    path, ", ".join(renamed))
    return data


def read_config_file(path: Path) -> ConfigFile:
    if not path.exists():
        return ConfigFile(path, {}, None)
    data = _parse_config_text(path)
    if _has_legacy_names(data):
        data = _migrate_legacy_names(path)
    keyring = _keyring_ref(path, data.pop(KEYRING_TABLE)) if KEYRING_TABLE in data else None
    # Other tables belong to other readers (e.g. the console's own preferences); an unknown
    # top-level key is most likely a misspelt setting.
    data = {key: value for key, value in data.items() if not isinstance(value, dict)}
    known = {f.name for f in _FIELDS}
    unknown = sorted(set(data) - known)
    if unknown:
        raise SettingsError(f"config file {path} has unknown settings: {', '.join(unknown)}. "
                            f"Known settings: {', '.join(sorted(known))}.")
    return ConfigFile(path, {key: str(value) for key, value in data.items()}, keyring)


def env_file_path(overrides: Mapping[str, str] | None = None,
                  environ: Mapping[str, str] | None = None) -> Path | None:
    """The env file named by ``--env-file`` or RELAYDESK_ENV_FILE; there is no implicit one
    (a ``.env`` in the working directory belongs to whatever project is there)."""
    environ = os.environ if environ is None else environ
    named = (overrides or {}).get(ENV_FILE_VARIABLE) or environ.get(ENV_FILE_VARIABLE)
    return Path(named).expanduser() if named else None


def _read_env_file(path: Path | None) -> dict[str, str]:
    if path is None:
        return {}
    if not path.is_file():
        raise SettingsError(f"env file {path} (from {ENV_FILE_VARIABLE} or --env-file) does "
                            "not exist: fix the path, or unset it.")
    values = {k: v for k, v in dotenv_values(path).items() if v is not None}
    old = sorted(n for n in values if n in LEGACY_NAMES)
    if old:
        log.warning("env file %s sets %s, which RelayDesk no longer reads: rename them %s",
                    path, ", ".join(old), ", ".join(LEGACY_NAMES[n] for n in old))
    return values


def usable_keyring() -> KeyringBackend | None:
    """The system keyring backend, or None when there is none that can store anything
    (headless machines and CI usually have none: keyring then picks its ``fail`` backend,
    or a chainer with nothing to chain; ``null`` is how a user turns it off)."""
    try:
        import keyring
        from keyring.backends import chainer, fail, null

        backend = keyring.get_keyring()
        if isinstance(backend, fail.Keyring | null.Keyring):
            return None
        if isinstance(backend, chainer.ChainerBackend) and not backend.backends:
            return None
    except Exception as exc:  # a broken backend must not stop RelayDesk from starting
        log.warning("the system keyring cannot be used (%s: %s)", type(exc).__name__, exc)
        return None
    return backend


def _move_keyring_entry(backend: KeyringBackend, service: str, old: str,
                        new: str) -> str | None:
    """A secret an earlier version kept under its old name, now stored under the new one."""
    value = backend.get_password(service, old)
    if value is not None:
        backend.set_password(service, new, value)
        backend.delete_password(service, old)
        log.warning("system keyring: renamed %s to %s (service %r)", old, new, service)
    return value


def _keyring_layer(ref: KeyringRef | None, wanted: set[str]) -> dict[str, str]:
    """The listed secrets no other source set, read from the keyring; failures are warnings
    (the provider check then says what is missing)."""
    names = [n for n in (ref.names if ref else ()) if n in wanted]
    if not ref or not names:
        return {}
    backend = usable_keyring()
    if backend is None:
        log.warning("%s are kept in the system keyring, which this process cannot reach; "
                    "set them in the environment instead", ", ".join(names))
        return {}
    found: dict[str, str] = {}
    for name in names:
        try:
            value = backend.get_password(ref.service, name)
            if value is None and name in _OLD_NAME:
                value = _move_keyring_entry(backend, ref.service, _OLD_NAME[name], name)
        except Exception as exc:
            log.warning("could not read %s from the system keyring (%s)", name,
                        type(exc).__name__)
            continue
        if value is None:
            log.warning("%s is listed as kept in the system keyring (service %r) but is not "
                        "there; enter it again in Settings", name, ref.service)
        else:
            found[name] = value
    return found


def raw_values(
    overrides: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    read_keyring: bool = True,
) -> dict[str, tuple[str, Source]]:
    """Each setting some source sets: its text and where it came from (highest source
    wins). Without ``read_keyring`` a keyring secret is reported with an empty text."""
    environ = os.environ if environ is None else environ
    config = read_config_file(config_file_path(environ))
    layers: list[tuple[Source, Mapping[str, str]]] = [
        ("command line", overrides or {}),
        ("environment", environ),
        ("env file", _read_env_file(env_file_path(overrides, environ))),
        ("config", config.values),
    ]
    found: dict[str, tuple[str, Source]] = {}
    for field in _FIELDS:
        for source, layer in layers:
            if field.name in layer:
                found[field.name] = (layer[field.name], source)
                break
    unset_secrets = {f.name for f in _FIELDS if f.secret and f.name not in found}
    if read_keyring:
        keyring_values = _keyring_layer(config.keyring, unset_secrets)
    else:
        listed = config.keyring.names if config.keyring else ()
        keyring_values = {n: "" for n in listed if n in unset_secrets}
    for name, value in keyring_values.items():
        found[name] = (value, "keyring")
    return found


def _describe_source(source: Source, environ: Mapping[str, str]) -> str:
    if source == "config":
        return f"config file {config_file_path(environ)}"
    if source == "env file":
        return f"env file {env_file_path(None, environ)}"
    return "system keyring" if source == "keyring" else source


def _named_value(field: SettingField, raw: str) -> str:
    """How an error names a setting: with its value, but a secret's never, a URL's masked."""
    if field.secret:
        return field.name
    return f"{field.name}={mask_url(raw) if field.url else raw!r}"


def load_settings(
    overrides: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Load settings from every source; raise SettingsError naming the bad value's source."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    sources: dict[str, Source] = {}
    found = raw_values(overrides, environ)
    for field in _FIELDS:
        if field.name not in found:
            continue
        raw, source = found[field.name]
        sources[field.name] = source
        try:
            values[field.attr] = field.parse(raw)
        except ValueError as exc:
            raise SettingsError(
                f"{_named_value(field, raw)} (from {_describe_source(source, environ)}) "
                f"is not valid: {exc}"
            ) from None
    values.setdefault("data_dir", default_data_dir())
    settings = Settings(**values)
    if settings.min_processes > settings.max_processes:
        where = {n: _describe_source(sources.get(n, "default"), environ)
                 for n in ("RELAYDESK_MIN_PROCESSES", "RELAYDESK_MAX_PROCESSES")}
        raise SettingsError(
            f"RELAYDESK_MIN_PROCESSES={settings.min_processes} (from "
            f"{where['RELAYDESK_MIN_PROCESSES']}) is more than RELAYDESK_MAX_PROCESSES="
            f"{settings.max_processes} (from {where['RELAYDESK_MAX_PROCESSES']}): lower the "
            "minimum or raise the maximum.")
    if settings.inspector == "on" and settings.env == "production":
        raise SettingsError(
            f"RELAYDESK_INSPECTOR=on (from "
            f"{_describe_source(sources['RELAYDESK_INSPECTOR'], environ)}) cannot be used with "
            f"RELAYDESK_ENV=production (from "
            f"{_describe_source(sources.get('RELAYDESK_ENV', 'default'), environ)}): "
            f"{INSPECTOR_REFUSED}")
    return settings


def setting_names() -> list[str]:
    return [f.name for f in _FIELDS]


def setting_fields() -> tuple[SettingField, ...]:
    """Every setting's name, parser and secrecy, in the order RelayDesk lists them."""
    return _FIELDS


def default_settings_text() -> dict[str, str]:
    """Each setting's built-in default as the text a source would give ("" when unset)."""
    defaults = {f.name: f.default for f in fields(Settings)}
    shown: dict[str, str] = {}
    for field in _FIELDS:
        value = default_data_dir() if field.attr == "data_dir" else defaults[field.attr]
        shown[field.name] = "" if value is None else str(value)
    return shown


assert {f.attr for f in _FIELDS} == {f.name for f in fields(Settings)}, "settings table out of sync"
