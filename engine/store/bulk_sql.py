"""Statements over many rows at once, the same on SQLite and PostgreSQL: IN lists cut to
a size every database takes, an INSERT that skips the rows a unique key already holds, and
the fastest INSERT of many new rows each database has."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import chain, islice
from typing import Any

from sqlalchemy import Column, Dialect, Table, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

SQL_BATCH = 500  # keeps IN (...) lists under every database's parameter limit


def batched(items: Sequence[Any], size: int = SQL_BATCH) -> Iterator[Sequence[Any]]:
    """``items`` in consecutive lists of at most ``size``."""
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def insert_ignoring(session: Session, model: type[Any], *conflict_columns: str) -> Any:
    """INSERT INTO ``model``'s table that skips a row whose ``conflict_columns`` (a unique
    key) are stored already, even by another transaction at this moment, instead of
    failing the whole statement. Add ``.returning(...)`` to learn which rows went in."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(model).on_conflict_do_nothing(index_elements=conflict_columns)
    if dialect == "sqlite":
        return sqlite.insert(model).on_conflict_do_nothing(index_elements=conflict_columns)
    raise RuntimeError(f"RelayDesk supports SQLite and PostgreSQL, not {dialect}")


INSERT_BATCH = 10_000  # rows held in memory at once by insert_rows
SQLITE_ROWS_PER_INSERT = 2500  # measured faster than 1,000 and 100 (and the parameter limit)


def insert_rows(session: Session, table: Table, columns: Sequence[str],
                rows: Iterable[Sequence[Any]], *, same: Mapping[str, Any] | None = None,
                batch: int = INSERT_BATCH) -> int:
    """INSERT each of ``rows`` (the values of ``columns``, in that order), plus the ``same``
    values in every row, into ``table`` in the session's transaction; how many went in.

    What ``session.execute(insert(table), rows)`` would store, at a fraction of its cost
    per row: each value passes through its column's type as a bound parameter would (the
    ``same`` ones once, not once a row), and the table's Python-side scalar defaults fill
    the columns not given. PostgreSQL (psycopg) takes the rows by COPY, SQLite by INSERTs
    of many rows each. ``rows`` is read ``batch`` rows at a time, between statements: it
    may stream from a query on the same connection."""
    constants = {**_scalar_defaults(table, [*columns, *(same or {})]), **(same or {})}
    names = [*columns, *constants]
    write = _fast_writer(session, table, names)
    if write is None:  # another driver: SQLAlchemy's own executemany
        return _insert_plainly(session, table, names, rows, tuple(constants.values()), batch)
    dialect = session.get_bind().dialect
    tail = tuple(_bound(table.c[name], value, dialect) for name, value in constants.items())
    processors = [(i, p) for i, name in enumerate(columns)
                  if (p := _processor(table.c[name], dialect)) is not None]
    count = 0
    iterator = iter(rows)
    while chunk := list(islice(iterator, batch)):
        if processors:
            chunk = [_processed(row, processors) for row in chunk]
        write([(*row, *tail) for row in chunk])
        count += len(chunk)
    return count


def _scalar_defaults(table: Table, given: Sequence[str]) -> dict[str, Any]:
    """The Python-side defaults of the columns not ``given``, as insert(table) applies
    them. A default computed per row (a function) must be given instead."""
    defaults = {}
    for column in table.columns:
        if column.name in given or column.default is None:
            continue
        if not column.default.is_scalar:
            raise ValueError(f"insert_rows: give {table.name}.{column.name}; its default is "
                             "not a constant")
        defaults[column.name] = column.default.arg  # type: ignore[attr-defined]
    return defaults


def _processor(column: Column[Any], dialect: Dialect) -> Callable[[Any], Any] | None:
    """What SQLAlchemy does to a value bound to ``column`` on ``dialect`` (the dialect's
    own type: SQLite's DATETIME writes its own text format, not sqlite3's)."""
    return column.type.dialect_impl(dialect).bind_processor(dialect)


def _bound(column: Column[Any], value: Any, dialect: Dialect) -> Any:
    processor = _processor(column, dialect)
    return value if processor is None or value is None else processor(value)


def _processed(row: Sequence[Any], processors: Sequence[tuple[int, Callable[[Any], Any]]]
               ) -> Sequence[Any]:
    values = list(row)
    for i, processor in processors:
        if values[i] is not None:
            values[i] = processor(values[i])
    return values


_Writer = Callable[[list[tuple[Any, ...]]], None]


def _fast_writer(session: Session, table: Table, names: Sequence[str]) -> _Writer | None:
    """Writes a batch of driver-ready rows of ``names``; None when the driver has no way
    known here."""
    dialect = session.get_bind().dialect
    preparer = dialect.identifier_preparer
    into = f"{preparer.format_table(table)} ({', '.join(preparer.quote(n) for n in names)})"
    connection = session.connection()  # the session's own: the rows join its transaction
    driver = connection.connection.driver_connection
    assert driver is not None  # a connection in use always has one
    if dialect.name == "postgresql" and dialect.driver == "psycopg":
        sql = f"COPY {into} FROM STDIN"

        def copy(chunk: list[tuple[Any, ...]]) -> None:
            try:
                with driver.cursor() as cursor, cursor.copy(sql) as stream:
                    for row in chunk:
                        stream.write_row(row)
            except dialect.loaded_dbapi.Error as exc:
                # As SQLAlchemy raises it for its own statements (OperationalError for a
                # database that went away, IntegrityError...): callers tell them apart.
                raise DBAPIError.instance(sql, None, exc, dialect.loaded_dbapi.Error,
                                          hide_parameters=True, dialect=dialect) from exc

        return copy
    if dialect.name == "sqlite" and dialect.paramstyle == "qmark":
        # Many rows a statement: SQLite sets up a statement's run once (the IN lists of
        # partial indexes, for one), not once a row; measured twice as fast as executemany
        # into outgoing_messages.
        limit = driver.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        per_statement = max(1, min(limit // len(names), SQLITE_ROWS_PER_INSERT))
        row = f"({', '.join('?' for _ in names)})"

        def insert(chunk: list[tuple[Any, ...]]) -> None:
            for start in range(0, len(chunk), per_statement):
                rows = chunk[start:start + per_statement]
                connection.exec_driver_sql(
                    f"INSERT INTO {into} VALUES {', '.join([row] * len(rows))}",
                    tuple(chain.from_iterable(rows)))

        return insert
    return None


def _insert_plainly(session: Session, table: Table, names: Sequence[str],
                    rows: Iterable[Sequence[Any]], tail: tuple[Any, ...], batch: int) -> int:
    count = 0
    iterator = iter(rows)
    while chunk := list(islice(iterator, batch)):
        session.execute(insert(table), [dict(zip(names, (*row, *tail), strict=True))
                                        for row in chunk])
        count += len(chunk)
    return count
