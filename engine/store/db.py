"""Database connection and migrations: SQLite in the data dir by default, PostgreSQL by URL.

Migrations run automatically the first time a process opens the database; several
processes (CLI, GUI, workers) may start at once, so the upgrade is serialised with a lock
(a lock file for SQLite, an advisory lock for PostgreSQL).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from filelock import FileLock
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from engine.config.masking import mask_url
from engine.config.settings import Settings
from engine.domain.errors import OperatorError

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
SQLITE_BUSY_TIMEOUT_MS = 30_000  # workers write concurrently; wait for the lock, don't fail
_PG_MIGRATION_LOCK_KEY = 0x52656C6179  # arbitrary, fixed: one migration at a time


class DatabaseError(OperatorError, RuntimeError):
    """The database cannot be reached or used; the message says what to do."""


def database_url(settings: Settings) -> str:
    """The SQLAlchemy URL: RELAYDESK_DATABASE_URL (with its common short forms) or SQLite in
    the data dir."""
    url = settings.database_url
    if not url:
        return f"sqlite:///{settings.sqlite_path}"
    # Heroku/Laravel-style URLs name no driver; psycopg 3 is the one we ship.
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # Space freed by deletes (retention's prune) can be given back to the file system in
    # steps (engine.store.vacuum). It only takes effect while the file has no table yet,
    # so this makes every new database incremental; an existing one is converted by
    # 'relaydesk db vacuum'.
    cursor.execute("PRAGMA auto_vacuum=INCREMENTAL")
    # WAL lets readers (the console) run while a worker writes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


CONNECT_TIMEOUT_S = 5


def create_db_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
                               hide_parameters=True)
        event.listen(engine, "connect", _set_sqlite_pragmas)
        return engine
    connect_args: dict[str, Any] = {}
    if parsed.get_driver_name() == "psycopg":
        # psycopg prepares a statement after 5 runs; the generic plan it then uses for a long
        # IN (...) list is a sequential scan (measured: 130 ms instead of 3 ms per lookup).
        connect_args["prepare_threshold"] = None
    # A server that does not answer fails in seconds, not after the OS's TCP timeout.
    connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
    try:
        # Error texts reach dialogs and logs: they must not carry phone numbers or messages.
        return create_engine(url, pool_pre_ping=True, connect_args=connect_args,
                             hide_parameters=True)
    except ImportError as exc:
        if parsed.get_backend_name() != "postgresql":
            raise
        # The packaged app on Linux uses the system's libpq (build.spec); the .deb depends
        # on it, an unpacked .tar.gz may run where it is not installed.
        raise DatabaseError(
            "PostgreSQL needs its client library, libpq, which was not found on this "
            "machine: install it (Debian/Ubuntu: sudo apt install libpq5; Fedora: sudo dnf "
            f"install libpq) and start RelayDesk again. ({exc})".replace("\n", " ")) from None


def _alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(config).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest migration; safe to call from many processes at once."""
    if engine.dialect.name == "sqlite":
        db_path = engine.url.database
        lock_path = f"{db_path}.migrate.lock" if db_path and db_path != ":memory:" else None
        if lock_path:
            with FileLock(lock_path):
                _upgrade_locked(engine)
            return
    _upgrade_locked(engine)


def _refuse_foreign_schema(connection: Connection) -> None:
    """A database with tables but no RelayDesk schema version belongs to something else
    (e.g. a RELAYDESK_DATABASE_URL pointing at another application's database): creating
    RelayDesk's tables in it would mix two applications' data."""
    tables = sorted(inspect(connection).get_table_names())
    if tables:
        shown = ", ".join(tables[:5]) + (f" and {len(tables) - 5} more" if len(tables) > 5
                                         else "")
        url = connection.engine.url.render_as_string(hide_password=False)
        raise DatabaseError(
            f"the database at {mask_url(url)} already holds {len(tables)} table(s) ({shown}) "
            "but no RelayDesk schema, so it belongs to another application and RelayDesk "
            "will not add its tables to it. Point RELAYDESK_DATABASE_URL at an empty "
            "database of its own, or unset it to use the local SQLite file.")


def _upgrade_locked(engine: Engine) -> None:
    if current_revision(engine) == head_revision():
        return
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"),
                               {"k": _PG_MIGRATION_LOCK_KEY})
        # Read again under the lock: another process may have just created the schema.
        if MigrationContext.configure(connection).get_current_revision() is None:
            _refuse_foreign_schema(connection)
        command.upgrade(_alembic_config(connection), "head")


@dataclass
class Database:
    engine: Engine
    sessions: sessionmaker[Session]

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose work commits on success and rolls back on any error."""
        with self.sessions.begin() as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


_open: dict[str, Database] = {}
_open_lock = threading.Lock()

# Handed each engine this process opens, with the settings it was opened for. The development
# inspector (engine.monitoring.inspector, a layer above the store) adds itself here to record
# the statements, so the store never imports it.
ENGINE_WATCHERS: list[Callable[[Engine, Settings], None]] = []


def open_database(settings: Settings, *, migrate: bool = True) -> Database:
    """The process's Database for these settings, migrated to the newest schema."""
    url = database_url(settings)
    with _open_lock:
        db = _open.get(url)
        if db is None:
            engine = create_db_engine(url)
            if migrate:
                try:
                    upgrade(engine)
                except DatabaseError:
                    engine.dispose()
                    raise
                except OperationalError as exc:
                    engine.dispose()
                    raise DatabaseError(
                        f"cannot open the database at {mask_url(url)}: {exc.orig}. "
                        "Check RELAYDESK_DATABASE_URL, or unset it to use the local SQLite file."
                    ) from None
            for watch in ENGINE_WATCHERS:
                watch(engine, settings)
            db = Database(engine, sessionmaker(engine, expire_on_commit=False))
            _open[url] = db
        return db


def open_databases() -> list[Database]:
    """Every database this process has open (tests check them as each test ends)."""
    with _open_lock:
        return list(_open.values())


def close_databases() -> None:
    """Dispose every engine this process opened (tests, and before a process forks)."""
    with _open_lock:
        for db in _open.values():
            db.dispose()
        _open.clear()
