"""Settings the console's Settings page edits: what to show, how to check, where to save.

- ``editable_fields()`` describes every setting for a form: label, group, kind, help, the
  value in force and where it comes from (secrets only say *whether* they are set).
- ``validate(values)`` checks what the operator typed with the same parsers every process
  uses, plus checks across settings; it answers setting name -> what to do.
- ``save(values)`` writes the config file every process reads (``config.toml`` or
  ``RELAYDESK_CONFIG_FILE``): atomically, mode 0600, keeping every key it was not given.
  Secrets go to the system keyring when there is one (the file's ``[keyring]`` table lists
  them) and into the 0600 file otherwise.

Values are the text the operator typed, keyed by environment-variable name. For a
non-secret, an empty text means "back to the default" (the key leaves the file). For a
secret, an empty text means "unchanged"; to remove a secret, name it in ``clear``. A URL
whose password is shown masked (``redis://:****@host``) keeps the password in force.
Integer settings are written as TOML integers, everything else as strings (so a price such
as ``0.0079`` is kept exactly). ``save`` rewrites the file, so comments in it are lost.
Values in the environment or an env file (``--env-file``) still win over the file: ``save``
reports
which of the saved values they hide.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tomllib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import phonenumbers
from filelock import FileLock

from engine.config.config_document import toml_document, write_private_file
from engine.config.masking import MASK, restore_masked_url, still_masked
from engine.config.settings import (
    INSPECTOR_REFUSED,
    KEYRING_TABLE,
    MAX_PROVIDER_TIMEOUT_S,
    PROVIDERS,
    SettingField,
    Settings,
    SettingsError,
    Source,
    config_file_path,
    default_settings_text,
    keyring_service,
    load_settings,
    masked_value,
    raw_values,
    setting_fields,
    usable_keyring,
)

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

log = logging.getLogger(__name__)

Kind = Literal["text", "int", "float", "choice", "url", "secret"]
SecretStore = Literal["keyring", "config file"]

GROUPS = ("General", "Connections", "Provider", "Sending", "Retries", "Workers", "Regional",
          "Metrics and alerts", "Monitoring (Sentry)")
_SHADOWING: tuple[Source, ...] = ("command line", "environment", "env file")


@dataclass(frozen=True)
class _Meta:
    label: str
    group: str
    kind: Kind
    help: str
    example: str = ""
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None


_HTTP_BODY_EXAMPLE = '{"to": "{to}", "message": "{body}", "reference": "{id}"}'

_META: dict[str, _Meta] = {
    "RELAYDESK_ENV": _Meta(
        "Environment", "General", "choice",
        "production for real campaigns; development for trying RelayDesk out.",
        choices=("production", "development")),
    "RELAYDESK_DATA_DIR": _Meta(
        "Data folder", "General", "text",
        "Where the database, logs and RelayDesk's own Redis keep their files.",
        "~/relaydesk-data"),
    "RELAYDESK_INSPECTOR": _Meta(
        "Job inspector", "General", "choice",
        "Records recent jobs, SQL statements and provider calls for the Inspector page. "
        "auto: on in development, off in production (where it cannot be turned on).",
        choices=("auto", "on", "off")),
    "RELAYDESK_INSPECTOR_MAX_AGE": _Meta(
        "Inspector keeps entries for", "General", "text",
        "Older inspector entries are removed (seconds, or with s, m, h or d).", "1h"),
    "RELAYDESK_INSPECTOR_MAX_ENTRIES": _Meta(
        "Inspector entries kept", "General", "int",
        "The most jobs, SQL statements and provider calls kept, each.", "5000",
        minimum=1),
    "RELAYDESK_REDIS_URL": _Meta(
        "Redis URL", "Connections", "url",
        "The broker and shared state. Leave empty to let RelayDesk run its own Redis.",
        "redis://:password@127.0.0.1:6379/0"),
    "RELAYDESK_DATABASE_URL": _Meta(
        "Database URL", "Connections", "url",
        "Leave empty for the SQLite file in the data folder; use PostgreSQL when workers "
        "run on several machines.", "postgresql://user:password@db-host/relaydesk"),
    "RELAYDESK_SMS_PROVIDER": _Meta(
        "SMS provider", "Provider", "choice",
        "Who delivers the messages. sandbox is RelayDesk's test gateway: nothing is sent.",
        choices=PROVIDERS),
    "RELAYDESK_SMS_GATEWAY_URL": _Meta(
        "Gateway URL", "Provider", "url",
        "The sandbox or generic HTTP gateway. With the sandbox, leave empty and RelayDesk "
        "runs it.", "https://sms.example.com/send"),
    "RELAYDESK_SMS_HTTP_BODY_TEMPLATE": _Meta(
        "Request body", "Provider", "text",
        "Generic HTTP gateway: the JSON body, with {to}, {body} and {id} where the number, "
        "the text and the message's unique reference go.", _HTTP_BODY_EXAMPLE),
    "RELAYDESK_SMS_HTTP_AUTH_HEADER": _Meta(
        "Authentication header", "Provider", "secret",
        "Generic HTTP gateway: a header sent with every request, written Name: value.",
        "Authorization: Bearer <token>"),
    "RELAYDESK_TWILIO_ACCOUNT_SID": _Meta(
        "Twilio account SID", "Provider", "text", "From the Twilio console.", "AC0123…"),
    "RELAYDESK_TWILIO_AUTH_TOKEN": _Meta(
        "Twilio auth token", "Provider", "secret", "From the Twilio console."),
    "RELAYDESK_TWILIO_FROM": _Meta(
        "Twilio sender", "Provider", "text",
        "A Twilio number in international form, or a Messaging Service SID (MG…).",
        "+14155550100"),
    "RELAYDESK_TWILIO_API_URL": _Meta(
        "Twilio API URL", "Provider", "url", "Leave empty for https://api.twilio.com."),
    "RELAYDESK_AT_USERNAME": _Meta(
        "Africa's Talking username", "Provider", "text",
        "Your app's username; sandbox for their test environment.", "sandbox"),
    "RELAYDESK_AT_API_KEY": _Meta(
        "Africa's Talking API key", "Provider", "secret", "From the Africa's Talking account."),
    "RELAYDESK_AT_SENDER_ID": _Meta(
        "Africa's Talking sender ID", "Provider", "text",
        "A registered sender ID or short code; empty for the default.", "RELAYDESK"),
    "RELAYDESK_AT_API_URL": _Meta(
        "Africa's Talking API URL", "Provider", "url",
        "Leave empty for https://api.africastalking.com."),
    "RELAYDESK_PROVIDER_TIMEOUT_S": _Meta(
        "Provider timeout (s)", "Provider", "float",
        "Total time for one provider call (connecting and the whole answer) before it is "
        f"retried later; at most {MAX_PROVIDER_TIMEOUT_S:g} s.", "15",
        minimum=0.001, maximum=MAX_PROVIDER_TIMEOUT_S),
    "RELAYDESK_PRICE_PER_SEGMENT": _Meta(
        "Price per SMS segment", "Provider", "float",
        "What one SMS segment costs, in the currency of the currency format; used for "
        "cost estimates. 0 shows no cost.", "0.80", minimum=0),
    "RELAYDESK_BULK_THRESHOLD": _Meta(
        "Bulk from (recipients)", "Sending", "int",
        "Campaigns with at least this many recipients are sent as one bulk job in chunks.",
        "100", minimum=1),
    "RELAYDESK_CHUNK_SIZE": _Meta(
        "Chunk size", "Sending", "int", "Messages per bulk chunk.", "50", minimum=1),
    "RELAYDESK_PACING_INDIVIDUAL_S": _Meta(
        "Pause between messages (s)", "Sending", "float",
        "Seconds between the messages of a small campaign.", "2", minimum=0),
    "RELAYDESK_PACING_CHUNK_S": _Meta(
        "Pause between chunks (s)", "Sending", "float",
        "Seconds between the chunks of a bulk campaign.", "10", minimum=0),
    "RELAYDESK_RATE_LIMIT": _Meta(
        "Rate limit", "Sending", "text",
        "Most messages sent by all workers together, as count/unit (s, m or h). Empty: no "
        "limit.", "20/s"),
    "RELAYDESK_SEND_CONCURRENCY": _Meta(
        "Concurrent sends per job", "Sending", "int",
        "Provider calls one job makes at once.", "8", minimum=1),
    "RELAYDESK_MAX_ATTEMPTS": _Meta(
        "Attempts per message", "Retries", "int",
        "Tries before a message with temporary errors goes to the failed jobs.", "3",
        minimum=1),
    "RELAYDESK_RETRY_BACKOFF": _Meta(
        "First retry after (s)", "Retries", "float",
        "Wait before the first retry; each next wait doubles.", "30", minimum=0),
    "RELAYDESK_RETRY_BACKOFF_MAX": _Meta(
        "Longest retry wait (s)", "Retries", "float", "Cap on the doubling waits.", "3600",
        minimum=0),
    "RELAYDESK_BREAKER_THRESHOLD": _Meta(
        "Pause after failures in a row", "Retries", "int",
        "Temporary provider failures in a row that pause sending for a cool-down.", "20",
        minimum=1),
    "RELAYDESK_BREAKER_COOLDOWN_S": _Meta(
        "Cool-down (s)", "Retries", "float", "How long sending pauses after those failures.",
        "30", minimum=0),
    "RELAYDESK_WORKERS": _Meta(
        "Workers", "Workers", "int", "Worker processes the console and supervise start.", "1",
        minimum=1),
    "RELAYDESK_WORKER_CONCURRENCY": _Meta(
        "Processes per worker", "Workers", "int", "Jobs one worker runs at once.", "2",
        minimum=1),
    "RELAYDESK_MIN_PROCESSES": _Meta(
        "Fewest processes", "Workers", "int",
        "Autoscaling keeps at least this many worker processes.", "2", minimum=1),
    "RELAYDESK_MAX_PROCESSES": _Meta(
        "Most processes", "Workers", "int",
        "Autoscaling starts at most this many worker processes.", "20", minimum=1),
    "RELAYDESK_DEFAULT_REGION": _Meta(
        "Default country", "Regional", "choice",
        "Country of phone numbers written without a +country code.", "KE",
        choices=tuple(sorted(phonenumbers.SUPPORTED_REGIONS))),
    "RELAYDESK_CURRENCY_FORMAT": _Meta(
        "Currency format", "Regional", "text",
        "How amounts appear in messages and estimates; {amount} stands for the number.",
        "KES {amount}"),
    "RELAYDESK_METRICS_KEEP_10S": _Meta(
        "Keep 10-second figures", "Metrics and alerts", "text",
        "How long the dashboard's finest figures stay in Redis (s, m, h or d).", "1h"),
    "RELAYDESK_METRICS_KEEP_MINUTES": _Meta(
        "Keep per-minute figures", "Metrics and alerts", "text",
        "How long per-minute figures stay in Redis (s, m, h or d).", "24h"),
    "RELAYDESK_METRICS_KEEP_HOURS": _Meta(
        "Keep hourly figures", "Metrics and alerts", "text",
        "How long hourly figures stay in Redis (s, m, h or d).", "30d"),
    "RELAYDESK_LONG_WAIT": _Meta(
        "Long-wait alert after", "Metrics and alerts", "text",
        "Seconds a job may wait in its queue before an alert, then per-queue overrides.",
        "60,bulk_messages=600"),
    "RELAYDESK_ALERT_WEBHOOK": _Meta(
        "Alert webhook", "Metrics and alerts", "secret",
        "A URL that receives each alert as a JSON POST. Empty: no webhook.",
        "https://hooks.example.com/services/..."),
    "RELAYDESK_ALERT_EMAIL": _Meta(
        "Alert e-mail to", "Metrics and alerts", "text",
        "Who receives alerts by e-mail (needs the SMTP server below). Empty: no e-mail.",
        "ops@example.org"),
    "RELAYDESK_SMTP_URL": _Meta(
        "SMTP server", "Metrics and alerts", "url",
        "The mail server for alert e-mails: smtp:// (STARTTLS when offered) or smtps://.",
        "smtp://user:password@mail.example.org:587"),
    "RELAYDESK_SENTRY_DSN": _Meta(
        "Sentry DSN", "Monitoring (Sentry)", "secret",
        "Where errors are reported. Empty: no error reporting.",
        "https://<key>@o0.ingest.sentry.io/<project>"),
    "RELAYDESK_SENTRY_RELEASE": _Meta(
        "Release", "Monitoring (Sentry)", "text", "Release name shown with each error."),
    "RELAYDESK_SENTRY_ENVIRONMENT": _Meta(
        "Sentry environment", "Monitoring (Sentry)", "text",
        "Environment name shown with each error; empty uses the RelayDesk environment."),
    "RELAYDESK_SENTRY_SAMPLE_RATE": _Meta(
        "Error sample rate", "Monitoring (Sentry)", "float",
        "Share of errors reported, from 0 to 1.", "1.0", minimum=0, maximum=1),
    "RELAYDESK_SENTRY_TRACES_SAMPLE_RATE": _Meta(
        "Trace sample rate", "Monitoring (Sentry)", "float",
        "Share of operations traced for performance, from 0 to 1.", "0.0", minimum=0,
        maximum=1),
}

_FIELDS = {f.name: f for f in setting_fields()}
assert set(_META) == set(_FIELDS), "settings_store metadata out of sync with settings"
assert all((_META[f.name].kind == "secret") == f.secret for f in _FIELDS.values())
assert {m.group for m in _META.values()} == set(GROUPS)

_REQUIRED_BY_PROVIDER = {
    "http": ("RELAYDESK_SMS_GATEWAY_URL",),
    "twilio": ("RELAYDESK_TWILIO_ACCOUNT_SID", "RELAYDESK_TWILIO_AUTH_TOKEN",
               "RELAYDESK_TWILIO_FROM"),
    "africastalking": ("RELAYDESK_AT_USERNAME", "RELAYDESK_AT_API_KEY"),
}
_PROVIDER_NAMES = {"http": "the generic HTTP gateway", "twilio": "Twilio",
                   "africastalking": "Africa's Talking"}


@dataclass(frozen=True)
class FieldInfo:
    """One setting as a form shows it. ``value`` never holds a secret: it is "" for
    secrets (see ``is_set``) and URLs show their password masked."""

    name: str  # the environment-variable name, the key for validate() and save()
    label: str
    group: str
    kind: Kind
    secret: bool
    help: str
    example: str  # a sample value, e.g. for a placeholder
    choices: tuple[str, ...]
    minimum: float | None
    maximum: float | None
    default: str  # the built-in default as text, "" when it is unset
    value: str  # the value in force as text
    is_set: bool  # a source other than the defaults sets it
    source: Source  # where the value in force comes from


@dataclass(frozen=True)
class SavedSettings:
    """What save() did. Holds names and places, never a value."""

    path: Path
    written: tuple[str, ...]  # settings whose value the file now holds anew
    removed: tuple[str, ...]  # settings taken out of the file: back to their default
    secrets: dict[str, SecretStore] = field(default_factory=dict)  # where each secret went
    cleared: tuple[str, ...] = ()  # secrets removed from the file and the keyring
    shadowed: dict[str, Source] = field(default_factory=dict)  # saved but overridden by
    keyring_service: str | None = None  # the keyring service holding this file's secrets


class SettingsValidationError(SettingsError):
    """save() was given values that do not pass validate(); ``errors`` has the details."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("settings not saved: " + " ".join(errors.values()))


def _environ(environ: Mapping[str, str] | None, config_path: Path | None) -> Mapping[str, str]:
    environ = os.environ if environ is None else environ
    if config_path is None:
        return environ
    return {**environ, "RELAYDESK_CONFIG_FILE": str(config_path)}


def _shown(name: str, raw: str) -> str:
    if _FIELDS[name].secret:
        return ""
    return str(masked_value(_FIELDS[name], raw) or "")


def editable_fields(environ: Mapping[str, str] | None = None,
                    config_path: Path | None = None) -> dict[str, FieldInfo]:
    """Every setting, grouped in GROUPS order, with the value in force and its source.
    Reads the environment, the env file and config file but never the keyring (no prompt,
    fast)."""
    env = _environ(environ, config_path)
    current = raw_values(environ=env, read_keyring=False)
    defaults = default_settings_text()
    infos: dict[str, FieldInfo] = {}
    for group in GROUPS:
        for name, meta in _META.items():
            if meta.group != group:
                continue
            raw, source = current.get(name, (defaults[name], "default"))
            infos[name] = FieldInfo(
                name=name, label=meta.label, group=group, kind=meta.kind,
                secret=_FIELDS[name].secret, help=meta.help, example=meta.example,
                choices=meta.choices, minimum=meta.minimum, maximum=meta.maximum,
                default=defaults[name], value=_shown(name, raw),
                is_set=source != "default", source=source)
    return infos


def preview_settings(values: Mapping[str, str], *, clear: Collection[str] = (),
                     environ: Mapping[str, str] | None = None,
                     config_path: Path | None = None) -> Settings:
    """The settings as they would be with the form's values in force (unsaved), e.g. for
    ``connection_checks.check_provider``. Same conventions as ``save``; reads secrets not
    typed on the form from their sources, the keyring included. Raises SettingsError for a
    value validate() would reject."""
    env = _environ(environ, config_path)
    current = raw_values(environ=env, read_keyring=False)
    defaults = default_settings_text()
    overrides: dict[str, str] = {}
    for name, typed in values.items():
        spec = _FIELDS.get(name)
        if spec is None or (spec.secret and not typed):
            continue
        text = typed
        if spec.url:
            text = restore_masked_url(text, current.get(name, ("", "default"))[0])
        overrides[name] = text if text.strip() else defaults[name]
    overrides.update({name: "" for name in clear if name in _FIELDS})
    return load_settings(overrides, env)


# --- validation --------------------------------------------------------------------------

_PYTHON_NUMBER_ERRORS = ("invalid literal", "could not convert")


def _parse_error(meta: _Meta, exc: Exception) -> str:
    reason = str(exc)
    if reason.startswith(_PYTHON_NUMBER_ERRORS) or not reason:
        if meta.kind == "int":
            reason = "must be a whole number"
        elif meta.kind == "float":
            reason = "must be a number"
        else:
            reason = "is not in a form RelayDesk can read"
        if meta.example:
            reason += f", e.g. {meta.example}"
    return reason


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


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")

# Checks beyond the loader's parsers, for values a worker would only trip over later.
_EXTRA_CHECKS: dict[str, Callable[[str], str | None]] = {
    "RELAYDESK_REDIS_URL": _redis_url_problem,
    "RELAYDESK_DATABASE_URL": _database_url_problem,
    "RELAYDESK_SMS_GATEWAY_URL": _http_url_problem,
    "RELAYDESK_TWILIO_API_URL": _http_url_problem,
    "RELAYDESK_AT_API_URL": _http_url_problem,
    "RELAYDESK_SENTRY_DSN": _sentry_dsn_problem,
    "RELAYDESK_SMS_HTTP_AUTH_HEADER": _auth_header_problem,
    "RELAYDESK_SMS_HTTP_BODY_TEMPLATE": _body_template_problem,
}


def _check_one(name: str, text: str) -> str | None:
    meta, spec = _META[name], _FIELDS[name]
    try:
        spec.parse(text)
    except (ValueError, ArithmeticError) as exc:
        reason = _parse_error(meta, exc)
        got = "" if spec.secret or spec.url else f" (you entered {text.strip()!r})"
        return f"{meta.label} {reason}{got}."
    extra = _EXTRA_CHECKS.get(name)
    problem = extra(text.strip()) if extra else None
    return f"{meta.label} {problem}." if problem else None


def _after_save(values: Mapping[str, str], clear: Collection[str],
                current: dict[str, tuple[str, Source]]) -> tuple[dict[str, str], set[str]]:
    """The settings texts in force once saved (the environment and env file still win), and
    the names that would then be set."""
    texts = {n: raw for n, (raw, _) in current.items()}
    is_set = set(current)
    for name, raw in values.items():
        if name not in _FIELDS or (name in current and current[name][1] in _SHADOWING):
            continue
        if _FIELDS[name].secret and not raw:
            continue
        if raw.strip():
            texts[name] = raw
            is_set.add(name)
        else:
            texts.pop(name, None)
            is_set.discard(name)
    for name in clear:
        if name in current and current[name][1] not in _SHADOWING:
            texts.pop(name, None)
            is_set.discard(name)
    return texts, is_set


def _parsed(texts: dict[str, str], name: str) -> Any:
    text = texts.get(name) or default_settings_text()[name]
    try:
        return _FIELDS[name].parse(text)
    except (ValueError, ArithmeticError):
        return None


def _cross_problems(texts: dict[str, str],
                    is_set: set[str]) -> list[tuple[tuple[str, ...], str]]:
    """Problems between settings: (the settings involved, message)."""
    problems: list[tuple[tuple[str, ...], str]] = []
    provider = _parsed(texts, "RELAYDESK_SMS_PROVIDER")
    for name in _REQUIRED_BY_PROVIDER.get(provider or "", ()):
        if name not in is_set or (not _FIELDS[name].secret and not texts.get(name, "").strip()):
            problems.append(((name,), f"To send with {_PROVIDER_NAMES[provider]}, enter "
                                      f"{_META[name].label} (or choose another SMS provider)."))
    low, high = _parsed(texts, "RELAYDESK_MIN_PROCESSES"), _parsed(texts,
                                                                   "RELAYDESK_MAX_PROCESSES")
    if low is not None and high is not None and low > high:
        problems.append((("RELAYDESK_MIN_PROCESSES", "RELAYDESK_MAX_PROCESSES"),
                         f"Fewest processes ({low}) is more than most processes ({high}): "
                         "lower the fewest or raise the most."))
    if (_parsed(texts, "RELAYDESK_INSPECTOR") == "on"
            and _parsed(texts, "RELAYDESK_ENV") == "production"):
        problems.append((("RELAYDESK_INSPECTOR", "RELAYDESK_ENV"),
                         "The job inspector cannot be on in production: "
                         f"{INSPECTOR_REFUSED}"))
    base, cap = _parsed(texts, "RELAYDESK_RETRY_BACKOFF"), _parsed(texts,
                                                                  "RELAYDESK_RETRY_BACKOFF_MAX")
    if base is not None and cap is not None and base > cap:
        problems.append((("RELAYDESK_RETRY_BACKOFF_MAX", "RELAYDESK_RETRY_BACKOFF"),
                         f"Longest retry wait ({cap:g} s) is shorter than the first retry "
                         f"wait ({base:g} s): raise it, or shorten the first wait."))
    return problems


def validate(values: Mapping[str, str], *, clear: Collection[str] = (),
             environ: Mapping[str, str] | None = None,
             config_path: Path | None = None) -> dict[str, str]:
    """Setting name -> what is wrong and what to do; empty when ``save`` would accept it.

    Checks each given value with the parser every process uses, then the settings together
    as they would be in force after saving (e.g. Twilio needs its SID, token and sender,
    whether typed now or saved before)."""
    env = _environ(environ, config_path)
    current = raw_values(environ=env, read_keyring=False)
    errors: dict[str, str] = {}
    prepared: dict[str, str] = {}
    for name, typed in values.items():
        if name not in _FIELDS:
            errors[name] = f"{name} is not a RelayDesk setting."
            continue
        raw = typed
        if _FIELDS[name].url:
            raw = restore_masked_url(raw, current.get(name, ("", "default"))[0])
        prepared[name] = raw
        if not raw.strip():
            continue  # non-secret: back to the default; secret: unchanged
        problem = _check_one(name, raw)
        if not problem and _FIELDS[name].url and still_masked(raw):
            problem = (f"{_META[name].label} holds {MASK} where a password or key belongs: "
                       "the saved one is kept only for the same server, so type it again.")
        if problem:
            errors[name] = problem
    for name in clear:
        if name not in _FIELDS or not _FIELDS[name].secret:
            errors[name] = f"{name} is not a secret setting; to reset it, save it empty."
    for names, problem in _cross_problems(*_after_save(prepared, clear, current)):
        # Shown next to the field the operator just changed, when there is one.
        name = next((n for n in names if n in values), names[0])
        errors.setdefault(name, problem)
    return errors


# --- saving --------------------------------------------------------------------------------

def _read_document(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"config file {path} is not valid TOML ({exc}); fix or delete it "
                            "before saving settings.") from None


def _file_value(spec: SettingField, text: str) -> str | int:
    return int(text.strip()) if _META[spec.name].kind == "int" else text


@dataclass
class _Plan:
    """The edit of one config document, as save() builds it."""

    data: dict[str, Any]
    keyring_names: list[str]
    written: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    secrets: dict[str, SecretStore] = field(default_factory=dict)
    cleared: list[str] = field(default_factory=list)


def _keyring_call(action: str, name: str, call: Any, *args: str) -> bool:
    try:
        call(*args)
    except Exception as exc:
        log.warning("could not %s %s in the system keyring (%s)", action, name,
                    type(exc).__name__)
        return False
    return True


def _store_secret(plan: _Plan, name: str, value: str, service: str,
                  backend: KeyringBackend | None) -> None:
    if backend is not None and _keyring_call("store", name, backend.set_password, service,
                                             name, value):
        plan.data.pop(name, None)  # the file must not keep an old copy that would win
        if name not in plan.keyring_names:
            plan.keyring_names.append(name)
        plan.secrets[name] = "keyring"
        return
    plan.data[name] = value
    if name in plan.keyring_names:
        plan.keyring_names.remove(name)
        if backend is not None:
            _keyring_call("delete", name, backend.delete_password, service, name)
    plan.secrets[name] = "config file"


def _clear_secret(plan: _Plan, name: str, service: str,
                  backend: KeyringBackend | None) -> None:
    plan.data.pop(name, None)
    if name in plan.keyring_names:
        plan.keyring_names.remove(name)
        if backend is not None:
            _keyring_call("delete", name, backend.delete_password, service, name)
    plan.cleared.append(name)


def _set_plain(plan: _Plan, name: str, text: str, current: dict[str, tuple[str, Source]],
               defaults: dict[str, str]) -> None:
    if not text.strip():
        if name in plan.data:
            del plan.data[name]
            plan.removed.append(name)
        return
    in_force = current.get(name, (defaults[name], "default"))[0]
    if name not in plan.data and text == in_force:
        return  # unchanged: don't pin a default or copy an environment value into the file
    value = _file_value(_FIELDS[name], text)
    if plan.data.get(name) != value:
        plan.data[name] = value
        plan.written.append(name)


def save(values: Mapping[str, str], config_path: Path | None = None, *,
         clear: Collection[str] = (), environ: Mapping[str, str] | None = None) -> SavedSettings:
    """Validate, then write ``values`` to the config file (secrets to the keyring when one
    is usable). Raises SettingsValidationError (with ``.errors``) and changes nothing when
    validate() finds a problem; keys of the file not in ``values`` stay as they are."""
    env = _environ(environ, config_path)
    errors = validate(values, clear=clear, environ=env)
    if errors:
        raise SettingsValidationError(errors)
    path = config_file_path(env)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with FileLock(str(path.with_name(path.name + ".lock")), timeout=10):
        current = raw_values(environ=env, read_keyring=False)
        data = _read_document(path)
        table = data.pop(KEYRING_TABLE, None)
        table = table if isinstance(table, dict) else {}
        service = str(table.get("service") or keyring_service(path))
        plan = _Plan(data, [str(n) for n in table.get("secrets", [])])
        secrets = {n: v for n, v in values.items() if _FIELDS[n].secret and v}
        backend = usable_keyring() if secrets or clear else None
        defaults = default_settings_text()
        for name, typed in values.items():
            if _FIELDS[name].secret:
                if typed:
                    _store_secret(plan, name, typed, service, backend)
                continue
            text = typed
            if _FIELDS[name].url:
                text = restore_masked_url(text, current.get(name, ("", "default"))[0])
            _set_plain(plan, name, text, current, defaults)
        for name in clear:
            _clear_secret(plan, name, service, backend)
        if plan.keyring_names:
            plan.data[KEYRING_TABLE] = {**table, "service": service,
                                        "secrets": plan.keyring_names}
        document = toml_document(plan.data)
        tomllib.loads(document)  # never replace a good file with one no process can read
        write_private_file(path, document)
    changed = [*plan.written, *plan.secrets]
    shadowed: dict[str, Source] = {n: current[n][1] for n in changed
                                   if n in current and current[n][1] in _SHADOWING}
    return SavedSettings(path=path, written=tuple(plan.written), removed=tuple(plan.removed),
                         secrets=plan.secrets, cleared=tuple(plan.cleared), shadowed=shadowed,
                         keyring_service=service if plan.keyring_names else None)
