"""Statements over many rows at once, the same on SQLite and PostgreSQL: IN lists cut to
a size every database takes, an INSERT that skips the rows a unique key already holds, and
the fastest INSERT of many new rows each database has."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import chain, islice
from typing import Any

from sqlalchemy import Column, Connection, Dialect, Table, insert
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


SQLITE_ROWS_PER_INSERT = 2500  # rows a statement: measured faster than 1,000 or 100


# (connection, "table (columns)", columns, rows ready for the driver) -> rows written
_Writer = Callable[[Connection, str, int, Iterable[tuple[Any, ...]]], int]


def insert_rows(session: Session, table: Table, columns: Sequence[str],
                rows: Iterable[Sequence[Any]], *, same: Mapping[str, Any] | None = None
                ) -> int:
    """INSERT each of ``rows`` (the values of ``columns``, in that order), plus the ``same``
    values in every row, into ``table`` in the session's transaction; how many went in.

    What ``session.execute(insert(table), rows)`` would store, at a fraction of its cost
    per row: each value passes through its column's type as a bound parameter would (the
    ``same`` ones once, not once a row), and the table's Python-side scalar defaults fill
    the columns not given. PostgreSQL (psycopg) takes the rows by one COPY, SQLite by
    INSERTs of many rows each. ``rows`` is read while it is written, so the database
    works on the first rows while the next are made: once its first row is out it must
    not use the session's connection (the COPY holds it; a generator over a query read
    whole, as iter_audience(batch=None) reads it, is fine)."""
    constants = {**_scalar_defaults(table, [*columns, *(same or {})]), **(same or {})}
    names = [*columns, *constants]
    connection = session.connection()  # the session's own: the rows join its transaction
    dialect = connection.dialect
    write: _Writer
    if dialect.name == "postgresql" and dialect.driver == "psycopg":
        write = _copy
    elif dialect.name == "sqlite" and dialect.paramstyle == "qmark":
        write = _insert_many
    else:  # another driver: SQLAlchemy's own executemany, the values as given
        return _insert_plainly(connection, table, names, rows, tuple(constants.values()))
    tail = tuple(_bound(table.c[name], value, dialect) for name, value in constants.items())
    processors = [(i, p) for i, name in enumerate(columns)
                  if (p := _processor(table.c[name], dialect)) is not None]

    def ready() -> Iterator[tuple[Any, ...]]:
        for row in rows:
            yield (*(_processed(row, processors) if processors else row), *tail)

    preparer = dialect.identifier_preparer
    into = f"{preparer.format_table(table)} ({', '.join(preparer.quote(n) for n in names)})"
    return write(connection, into, len(names), ready())


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


def _copy(connection: Connection, into: str, _width: int,
          rows: Iterable[tuple[Any, ...]]) -> int:
    sql = f"COPY {into} FROM STDIN"
    driver = connection.connection.driver_connection
    assert driver is not None  # a connection in use always has one
    iterator = iter(rows)
    first = next(iterator, None)  # a generator's query runs now, before the COPY holds on
    if first is None:
        return 0
    count = 0
    try:
        with driver.cursor() as cursor, cursor.copy(sql) as stream:
            for row in chain((first,), iterator):
                stream.write_row(row)
                count += 1
    except connection.dialect.loaded_dbapi.Error as exc:
        # As SQLAlchemy raises it for its own statements (OperationalError for a database
        # that went away, IntegrityError...): callers tell them apart.
        raise DBAPIError.instance(sql, None, exc, connection.dialect.loaded_dbapi.Error,
                                  hide_parameters=True, dialect=connection.dialect) from exc
    return count


def _insert_many(connection: Connection, into: str, width: int,
                 rows: Iterable[tuple[Any, ...]]) -> int:
    # Many rows a statement: SQLite sets up a statement's run once (the IN lists of
    # partial indexes, for one), not once a row; measured twice as fast as executemany
    # into outgoing_messages.
    driver = connection.connection.driver_connection
    assert driver is not None  # a connection in use always has one
    limit = driver.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    per_statement = max(1, min(limit // width, SQLITE_ROWS_PER_INSERT))
    placeholders = f"({', '.join('?' * width)})"
    count = 0
    iterator = iter(rows)
    while chunk := list(islice(iterator, per_statement)):
        connection.exec_driver_sql(
            f"INSERT INTO {into} VALUES {', '.join([placeholders] * len(chunk))}",
            tuple(chain.from_iterable(chunk)))
        count += len(chunk)
    return count


def _insert_plainly(connection: Connection, table: Table, names: Sequence[str],
                    rows: Iterable[Sequence[Any]], tail: tuple[Any, ...]) -> int:
    count = 0
    iterator = iter(rows)
    while chunk := list(islice(iterator, SQL_BATCH)):
        connection.execute(insert(table), [dict(zip(names, (*row, *tail), strict=True))
                                           for row in chunk])
        count += len(chunk)
    return count
