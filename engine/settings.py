"""The one settings object every RelayDesk process loads the same way.

Precedence, highest first: explicit overrides (CLI options such as ``--data-dir``),
environment variables, a ``.env`` file in the working directory, the config file
(``config.toml`` in the user config dir, or ``RELAYDESK_CONFIG_FILE``), built-in defaults.
Every source uses the same names, the environment-variable names, so an operator
can move a value between them without translating it.

Secrets saved from the console (``engine.settings_store``) may live in the system keyring
instead of the config file. The config file then lists them in its ``[keyring]`` table
(``service = "..."``, ``secrets = ["RELAYDESK_TWILIO_AUTH_TOKEN", ...]``), and only those are read
from the keyring, after every other source: a process whose config names no keyring
secret never loads or asks the keyring, so loading stays fast and works headless.
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

from engine.queues import ALL_QUEUES
from engine.secrets import mask_secret, mask_url

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

log = logging.getLogger(__name__)

APP_NAME = "relaydesk"
KEYRING_SERVICE = APP_NAME  # for the default config file; others add their path
KEYRING_TABLE = "keyring"  # the config file's table naming the secrets kept in the keyring

Source = Literal["command line", "environment", ".env", "config", "keyring", "default"]

Environment = Literal["development", "production"]
PROVIDERS = ("sandbox", "http", "twilio", "africastalking")


# Why the job inspector never runs in production, for the error, the CLI and the console.
INSPECTOR_REFUSED = (
    "the inspector records job payloads, SQL statements and provider calls, which is for "
    "development only. Set RELAYDESK_INSPECTOR to auto or off, or set "
    "RELAYDESK_ENV=development on a machine that sends no real campaigns.")


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
    SettingField("RELAYDESK_PROVIDER_TIMEOUT_S", "provider_timeout_s", _positive_float),
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
    SettingField("RELAYDESK_SMS_HTTP_BODY_TEMPLATE", "sms_http_body_template", _optional_str),
    SettingField("RELAYDESK_SMS_HTTP_AUTH_HEADER", "sms_http_auth_header", _optional_str,
                 secret=True),
    SettingField("RELAYDESK_TWILIO_ACCOUNT_SID", "twilio_account_sid", _optional_str),
    SettingField("RELAYDESK_TWILIO_AUTH_TOKEN", "twilio_auth_token", _optional_str, secret=True),
    SettingField("RELAYDESK_TWILIO_FROM", "twilio_from", _optional_str),
    SettingField("RELAYDESK_TWILIO_API_URL", "twilio_api_url", _optional_str, url=True),
    SettingField("RELAYDESK_AT_USERNAME", "at_username", _optional_str),
    SettingField("RELAYDESK_AT_API_KEY", "at_api_key", _optional_str, secret=True),
    SettingField("RELAYDESK_AT_SENDER_ID", "at_sender_id", _optional_str),
    SettingField("RELAYDESK_AT_API_URL", "at_api_url", _optional_str, url=True),
)


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def default_config_file() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / "config.toml"


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    env: Environment = "production"
    # The job inspector (engine.inspector) records jobs, SQL and provider calls; it is for
    # development only and refused in production.
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


def read_config_file(path: Path) -> ConfigFile:
    if not path.exists():
        return ConfigFile(path, {}, None)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"config file {path} is not valid TOML: {exc}. "
                            "Fix or delete it.") from exc
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


def _read_dotenv(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    return {k: v for k, v in dotenv_values(path).items() if v is not None}


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
        (".env", _read_dotenv(Path.cwd() / ".env")),
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
    if source == "keyring":
        return "system keyring"
    return ".env file" if source == ".env" else source


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
            shown = mask_secret(raw) if field.secret else raw
            raise SettingsError(
                f"{field.name}={shown!r} (from {_describe_source(source, environ)}) "
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
