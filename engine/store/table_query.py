"""What every table the operator pages through shares: a search pattern, a stable order,
and the ids behind selected row ranges, all in SQL (see contact_browser, failed_query)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Boolean, Select, String
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement

# The escape character of every LIKE pattern built here; pass it with the pattern
# (``column.like(pattern, escape=LIKE_ESCAPE)``; contains_text does).
LIKE_ESCAPE = "\\"


def like_pattern(text: str) -> str | None:
    """``%text%`` for LIKE (with LIKE_ESCAPE), or None for no search. The operator searches
    for text, not patterns: ``%`` and ``_`` are escaped, so ``q3_reminder`` finds itself
    and not ``q3xreminder``."""
    text = text.strip()
    for special in (LIKE_ESCAPE, "%", "_"):
        text = text.replace(special, LIKE_ESCAPE + special)
    return f"%{text}%" if text else None


def stable_order(column: Any, descending: bool, tie: Any) -> list[Any]:
    """Order by ``column`` and then by ``tie`` (unique): pages never overlap or skip rows
    when many rows share a value."""
    direction = column.desc() if descending else column.asc()
    return [direction, tie.desc() if descending else tie.asc()]


def ids_in_rows(session: Session, ids: Select[Any],
                rows: Sequence[tuple[int, int]]) -> list[int]:
    """The ids at row ranges ``(first, last)`` of the table ``ids`` (a filtered, ordered
    SELECT of ids) shows: a selection of rows that were never loaded still names them."""
    found: list[int] = []
    for first, last in rows:
        found += session.scalars(ids.offset(first).limit(last - first + 1))
    return found



class contains_text(FunctionElement[bool]):
    """``column`` matches a LIKE ``pattern`` ignoring case: ILIKE on PostgreSQL; LIKE on
    SQLite, whose LIKE already ignores ASCII case (SQLAlchemy's ilike() wraps both sides in
    lower(), which costs a third of a 100,000-row search)."""

    type = Boolean()
    inherit_cache = True
    name = "contains_text"


def _escape_clause(compiler: Any) -> str:
    # Rendered by the dialect: PostgreSQL may want the backslash doubled in a literal.
    return f"ESCAPE {compiler.render_literal_value(LIKE_ESCAPE, String())}"


@compiles(contains_text)
def _ilike(element: contains_text, compiler: Any, **kw: Any) -> str:
    column, pattern = (compiler.process(c, **kw) for c in element.clauses)
    return f"{column} ILIKE {pattern} {_escape_clause(compiler)}"


@compiles(contains_text, "sqlite")
def _like_sqlite(element: contains_text, compiler: Any, **kw: Any) -> str:
    column, pattern = (compiler.process(c, **kw) for c in element.clauses)
    return f"{column} LIKE {pattern} {_escape_clause(compiler)}"


class scanned(FunctionElement[Any]):
    """A column SQLite's planner must not reach through an index (a unary ``+``, as SQLite
    documents); PostgreSQL plans from statistics and gets the plain column."""

    inherit_cache = True
    name = "scanned"


@compiles(scanned)
def _plain(element: scanned, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.clauses, **kw))


@compiles(scanned, "sqlite")
def _unary_plus(element: scanned, compiler: Any, **kw: Any) -> str:
    return "+" + str(compiler.process(element.clauses, **kw))
