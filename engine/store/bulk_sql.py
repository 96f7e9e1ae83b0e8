"""Statements over many rows at once, the same on SQLite and PostgreSQL: IN lists cut to
a size every database takes, and an INSERT that skips the rows a unique key already holds."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import islice
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
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
