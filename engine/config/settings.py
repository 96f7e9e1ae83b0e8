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

The ``Settings`` class below is the one table of settings: each field declares a setting's
type, built-in default, environment name, parser, section, label and help. The loader,
``relaydesk settings``, the config-file editor (``engine.config.settings_store``) and the
console's Settings page are all built from it (``SETTINGS``). To add a setting: add one entry
to ``Settings`` here, and document its name in the README's settings table.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import phonenumbers
import platformdirs
from dotenv import dotenv_values
from filelock import FileLock

from engine.config.config_document import toml_document, write_private_file
from engine.config.masking import MASK, mask_secret, mask_url
from engine.domain.delivery import DEFAULT_OPTIN_KEYWORDS, DEFAULT_OPTOUT_KEYWORDS, Keywords
from engine.domain.errors import OperatorError
from engine.domain.planning import PlanPolicy
from engine.domain.queues import ALL_QUEUES
from engine.domain.send_window import QuietHours, ScheduleError, SendWindow, system_timezone, zone

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


def _optional_path(text: str) -> Path | None:
    return _path(text.strip()) if text.strip() else None


def _optional_duration(text: str) -> int | None:
    """Whole seconds as parse_duration reads them; empty: None (no limit)."""
    return parse_duration(text) if text.strip() else None


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


# Checks the config-file editor makes beyond a setting's parser (Setting.check), for values
# a worker would only trip over later.

_HTTP_BODY_EXAMPLE = '{"to": "{to}", "message": "{body}", "reference": "{id}"}'
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _http_url_problem(text: str) -> str | None:
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be a web address starting with https:// or http://"
    return None


def _redis_url_problem(text: str) -> str | None:
    scheme = text.partition("://")[0].lower() if "://" in text else ""
    if scheme not in ("redis", "rediss", "unix"):
        return "must start with redis://, rediss:// (TLS) or unix://"
    return None


def _sentry_dsn_problem(text: str) -> str | None:
    from sentry_sdk.utils import BadDsn, Dsn

    try:
        Dsn(text)
    except (BadDsn, ValueError):
        return "is not valid: copy the DSN from the Sentry project's Client Keys page"
    return None


def _auth_header_problem(text: str) -> str | None:
    header, sep, value = text.partition(":")
    if not sep or not value.strip() or not _HEADER_NAME.fullmatch(header.strip()):
        return "must be written Name: value, e.g. Authorization: Bearer <token>"
    return None


def _body_template_problem(text: str) -> str | None:
    sample = text
    for placeholder in ("{to}", "{body}", "{id}"):
        sample = sample.replace(placeholder, "x")
    try:
        json.loads(sample)
    except ValueError:
        return (f"must be JSON once {{to}}, {{body}} and {{id}} are filled in, e.g. "
                f"{_HTTP_BODY_EXAMPLE}")
    if "{to}" not in text or "{body}" not in text:
        return "must contain {to} and {body}"
    return None


def _database_url_problem(text: str) -> str | None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    for prefix in ("postgres://", "postgresql://"):
        if text.startswith(prefix):
            text = "postgresql+psycopg://" + text[len(prefix):]
    try:
        backend = make_url(text).get_backend_name()
    except (ArgumentError, ValueError):
        return "is not a database URL: write postgresql://user:password@host/dbname"
    if backend not in ("sqlite", "postgresql"):
        return "must be a PostgreSQL URL (postgresql://user:password@host/dbname) or SQLite"
    return None


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


QuietUrgent = Literal["wait", "send"]


def _timezone(text: str) -> str:
    if not text.strip():
        return system_timezone()
    try:
        zone(text)
    except ScheduleError as exc:
        raise ValueError(str(exc)) from None
    return text.strip()


def _quiet_hours(text: str) -> QuietHours | None:
    try:
        return QuietHours.parse(text)
    except ScheduleError as exc:
        raise ValueError(str(exc)) from None


def _quiet_urgent(text: str) -> QuietUrgent:
    value = text.strip().lower()
    if value not in ("wait", "send"):
        raise ValueError("write wait (urgent campaigns wait for the end of the quiet hours) "
                         "or send (they go out anyway)")
    return "send" if value == "send" else "wait"


def _optional_port(text: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError("must be a TCP port from 1 to 65535, or empty")
    return int(text)


def _keywords(text: str) -> Keywords:
    """Comma-separated words, compared whole and in any case (engine.domain.delivery)."""
    words = Keywords(dict.fromkeys(w.strip().upper() for w in text.split(",") if w.strip()))
    if any(len(w) > 32 or any(c.isspace() for c in w) for w in words):
        raise ValueError("write single words separated by commas, e.g. STOP,UNSUBSCRIBE")
    return words


def _callback_token(text: str) -> str | None:
    token = text.strip()
    if not token:
        return None
    if len(token) < 16 or not all(c.isalnum() or c in "-_" for c in token):
        raise ValueError("must be at least 16 letters, digits, - or _ (it is part of a URL "
                         "path); leave empty to let RelayDesk generate one")
    return token


def _public_url_problem(text: str) -> str | None:
    problem = _http_url_problem(text)
    if problem is None and text.strip() and ("?" in text or "#" in text):
        return "must be a base address without ? or #, e.g. https://relay.example.org"
    return problem


# --- the table ------------------------------------------------------------------------------

Kind = Literal["text", "int", "float", "choice", "url", "secret"]

# The Settings page's sections, in order, each with the note shown under its heading.
GROUPS: dict[str, str] = {
    "General": "Which kind of installation this is and where it keeps its files.",
    "Connections": "Redis holds the queues, pacing, rate-limit and metrics; the database "
                   "keeps every message and its delivery state. Leave both empty to use "
                   "RelayDesk's own Redis and a SQLite file in the data folder.",
    "Data kept": "How long settled messages stay in the database. Campaigns keep their "
                 "totals after their messages are deleted; a failed job waiting for review "
                 "and a message still sending or awaiting its report are never deleted.",
    "Provider": "Who delivers the messages, and what one SMS costs. Only the fields of the "
                "chosen provider are shown.",
    "Sending": "How campaigns are split into jobs and paced. The rate limit is shared by all "
               "workers on all machines.",
    "Schedule": "When messages may go out. Each campaign keeps the time zone and quiet hours "
                "it was created with, so every worker judges it alike.",
    "Reports and replies": "Where providers send delivery reports, replies and STOP. Twilio "
                           "signs its callbacks; Africa's Talking and the others use the "
                           "secret token in their URLs. Twilio messages are also looked "
                           "up when no report came; Africa's Talking has no such look-up, "
                           "so its reports arrive only by callback.",
    "Retries": "Temporary provider errors are retried with doubling waits; too many failures "
               "in a row pause sending for a cool-down.",
    "Workers": "The worker processes the console (and 'relaydesk supervise') starts on this "
               "computer.",
    "Regional": "How phone numbers without a country code and amounts are read and written.",
    "Metrics and alerts": "How long the dashboard's figures stay in Redis (memory stays flat "
                          "whatever the volume), and who hears about a queue that waits too "
                          "long.",
    "Monitoring (Sentry)": "Errors from the console and the workers go to Sentry when a DSN "
                           "is set.",
}


@dataclass(frozen=True)
class Setting:
    """How every part of RelayDesk reads, checks and shows one setting."""

    name: str  # the environment-variable name, used by every source
    parse: Callable[[str], Any]  # text -> value; its ValueError says what is wrong
    group: str  # a key of GROUPS
    label: str
    help: str
    kind: Kind = "text"  # the form's editor; secrets and URLs are masked wherever shown
    example: str = ""  # a sample value, e.g. for a placeholder
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    header: bool = False  # "Name: value": only the name may be shown
    providers: tuple[str, ...] = ()  # only these SMS providers use it (empty: every one)
    required_for: tuple[str, ...] = ()  # SMS providers that cannot send without it
    # The config-file editor's check beyond ``parse``, for values a worker would only trip
    # over later: what is wrong, or None.
    check: Callable[[str], str | None] | None = None
    attr: str = ""  # the Settings field; filled in from the class

    @property
    def secret(self) -> bool:
        return self.kind == "secret"

    @property
    def url(self) -> bool:
        return self.kind == "url"


_SETTING = "relaydesk.setting"  # the key of a Settings field's metadata holding its Setting


@dataclass(frozen=True)
class Settings:
    """Every setting RelayDesk reads. Each field is one setting: its type, its built-in
    default and, in its Setting, its environment name, parser, section, label and help."""

    # --- General -------------------------------------------------------------
    env: Environment = field(default="production", metadata={_SETTING: Setting(
        "RELAYDESK_ENV", _environment, "General", "Environment",
        "production for real campaigns; development for trying RelayDesk out.",
        kind="choice", choices=("production", "development"))})
    data_dir: Path = field(default_factory=default_data_dir, metadata={_SETTING: Setting(
        "RELAYDESK_DATA_DIR", _path, "General", "Data folder",
        "Where the database, logs and RelayDesk's own Redis keep their files.",
        example="~/relaydesk-data")})
    # The job inspector (engine.monitoring.inspector) records jobs, SQL and provider calls;
    # it is for development only and refused in production.
    inspector: InspectorSwitch = field(default="auto", metadata={_SETTING: Setting(
        "RELAYDESK_INSPECTOR", _inspector_switch, "General", "Job inspector",
        "Records recent jobs, SQL statements and provider calls for the Inspector page. "
        "auto: on in development, off in production (where it cannot be turned on).",
        kind="choice", choices=("auto", "on", "off"))})
    inspector_max_age_s: int = field(default=3600, metadata={_SETTING: Setting(
        "RELAYDESK_INSPECTOR_MAX_AGE", parse_duration, "General", "Inspector keeps entries for",
        "Older inspector entries are removed (seconds, or with s, m, h or d).",
        example="1h")})
    # Per kind: jobs, SQL statements, HTTP calls.
    inspector_max_entries: int = field(default=5000, metadata={_SETTING: Setting(
        "RELAYDESK_INSPECTOR_MAX_ENTRIES", _positive_int, "General", "Inspector entries kept",
        "The most jobs, SQL statements and provider calls kept, each.",
        kind="int", example="5000", minimum=1)})
    # --- Connections ---------------------------------------------------------
    redis_url: str | None = field(default=None, metadata={_SETTING: Setting(
        "RELAYDESK_REDIS_URL", _optional_str, "Connections", "Redis URL",
        "The broker and shared state. Leave empty to let RelayDesk run its own Redis.",
        kind="url", example="redis://:password@127.0.0.1:6379/0", check=_redis_url_problem)})
    database_url: str | None = field(default=None, metadata={_SETTING: Setting(
        "RELAYDESK_DATABASE_URL", _optional_str, "Connections", "Database URL",
        "Leave empty for the SQLite file in the data folder; use PostgreSQL when workers "
        "run on several machines.",
        kind="url", example="postgresql://user:password@db-host/relaydesk",
        check=_database_url_problem)})
    # --- Data kept -----------------------------------------------------------
    # Retention (engine.store.retention), run once a day by one worker. Empty by default:
    # an upgrade never deletes history on its own.
    keep_messages_s: int | None = field(default=None, metadata={_SETTING: Setting(
        "RELAYDESK_KEEP_MESSAGES", _optional_duration, "Data kept", "Keep settled messages for",
        "Sent messages with a final delivery status, cancelled and opted-out ones, and dead "
        "ones whose failed job was retried or forgotten, are deleted once a day this long "
        "after they settled, with their delivery reports (s, m, h or d, e.g. 180d). Empty: "
        "kept forever.",
        example="180d")})
    archive_dir: Path | None = field(default=None, metadata={_SETTING: Setting(
        "RELAYDESK_ARCHIVE_DIR", _optional_path, "Data kept", "Archive folder",
        "Where the daily prune first writes what it deletes, as relaydesk-prune-<UTC "
        "time>.jsonl.gz (compressed JSON lines). Empty: nothing is archived.",
        example="~/relaydesk-archive")})
    # --- Provider ------------------------------------------------------------
    sms_provider: str = field(default="sandbox", metadata={_SETTING: Setting(
        "RELAYDESK_SMS_PROVIDER", _provider, "Provider", "SMS provider",
        "Who delivers the messages. sandbox is RelayDesk's test gateway: nothing is sent.",
        kind="choice", choices=PROVIDERS)})
    sms_gateway_url: str | None = field(default=None, metadata={_SETTING: Setting(
        "RELAYDESK_SMS_GATEWAY_URL", _optional_str, "Provider", "Gateway URL",
        "The sandbox or generic HTTP gateway. With the sandbox, leave empty and RelayDesk "
        "runs it.",
        kind="url", example="https://sms.example.com/send", providers=("sandbox", "http"),
        required_for=("http",), check=_http_url_problem)})
    sms_http_body_template: str | None = field(default=None, metadata={_SETTING: Setting(
        "RELAYDESK_SMS_HTTP_BODY_TEMPLATE", _body_template, "Provider", "Request body",
        "Generic HTTP gateway: the JSON body, with {to}, {body} and {id} where the number, "
        "the text and the message's unique reference go.",
        example=_HTTP_BODY_EXAMPLE, providers=("http",), check=_body_template_problem)})
    sms_http_auth_header: str | None = field(default=None, metadata={_SETTING: Setting(
        "RELAYDESK_SMS_HTTP_AUTH_HEADER", _optional_str, "Provider", "Authentication header",
        "Generic HTTP gateway: a header sent with every request, written Name: value.",
        kind="secret", example="Authorization: Bearer <token>", header=True, providers=("http",),
        check=_auth_header_problem)})
    twilio_account_sid: str | None = field(default=None, metadata={_SETTING: Setting(
        "RELAYDESK_TWILIO_ACCOUNT_SID", _optional_str, "Provider", "Twilio account SID",
        "From the Twilio console.",
        example="AC0123…", providers=("twilio",), required_for=("twilio",))})
    twilio_auth_token: str | None = field(default=None, metadata={_SETTING: Setting(
        "RELAYDESK_TWILIO_AUTH_TOKEN", _optional_str, "Provider", "Twilio auth token",
        "From the Twilio console.",
        kind="secret", providers=("twilio",), required_for=("twilio",))})
    twilio_from: str | None = field(default=None, metadata={_SETTING: Setting(
        "RELAYDESK_TWILIO_FROM", _optional_str, "Provider", "Twilio sender",
        "A Twilio number in international form, or a Messaging Service SID (MG…).",
        example="+14155550100", providers=("twilio",), required_for=("twilio",))})
    twilio_api_url: str | None = field(default=None, metadata={_SETTING: Setting(
        "RELAYDESK_TWILIO_API_URL", _optional_str, "Provider", "Twilio API URL",
        "Leave empty for https://api.twilio.com.",
        kind="url", providers=("twilio",), check=_http_url_problem)})
    at_username: str | None = field(default=None, metadata={_SETTING: Setting(
        "RELAYDESK_AT_USERNAME", _optional_str, "Provider", "Africa's Talking username",
        "Your app's username; sandbox for their test environment.",
        example="sandbox", providers=("africastalking",), required_for=("africastalking",))})
    at_api_key: str | None = field(default=None, metadata={_SETTING: Setting(
        "RELAYDESK_AT_API_KEY", _optional_str, "Provider", "Africa's Talking API key",
        "From the Africa's Talking account.",
        kind="secret", providers=("africastalking",), required_for=("africastalking",))})
    at_sender_id: str | None = field(default=None, metadata={_SETTING: Setting(
        "RELAYDESK_AT_SENDER_ID", _optional_str, "Provider", "Africa's Talking sender ID",
        "A registered sender ID or short code; empty for the default.",
        example="RELAYDESK", providers=("africastalking",))})
    at_api_url: str | None = field(default=None, metadata={_SETTING: Setting(
        "RELAYDESK_AT_API_URL", _optional_str, "Provider", "Africa's Talking API URL",
        "Leave empty for https://api.africastalking.com.",
        kind="url", providers=("africastalking",), check=_http_url_problem)})
    provider_timeout_s: float = field(default=15.0, metadata={_SETTING: Setting(
        "RELAYDESK_PROVIDER_TIMEOUT_S", _provider_timeout, "Provider", "Provider timeout (s)",
        "Total time for one provider call (connecting and the whole answer) before it is "
        f"retried later; at most {MAX_PROVIDER_TIMEOUT_S:g} s.",
        kind="float", example="15", minimum=0.001, maximum=MAX_PROVIDER_TIMEOUT_S)})
    # Price of one SMS segment in the currency of currency_format, for cost estimates.
    price_per_segment: Decimal = field(default=Decimal("0"), metadata={_SETTING: Setting(
        "RELAYDESK_PRICE_PER_SEGMENT", _price, "Provider", "Price per SMS segment",
        "What one SMS segment costs, in the currency of the currency format; used for "
        "cost estimates. 0 shows no cost.",
        kind="float", example="0.80", minimum=0)})
    # --- Sending -------------------------------------------------------------
    bulk_threshold: int = field(default=100, metadata={_SETTING: Setting(
        "RELAYDESK_BULK_THRESHOLD", _positive_int, "Sending", "Bulk from (recipients)",
        "Campaigns with at least this many recipients are sent as one bulk job in chunks.",
        kind="int", example="100", minimum=1)})
    chunk_size: int = field(default=50, metadata={_SETTING: Setting(
        "RELAYDESK_CHUNK_SIZE", _positive_int, "Sending", "Chunk size",
        "Messages per bulk chunk.",
        kind="int", example="50", minimum=1)})
    pacing_individual_s: float = field(default=2.0, metadata={_SETTING: Setting(
        "RELAYDESK_PACING_INDIVIDUAL_S", _non_negative_float, "Sending",
        "Pause between messages (s)",
        "Seconds between the messages of a small campaign.",
        kind="float", example="2", minimum=0)})
    pacing_chunk_s: float = field(default=10.0, metadata={_SETTING: Setting(
        "RELAYDESK_PACING_CHUNK_S", _non_negative_float, "Sending", "Pause between chunks (s)",
        "Seconds between the chunks of a bulk campaign.",
        kind="float", example="10", minimum=0)})
    rate_limit: RateLimit | None = field(default=None, metadata={_SETTING: Setting(
        "RELAYDESK_RATE_LIMIT", parse_rate_limit, "Sending", "Rate limit",
        "Most messages sent by all workers together, as count/unit (s, m or h). Empty: no "
        "limit.",
        example="20/s")})
    # Concurrent provider calls inside one chunk task, and the size of its batched claims
    # (engine.pipeline.sender). 25 rather than 8: at 100 ms gateway latency and a 200/s
    # limit, 8 per job reached 92-93% of the limit, 25 reached 99% (benchmarks/throughput.py).
    send_concurrency: int = field(default=25, metadata={_SETTING: Setting(
        "RELAYDESK_SEND_CONCURRENCY", _positive_int, "Sending", "Concurrent sends per job",
        "Provider calls one job makes at once; it claims its messages in batches of this "
        "size.",
        kind="int", example="25", minimum=1)})
    # --- Schedule ------------------------------------------------------------
    timezone: str = field(default_factory=system_timezone, metadata={_SETTING: Setting(
        "RELAYDESK_TIMEZONE", _timezone, "Schedule", "Time zone",
        "The IANA time zone of send times, quiet hours and due dates (\"today\"); empty "
        "uses this computer's.",
        example="Africa/Nairobi")})
    quiet_hours: QuietHours | None = field(default=None, metadata={_SETTING: Setting(
        "RELAYDESK_QUIET_HOURS", _quiet_hours, "Schedule", "Quiet hours",
        "A daily window in which nothing is sent, as START-END in 24-hour time; sending "
        "waits for its end. Empty: none.",
        example="21:00-07:00")})
    quiet_hours_urgent: QuietUrgent = field(default="wait", metadata={_SETTING: Setting(
        "RELAYDESK_QUIET_HOURS_URGENT", _quiet_urgent, "Schedule", "Urgent in quiet hours",
        "wait: urgent campaigns wait for the end of the quiet hours too; send: they go out "
        "anyway.",
        kind="choice", example="wait", choices=("wait", "send"))})
    schedule_max_late_s: int = field(default=6 * 3600, metadata={_SETTING: Setting(
        "RELAYDESK_SCHEDULE_MAX_LATE", parse_duration, "Schedule", "Send late at most",
        "A scheduled campaign found this long past its time (the computer was off) is not "
        "sent; it waits for you to send it now or reschedule it (s, m, h or d).",
        example="6h")})
    # --- Reports and replies -------------------------------------------------
    receiver_port: int | None = field(default=None, metadata={_SETTING: Setting(
        "RELAYDESK_RECEIVER_PORT", _optional_port, "Reports and replies", "Receiver port",
        "The port 'relaydesk receiver' listens on for provider callbacks; 'relaydesk "
        "supervise' and the console run it when set. Empty: not run, except with the "
        "sandbox gateway RelayDesk runs itself (then on a free port).",
        kind="int", example="8026", minimum=1, maximum=65535)})
    public_url: str | None = field(default=None, metadata={_SETTING: Setting(
        "RELAYDESK_PUBLIC_URL", _optional_str, "Reports and replies", "Public URL",
        "The address providers reach the receiver at (a tunnel, a reverse proxy or a "
        "server); Twilio sends then carry it as their status callback. Empty: none.",
        kind="url", example="https://relay.example.org", check=_public_url_problem)})
    callback_token: str | None = field(default=None, metadata={_SETTING: Setting(
        "RELAYDESK_CALLBACK_TOKEN", _callback_token, "Reports and replies", "Callback token",
        "The secret part of the callback URLs of providers that do not sign their "
        "callbacks. Empty: generated once and kept in the data folder; on other machines "
        "set the same value.",
        kind="secret")})
    report_poll_s: int = field(default=120, metadata={_SETTING: Setting(
        "RELAYDESK_REPORT_POLL_S", parse_duration, "Reports and replies",
        "Look up Twilio messages after",
        "A Twilio message with no final report this long after sending is fetched from "
        "Twilio, with doubling waits, until final or expired (s, m, h or d).",
        example="120")})
    report_poll_rate: float = field(default=5.0, metadata={_SETTING: Setting(
        "RELAYDESK_REPORT_POLL_RATE", _positive_float, "Reports and replies",
        "Look-ups per second",
        "Most Twilio look-ups per second, on top of (never taken from) the send rate limit.",
        kind="float", example="5", minimum=0.01)})
    report_expiry_s: int = field(default=48 * 3600, metadata={_SETTING: Setting(
        "RELAYDESK_REPORT_EXPIRY", parse_duration, "Reports and replies",
        "Give up waiting for a report after",
        "A sent message with no final report after this long counts as expired (unknown); "
        "a report that comes later still counts (s, m, h or d).",
        example="48h")})
    optout_keywords: Keywords = field(default=DEFAULT_OPTOUT_KEYWORDS, metadata={
        _SETTING: Setting(
            "RELAYDESK_OPTOUT_KEYWORDS", _keywords, "Reports and replies", "Opt-out words",
            "A reply that is one of these words (any case, punctuation ignored) puts the "
            "number on the opt-out list.",
            example=",".join(DEFAULT_OPTOUT_KEYWORDS))})
    optin_keywords: Keywords = field(default=DEFAULT_OPTIN_KEYWORDS, metadata={
        _SETTING: Setting(
            "RELAYDESK_OPTIN_KEYWORDS", _keywords, "Reports and replies", "Opt-in words",
            "A reply that is one of these words takes the number off the opt-out list, "
            "unless you put it there yourself.",
            example=",".join(DEFAULT_OPTIN_KEYWORDS))})
    optout_reply: str | None = field(default=None, metadata={_SETTING: Setting(
        "RELAYDESK_OPTOUT_REPLY", _optional_str, "Reports and replies", "Opt-out confirmation",
        "Sent once to a number that opted out by reply. Empty: nothing is sent.",
        example="You will get no more messages from us. Reply START to undo.")})
    # --- Retries -------------------------------------------------------------
    max_attempts: int = field(default=3, metadata={_SETTING: Setting(
        "RELAYDESK_MAX_ATTEMPTS", _positive_int, "Retries", "Attempts per message",
        "Tries before a message with temporary errors goes to the failed jobs.",
        kind="int", example="3", minimum=1)})
    retry_backoff_s: float = field(default=30.0, metadata={_SETTING: Setting(
        "RELAYDESK_RETRY_BACKOFF", _non_negative_float, "Retries", "First retry after (s)",
        "Wait before the first retry; each next wait doubles.",
        kind="float", example="30", minimum=0)})
    retry_backoff_max_s: float = field(default=3600.0, metadata={_SETTING: Setting(
        "RELAYDESK_RETRY_BACKOFF_MAX", _non_negative_float, "Retries", "Longest retry wait (s)",
        "Cap on the doubling waits.",
        kind="float", example="3600", minimum=0)})
    # Transient failures in a row that open the breaker.
    breaker_threshold: int = field(default=20, metadata={_SETTING: Setting(
        "RELAYDESK_BREAKER_THRESHOLD", _positive_int, "Retries", "Pause after failures in a row",
        "Temporary provider failures in a row that pause sending for a cool-down.",
        kind="int", example="20", minimum=1)})
    breaker_cooldown_s: float = field(default=30.0, metadata={_SETTING: Setting(
        "RELAYDESK_BREAKER_COOLDOWN_S", _non_negative_float, "Retries", "Cool-down (s)",
        "How long sending pauses after those failures.",
        kind="float", example="30", minimum=0)})
    # --- Workers -------------------------------------------------------------
    # Workers `relaydesk supervise` keeps running.
    workers: int = field(default=1, metadata={_SETTING: Setting(
        "RELAYDESK_WORKERS", _positive_int, "Workers", "Workers",
        "Worker processes the console and supervise start.",
        kind="int", example="1", minimum=1)})
    worker_concurrency: int = field(default=2, metadata={_SETTING: Setting(
        "RELAYDESK_WORKER_CONCURRENCY", _positive_int, "Workers", "Processes per worker",
        "Jobs one worker runs at once.",
        kind="int", example="2", minimum=1)})
    # Autoscaling bounds: fewest and most worker processes.
    min_processes: int = field(default=2, metadata={_SETTING: Setting(
        "RELAYDESK_MIN_PROCESSES", _positive_int, "Workers", "Fewest processes",
        "Autoscaling keeps at least this many worker processes.",
        kind="int", example="2", minimum=1)})
    max_processes: int = field(default=20, metadata={_SETTING: Setting(
        "RELAYDESK_MAX_PROCESSES", _positive_int, "Workers", "Most processes",
        "Autoscaling starts at most this many worker processes.",
        kind="int", example="20", minimum=1)})
    # --- Regional ------------------------------------------------------------
    default_region: str = field(default="KE", metadata={_SETTING: Setting(
        "RELAYDESK_DEFAULT_REGION", _region, "Regional", "Default country",
        "Country of phone numbers written without a +country code.",
        kind="choice", example="KE", choices=tuple(sorted(phonenumbers.SUPPORTED_REGIONS)))})
    currency_format: str = field(default="{amount}", metadata={_SETTING: Setting(
        "RELAYDESK_CURRENCY_FORMAT", _currency_format, "Regional", "Currency format",
        "How amounts appear in messages and estimates; {amount} stands for the number.",
        example="KES {amount}")})
    # --- Metrics and alerts --------------------------------------------------
    # Metrics buckets of 10 s, 1 min and 1 h are kept this long (Redis memory stays flat).
    metrics_keep_10s_s: int = field(default=3600, metadata={_SETTING: Setting(
        "RELAYDESK_METRICS_KEEP_10S", parse_duration, "Metrics and alerts",
        "Keep 10-second figures",
        "How long the dashboard's finest figures stay in Redis (s, m, h or d).",
        example="1h")})
    metrics_keep_minutes_s: int = field(default=86_400, metadata={_SETTING: Setting(
        "RELAYDESK_METRICS_KEEP_MINUTES", parse_duration, "Metrics and alerts",
        "Keep per-minute figures",
        "How long per-minute figures stay in Redis (s, m, h or d).",
        example="24h")})
    metrics_keep_hours_s: int = field(default=30 * 86_400, metadata={_SETTING: Setting(
        "RELAYDESK_METRICS_KEEP_HOURS", parse_duration, "Metrics and alerts",
        "Keep hourly figures",
        "How long hourly figures stay in Redis (s, m, h or d).",
        example="30d")})
    # By default 60 s for every queue: Horizon's default threshold.
    long_wait: WaitThresholds = field(default=WaitThresholds(60.0), metadata={_SETTING: Setting(
        "RELAYDESK_LONG_WAIT", parse_wait_thresholds, "Metrics and alerts",
        "Long-wait alert after",
        "Seconds a job may wait in its queue before an alert, then per-queue overrides.",
        example="60,bulk_messages=600")})
    # POSTed a JSON alert; often holds a token.
    alert_webhook: str | None = field(default=None, metadata={_SETTING: Setting(
        "RELAYDESK_ALERT_WEBHOOK", _optional_str, "Metrics and alerts", "Alert webhook",
        "A URL that receives each alert as a JSON POST. Empty: no webhook.",
        kind="secret", example="https://hooks.example.com/services/...")})
    alert_email: str | None = field(default=None, metadata={_SETTING: Setting(
        "RELAYDESK_ALERT_EMAIL", _optional_str, "Metrics and alerts", "Alert e-mail to",
        "Who receives alerts by e-mail (needs the SMTP server below). Empty: no e-mail.",
        example="ops@example.org")})
    # smtp[s]://user:password@host:port for alert_email.
    smtp_url: str | None = field(default=None, metadata={_SETTING: Setting(
        "RELAYDESK_SMTP_URL", _optional_str, "Metrics and alerts", "SMTP server",
        "The mail server for alert e-mails: smtp:// (STARTTLS when offered) or smtps://.",
        kind="url", example="smtp://user:password@mail.example.org:587")})
    # --- Monitoring (Sentry) -------------------------------------------------
    sentry_dsn: str | None = field(default=None, metadata={_SETTING: Setting(
        "RELAYDESK_SENTRY_DSN", _optional_str, "Monitoring (Sentry)", "Sentry DSN",
        "Where errors are reported. Empty: no error reporting.",
        kind="secret", example="https://<key>@o0.ingest.sentry.io/<project>",
        check=_sentry_dsn_problem)})
    sentry_release: str | None = field(default=None, metadata={_SETTING: Setting(
        "RELAYDESK_SENTRY_RELEASE", _optional_str, "Monitoring (Sentry)", "Release",
        "Release name shown with each error.")})
    sentry_environment: str | None = field(default=None, metadata={_SETTING: Setting(
        "RELAYDESK_SENTRY_ENVIRONMENT", _optional_str, "Monitoring (Sentry)",
        "Sentry environment",
        "Environment name shown with each error; empty uses the RelayDesk environment.")})
    sentry_sample_rate: float = field(default=1.0, metadata={_SETTING: Setting(
        "RELAYDESK_SENTRY_SAMPLE_RATE", _fraction, "Monitoring (Sentry)", "Error sample rate",
        "Share of errors reported, from 0 to 1.",
        kind="float", example="1.0", minimum=0, maximum=1)})
    sentry_traces_sample_rate: float = field(default=0.0, metadata={_SETTING: Setting(
        "RELAYDESK_SENTRY_TRACES_SAMPLE_RATE", _fraction, "Monitoring (Sentry)",
        "Trace sample rate",
        "Share of operations traced for performance, from 0 to 1.",
        kind="float", example="0.0", minimum=0, maximum=1)})

    @property
    def inspector_on(self) -> bool:
        if self.inspector == "auto":
            return self.env == "development"
        return self.inspector == "on" and self.env == "development"

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "relaydesk.db"

    def plan_policy(self) -> PlanPolicy:
        """How the send planner routes, chunks and paces campaigns with these settings."""
        return PlanPolicy(
            bulk_threshold=self.bulk_threshold,
            chunk_size=self.chunk_size,
            pacing_individual_s=self.pacing_individual_s,
            pacing_chunk_s=self.pacing_chunk_s,
            rate_per_s=self.rate_limit.per_second if self.rate_limit else None,
        )

    def send_window(self, *, urgent: bool = False) -> SendWindow:
        """The time zone and quiet hours a campaign created now records; an urgent one has
        no quiet hours when RELAYDESK_QUIET_HOURS_URGENT is ``send``."""
        skip = urgent and self.quiet_hours_urgent == "send"
        return SendWindow(self.timezone, None if skip else self.quiet_hours)

    def __repr__(self) -> str:
        # The dataclass repr would show tokens and URL passwords in tracebacks and logs.
        shown = ", ".join(f"{s.attr}={masked_value(s, getattr(self, s.attr))!r}"
                          for s in SETTINGS)
        return f"Settings({shown})"

    def describe(self) -> dict[str, str | None]:
        """Every setting by its environment name, with secrets masked, for display."""
        shown: dict[str, str | None] = {}
        for setting in SETTINGS:
            value = masked_value(setting, getattr(self, setting.attr))
            shown[setting.name] = None if value is None else str(value)
        return shown


# Every setting, in the order the Settings page and `relaydesk settings` list them.
SETTINGS: tuple[Setting, ...] = tuple(replace(f.metadata[_SETTING], attr=f.name)
                                      for f in fields(Settings))


def masked_value(setting: Setting, value: Any) -> Any:
    """The value itself, or for a secret or a URL its text with the secret part masked."""
    if value is None or not (setting.secret or setting.url):
        return value
    if setting.header:
        name, sep, _ = str(value).partition(":")
        return f"{name.strip()}: {MASK}" if sep else MASK
    return mask_secret(str(value)) if setting.secret else mask_url(str(value))


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
    secret_names = {f.name for f in SETTINGS if f.secret}
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
    known = {f.name for f in SETTINGS}
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
    for setting in SETTINGS:
        for source, layer in layers:
            if setting.name in layer:
                found[setting.name] = (layer[setting.name], source)
                break
    unset_secrets = {f.name for f in SETTINGS if f.secret and f.name not in found}
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


def _named_value(setting: Setting, raw: str) -> str:
    """How an error names a setting: with its value, but a secret's never, a URL's masked."""
    if setting.secret:
        return setting.name
    return f"{setting.name}={mask_url(raw) if setting.url else raw!r}"


def load_settings(
    overrides: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Load settings from every source; raise SettingsError naming the bad value's source."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    sources: dict[str, Source] = {}
    found = raw_values(overrides, environ)
    for setting in SETTINGS:
        if setting.name not in found:
            continue
        raw, source = found[setting.name]
        sources[setting.name] = source
        try:
            values[setting.attr] = setting.parse(raw)
        except ValueError as exc:
            raise SettingsError(
                f"{_named_value(setting, raw)} (from {_describe_source(source, environ)}) "
                f"is not valid: {exc}"
            ) from None
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
    return [s.name for s in SETTINGS]


def default_settings_text() -> dict[str, str]:
    """Each setting's built-in default as the text a source would give ("" when unset)."""
    defaults = Settings()
    shown: dict[str, str] = {}
    for setting in SETTINGS:
        value = getattr(defaults, setting.attr)
        shown[setting.name] = "" if value is None else str(value)
    return shown
