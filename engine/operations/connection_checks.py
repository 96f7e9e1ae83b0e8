"""The Settings page's "Test connection": Redis, the database and the SMS provider.

Each check answers in a few seconds at most, changes nothing (it starts no server, runs no
migration, creates no database file, sends no message) and returns one human line plus
details. ``ok`` means "nothing to fix": RelayDesk's own Redis or sandbox gateway that is
not running yet is fine, since RelayDesk starts them with the workers. Passwords never
appear in a result: URLs are masked, error texts scrubbed.

The GUI calls these from a background thread with the values on the form, e.g.
``check_redis(form["RELAYDESK_REDIS_URL"], settings)``; a URL still showing ``****`` for its
password is tested with the password in force. ``settings_store.preview_settings`` turns
a form into the Settings ``check_provider`` needs.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import ssl
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis

from engine.config.masking import mask_url, restore_masked_url, scrub_url_secrets
from engine.config.settings import Settings
from engine.infra.connections import CHECK, redis_for

TIMEOUT_S = CHECK.read_timeout_s  # every check waits as long as the Redis one
_PROVIDER_NAMES = {"sandbox": "The sandbox gateway", "http": "The HTTP gateway",
                   "twilio": "Twilio", "africastalking": "Africa's Talking"}


@dataclass(frozen=True)
class CheckResult:
    ok: bool  # nothing for the operator to fix
    message: str  # one line for the operator
    detail: dict[str, Any] = field(default_factory=dict)  # e.g. version, latency_ms, url


def _scrub(text: str, url: str | None) -> str:
    """``text`` without the password or query secrets of ``url`` (in any spelling)."""
    return scrub_url_secrets(text, url)


def _reason(exc: BaseException, timeout_s: float) -> str:
    """Why a connection failed, in a few words (from the innermost OS error when known)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    for error in chain:
        if isinstance(error, socket.gaierror):
            return "host name not found"
        if isinstance(error, ssl.SSLCertVerificationError):
            return f"TLS certificate not trusted ({error.verify_message})"
        if isinstance(error, ssl.SSLError):
            return f"TLS failed ({error.reason or error})"
        if isinstance(error, TimeoutError | redis.TimeoutError):
            return f"no answer within {timeout_s:g} s"
        if isinstance(error, OSError) and error.strerror:
            return error.strerror[0].lower() + error.strerror[1:]
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 1)


# --- Redis ---------------------------------------------------------------------------------

def check_redis(url: str | None, settings: Settings) -> CheckResult:
    """Connect to ``url`` (RELAYDESK_REDIS_URL as typed); empty means RelayDesk's own Redis, whose
    state is reported without starting it."""
    text = (url or "").strip()
    if not text:
        return _check_embedded_redis(settings)
    return _check_redis_url(restore_masked_url(text, settings.redis_url), embedded=False)


def _check_embedded_redis(settings: Settings) -> CheckResult:
    from engine.infra.embedded_redis import EmbeddedRedis, RedisUnavailable, find_redis_server

    server = EmbeddedRedis.for_settings(settings)
    if server.ping():
        return _check_redis_url(server.url(), embedded=True)
    try:
        binary = find_redis_server()
    except RedisUnavailable as exc:
        return CheckResult(False, str(exc), {"embedded": True, "running": False})
    return CheckResult(
        True,
        "RelayDesk's own Redis is not running; it starts with the workers "
        "(or 'relaydesk redis').",
        {"embedded": True, "running": False, "server": str(binary),
         "directory": str(server.directory)})


def _redis_place(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    host = parts.hostname or "localhost"
    return f"{f'[{host}]' if ':' in host else host}:{parts.port or 6379}"


def _check_redis_url(url: str, *, embedded: bool) -> CheckResult:
    masked = mask_url(url)
    detail: dict[str, Any] = {"url": masked, "embedded": embedded}
    try:
        place = _redis_place(url)
        client = redis_for(url, CHECK)
    except ValueError as exc:
        return CheckResult(False, f"RELAYDESK_REDIS_URL {masked} is not a Redis URL "
                                  f"({_scrub(str(exc), url)}): write it as "
                                  "redis://:password@host:6379/0.", detail)
    who = "RelayDesk's own Redis" if embedded else "Redis"
    try:
        start = time.perf_counter()
        client.ping()
        latency = _ms(start)
        info = {**client.info("server"), **client.info("memory")}
    except redis.AuthenticationError:
        fix = ("delete its password file and restart it" if embedded
               else "fix the password in RELAYDESK_REDIS_URL")
        return CheckResult(False, f"{who} at {place} refused the password: {fix}.", detail)
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        fix = ("restart it with 'relaydesk redis'" if embedded else
               "Start that Redis or fix RELAYDESK_REDIS_URL (leave it empty to let RelayDesk "
               "run its own)")
        return CheckResult(False, f"Could not connect to {place}: "
                                  f"{_scrub(_reason(exc, TIMEOUT_S), url)}. {fix}.", detail)
    except redis.RedisError as exc:
        return CheckResult(False, f"{who} at {place} answered with an error: "
                                  f"{_scrub(str(exc), url)}. Check RELAYDESK_REDIS_URL.", detail)
    finally:
        client.close()
    version = str(info.get("redis_version", "?"))
    policy = str(info.get("maxmemory_policy", ""))
    detail.update(version=version, latency_ms=latency, place=place, running=True,
                  maxmemory_policy=policy)
    message = f"Connected to {who} {version} at {place} ({latency} ms)."
    if policy and policy != "noeviction":
        message += (f" Warning: its maxmemory-policy is {policy}; set it to noeviction so "
                    "Redis never drops queued messages.")
    return CheckResult(True, message, detail)


# --- database ------------------------------------------------------------------------------

def check_database(url: str | None, settings: Settings) -> CheckResult:
    """Connect to ``url`` (RELAYDESK_DATABASE_URL as typed; empty means the SQLite file in the data
    dir), run ``SELECT 1`` and report the server and the schema. Creates nothing."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from engine.store.db import database_url

    text = (url or "").strip()
    if text:
        text = restore_masked_url(text, settings.database_url)
    full = database_url(replace(settings, database_url=text or None))
    masked = mask_url(full)
    try:
        parsed = make_url(full)
        backend = parsed.get_backend_name()
    except (ArgumentError, ValueError):
        return CheckResult(False, f"RELAYDESK_DATABASE_URL {masked} is not a database URL: write "
                                  "postgresql://user:password@host/dbname, or leave it empty "
                                  "for the local SQLite file.", {"url": masked})
    if backend == "sqlite":
        return _check_sqlite(parsed.database, masked)
    if backend != "postgresql":
        return CheckResult(False, f"RelayDesk stores its data in PostgreSQL or SQLite, not "
                                  f"{backend}: fix RELAYDESK_DATABASE_URL.", {"url": masked})
    return _check_postgresql(full, masked)


def _schema_state(connection: Any) -> tuple[str | None, str]:
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from engine.store.db import MIGRATIONS_DIR

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    script = ScriptDirectory.from_config(config)
    revision = MigrationContext.configure(connection).get_current_revision()
    if revision is None:
        return None, "no RelayDesk tables yet; they are created on first use"
    if revision == script.get_current_head():
        return revision, "schema up to date"
    if revision not in {r.revision for r in script.walk_revisions()}:
        return revision, (f"schema {revision} is newer than this RelayDesk: upgrade RelayDesk "
                          "before using it")
    return revision, "older schema; it is upgraded on first use"


def _check_sqlite(database: str | None, masked: str) -> CheckResult:
    detail: dict[str, Any] = {"url": masked, "dialect": "sqlite"}
    if not database or database == ":memory:" or database.startswith("file:"):
        return CheckResult(False, "An in-memory SQLite database keeps nothing: leave "
                                  "RELAYDESK_DATABASE_URL empty or name a file.", detail)
    path = Path(database).expanduser()
    detail["path"] = str(path)
    if not path.exists():
        folder = next((p for p in path.parents if p.exists()), None)
        if folder is None or not folder.is_dir() or not _writable(folder):
            return CheckResult(False, f"Cannot create the SQLite database {path}: {folder} "
                                      "is not a writable folder. Choose another data folder "
                                      "or RELAYDESK_DATABASE_URL.", detail)
        return CheckResult(True, f"No SQLite database at {path} yet; RelayDesk creates it on "
                                 "first use.", detail)
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.pool import NullPool

    # Read-only: testing must not turn on WAL, create tables or take write locks.
    engine = create_engine("sqlite://", poolclass=NullPool, creator=lambda: sqlite3.connect(
        f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=TIMEOUT_S))
    try:
        start = time.perf_counter()
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            latency = _ms(start)
            version = str(connection.execute(text("SELECT sqlite_version()")).scalar())
            revision, schema = _schema_state(connection)
    except DBAPIError as exc:
        return CheckResult(False, f"Could not open the SQLite database {path}: "
                                  f"{_reason(exc.orig or exc, TIMEOUT_S)}. Check the file, or "
                                  "choose another data folder.", detail)
    finally:
        engine.dispose()
    detail.update(version=version, latency_ms=latency, revision=revision)
    return CheckResult(True, f"Opened SQLite {version} database at {path} ({latency} ms); "
                             f"{schema}.", detail)


def _writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK | os.X_OK)


def _check_postgresql(full: str, masked: str) -> CheckResult:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DBAPIError, NoSuchModuleError
    from sqlalchemy.pool import NullPool

    parsed = make_url(full)
    place = f"{parsed.host or 'localhost'}:{parsed.port or 5432}/{parsed.database or ''}"
    detail: dict[str, Any] = {"url": masked, "dialect": "postgresql", "place": place}
    try:
        engine = create_engine(full, poolclass=NullPool, connect_args={
            "connect_timeout": max(2, int(TIMEOUT_S)),  # libpq's minimum is 2 s
            "options": f"-c statement_timeout={int(TIMEOUT_S * 1000)}"})
    except (NoSuchModuleError, ImportError) as exc:
        return CheckResult(False, f"No driver for {masked} is installed "
                                  f"({_scrub(str(exc), full)}): use postgresql://…", detail)
    try:
        start = time.perf_counter()
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            latency = _ms(start)
            version = ".".join(str(v) for v in connection.dialect.server_version_info or ())
            revision, schema = _schema_state(connection)
    except DBAPIError as exc:
        reason = _scrub(_pg_reason(exc.orig or exc), full)
        return CheckResult(False, f"Could not connect to the database at {place}: {reason}. "
                                  "Check RELAYDESK_DATABASE_URL, or leave it empty to use the "
                                  "local SQLite file.", detail)
    finally:
        engine.dispose()
    detail.update(version=version, latency_ms=latency, revision=revision)
    return CheckResult(True, f"Connected to PostgreSQL {version} at {place} ({latency} ms); "
                             f"{schema}.", detail)


def _pg_reason(exc: BaseException) -> str:
    """libpq's last line of complaint, without its 'connection to server ... failed:'."""
    reason = _reason(exc, TIMEOUT_S)
    reason = reason.rpartition(" failed: ")[2] if " failed: " in reason else reason
    reason = reason.removeprefix("FATAL:").strip()
    return reason[:1].lower() + reason[1:]


# --- provider ------------------------------------------------------------------------------

def check_provider(settings: Settings) -> CheckResult:
    """Are the provider settings complete, and does its server accept connections?
    Nothing is sent: the credentials themselves are first used by the first message."""
    from engine.infra.local_gateway import LocalGateway
    from engine.providers import ProviderConfigError, make_provider
    from engine.providers.reachability import provider_endpoint

    kind = settings.sms_provider
    name = _PROVIDER_NAMES.get(kind, kind)
    local: str | None = None
    if kind == "sandbox" and not settings.sms_gateway_url:
        gateway = LocalGateway.for_settings(settings)
        local = gateway.url() if gateway.ping() else None
        if local is None:
            return CheckResult(True, "RelayDesk's sandbox gateway is not running; it starts "
                                     "with the workers. Nothing is sent to real phones.",
                               {"provider": kind, "running": False})
    try:
        make_provider(settings, gateway_url=local)
    except ProviderConfigError as exc:
        return CheckResult(False, f"{exc}.", {"provider": kind})
    endpoint = provider_endpoint(settings, local) or ""
    return _check_endpoint(kind, name, endpoint)


def _check_endpoint(kind: str, name: str, endpoint: str) -> CheckResult:
    masked = mask_url(endpoint)
    detail: dict[str, Any] = {"provider": kind, "url": masked}
    try:
        parts = urlsplit(endpoint)
        host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        host = None
    if not host:
        return CheckResult(False, f"{name}'s address {masked} is not a URL: fix it in the "
                                  "provider settings.", detail)
    place = f"{host}:{port}"
    detail["place"] = place
    start = time.perf_counter()
    try:
        with socket.create_connection((host, port), timeout=TIMEOUT_S):
            latency = _ms(start)
    except OSError as exc:
        return CheckResult(False, f"Could not connect to {name} at {place}: "
                                  f"{_reason(exc, TIMEOUT_S)}. Check the network, or the "
                                  "address in the provider settings.", detail)
    detail["latency_ms"] = latency
    note = ("Nothing is sent to real phones." if kind == "sandbox" else
            "No message was sent; the credentials are first used by the first message.")
    return CheckResult(True, f"{name} settings are complete and {place} accepts connections "
                             f"({latency} ms). {note}", detail)
