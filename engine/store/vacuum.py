"""Giving deleted rows' space back to the file system.

SQLite keeps the pages a delete frees inside its file. A database created with
``auto_vacuum=INCREMENTAL`` (every new one: engine.store.db) gives them back in steps
(``give_back_space``, after each prune); an older one is converted once by VACUUM
(``vacuum``: ``relaydesk db vacuum``), which rewrites the whole file and holds the
database's lock while it does. PostgreSQL reuses freed space through its autovacuum, which
runs on its own: nothing here touches a PostgreSQL database.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError

from engine.domain.errors import OperatorError
from engine.store.db import Database
from engine.store.lock_sharing import rest_after_step

# Pages freed per step: 2 MB at SQLite's 4 KB pages. Each step holds the write lock while
# it moves pages, longer the larger the file; sending goes on between steps
# (engine.store.lock_sharing).
PAGES_PER_STEP = 500
AUTO_VACUUM = {0: "none", 1: "full", 2: "incremental"}


class VacuumError(OperatorError, RuntimeError):
    """VACUUM could not run; the message says what to do."""


@dataclass(frozen=True)
class SqliteSpace:
    """A SQLite database's size and free pages."""

    path: Path
    page_size: int
    page_count: int
    freelist_count: int  # pages inside the file that hold nothing
    auto_vacuum: str  # none, full or incremental
    file_bytes: int  # the database file with its write-ahead log

    @property
    def free_bytes(self) -> int:
        return self.freelist_count * self.page_size


def _pragma(connection: Connection, name: str) -> int:
    return int(connection.exec_driver_sql(f"PRAGMA {name}").scalar() or 0)


def _file_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal"))
               if p.exists())


def sqlite_space(engine: Engine) -> SqliteSpace:
    """The figures of a SQLite database (ValueError for another database)."""
    if engine.dialect.name != "sqlite" or not engine.url.database:
        raise ValueError("not a SQLite file database")
    path = Path(engine.url.database)
    with engine.connect() as connection:
        return SqliteSpace(path, _pragma(connection, "page_size"),
                           _pragma(connection, "page_count"),
                           _pragma(connection, "freelist_count"),
                           AUTO_VACUUM.get(_pragma(connection, "auto_vacuum"), "none"),
                           _file_bytes(path))


def give_back_space(db: Database, pages_per_step: int = PAGES_PER_STEP) -> int:
    """SQLite with incremental auto-vacuum: move the free pages to the file's end and cut
    them off, a step at a time; how many pages. Nothing on another database, or on a
    SQLite file that is not incremental (``vacuum`` converts it)."""
    if db.engine.dialect.name != "sqlite":
        return 0
    freed = 0
    with db.engine.connect() as connection:
        if _pragma(connection, "auto_vacuum") != 2:
            return 0
        sqlite_connection = connection.connection.driver_connection
        assert sqlite_connection is not None
        while (free := _pragma(connection, "freelist_count")) > 0:
            # The pragma frees one page per step of its statement, and the driver's
            # execute() takes one step; executescript() runs it to the end (in a
            # transaction of its own).
            started = time.monotonic()
            sqlite_connection.executescript(
                f"PRAGMA incremental_vacuum({int(pages_per_step)})")
            held = time.monotonic() - started
            left = _pragma(connection, "freelist_count")
            # The moved pages are in the write-ahead log; a checkpoint puts them in the
            # file, so the log does not grow by the whole database's free space (passive:
            # it never waits for, or blocks, the workers).
            connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            connection.commit()
            if left >= free:
                break  # nothing more can be freed now
            freed += free - left
            rest_after_step(db, held)  # the workers' turn at the write lock
    return freed


def vacuum(db: Database) -> tuple[SqliteSpace, SqliteSpace]:
    """Rewrite a SQLite database whole, as incremental auto-vacuum (the file's size before
    and after). It holds the database's lock until done: run it when nothing is sending."""
    before = sqlite_space(db.engine)
    try:
        with db.engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA auto_vacuum=INCREMENTAL")
            connection.exec_driver_sql("VACUUM")
            # The rewritten file is in the write-ahead log until a checkpoint; TRUNCATE
            # also empties the log, so the figures below are the file's real size.
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            connection.commit()
    except OperationalError as exc:
        raise VacuumError(
            f"VACUUM could not run: {exc.orig}. The database is in use: stop the workers "
            "(and the console's sending) and run 'relaydesk db vacuum' again. Nothing was "
            "changed.") from None
    return before, sqlite_space(db.engine)
