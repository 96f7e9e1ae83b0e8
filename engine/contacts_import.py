"""Contact import from CSV: every good row in one transaction, every bad row reported.

A file-level problem (not text, empty, required columns missing) raises ImportFileError and
changes nothing. A bad row is reported with its line number and a plain reason and skipped;
the good rows are written together, so an import never leaves half a row or half a file.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from itertools import islice
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, delete, insert, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engine.db import Database
from engine.models import Contact, ContactTag, utcnow
from engine.money import AmountError, parse_amount
from engine.phones import PhoneError, normalize_phone

REQUIRED_COLUMNS = ("name", "phone", "pledge", "paid_amount", "due_date")
OPTIONAL_COLUMNS = ("tags",)
MAX_NAME = 200
MAX_TAG = 64
_SQL_BATCH = 500  # keeps IN (...) lists under every database's parameter limit


class ImportFileError(ValueError):
    """The file as a whole cannot be imported; nothing was changed."""


@dataclass(frozen=True)
class RowError:
    line: int
    reason: str


@dataclass(frozen=True)
class ContactRow:
    line: int
    name: str
    phone: str
    pledge_cents: int
    paid_cents: int
    due_date: date
    tags: tuple[str, ...]


@dataclass
class ImportResult:
    imported: int = 0
    updated: int = 0
    rejected: list[RowError] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "imported": self.imported,
            "updated": self.updated,
            "rejected": [{"line": r.line, "reason": r.reason} for r in self.rejected],
        }


def _batched(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def _decode(data: bytes, path: Path) -> str:
    if not data.strip():
        raise ImportFileError(f"{path.name} is empty: it needs a header row and contacts")
    if b"\x00" in data[:8192]:
        raise ImportFileError(
            f"{path.name} is not a CSV text file. Save the sheet as 'CSV UTF-8' and import that."
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ImportFileError(
            f"{path.name} is not UTF-8 text. Save the sheet as 'CSV UTF-8' and import that."
        ) from None


def _delimiter(header_line: str) -> str:
    # Spreadsheets in many locales save ';'-separated "CSV"; accept it and tabs too.
    if "," in header_line:
        return ","
    for candidate in (";", "\t"):
        if candidate in header_line:
            return candidate
    return ","


def _header_index(header: list[str], path: Path) -> dict[str, int]:
    names = [h.strip().lower() for h in header]
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen and name in REQUIRED_COLUMNS + OPTIONAL_COLUMNS:
            raise ImportFileError(f"{path.name}: column {name!r} appears twice in the header")
        seen.setdefault(name, i)
    missing = [c for c in REQUIRED_COLUMNS if c not in seen]
    if missing:
        raise ImportFileError(
            f"{path.name} lacks required column(s) {', '.join(missing)}. The header row needs "
            f"{', '.join(REQUIRED_COLUMNS)} (and optionally tags); found: "
            f"{', '.join(n for n in names if n) or 'nothing'}."
        )
    return seen


def _parse_tags(text: str) -> tuple[str, ...]:
    tags = dict.fromkeys(t.strip().lower() for t in text.split(";"))
    tags.pop("", None)
    for tag in tags:
        if len(tag) > MAX_TAG:
            raise ValueError(f"tag {tag[:20]!r}... is longer than {MAX_TAG} characters")
    return tuple(tags)


def _parse_row(line: int, values: list[str], columns: dict[str, int], width: int,
               region: str) -> ContactRow:
    if len(values) > width:
        raise ValueError(f"has {len(values)} values but the header has {width} columns "
                         "(an unquoted comma in a name or amount?)")
    fields = {name: values[index] for name, index in columns.items() if index < len(values)}
    return parse_contact(line, fields, region)


def parse_contact(line: int, fields: Mapping[str, str], region: str) -> ContactRow:
    """One contact from its text fields (a CSV row or the console's edit form); ValueError
    says what is wrong with it."""

    def get(name: str) -> str:
        return fields.get(name, "").strip()

    name = get("name")
    if not name:
        raise ValueError("name is empty")
    if len(name) > MAX_NAME:
        raise ValueError(f"name is longer than {MAX_NAME} characters")
    try:
        phone = normalize_phone(get("phone"), region)
    except PhoneError as exc:
        raise ValueError(f"bad phone: {exc}") from None
    amounts = {}
    for column in ("pledge", "paid_amount"):
        try:
            amounts[column] = parse_amount(get(column))
        except AmountError as exc:
            raise ValueError(f"bad {column}: {exc}") from None
    due_text = get("due_date")
    try:
        due = date.fromisoformat(due_text)
    except ValueError:
        shown = repr(due_text) if due_text else "empty"
        raise ValueError(f"bad due_date: {shown}; write it as YYYY-MM-DD") from None
    return ContactRow(line, name, phone, amounts["pledge"], amounts["paid_amount"], due,
                      _parse_tags(get("tags")))


def read_contacts_csv(path: Path, default_region: str) -> tuple[list[ContactRow], list[RowError]]:
    """Parse and validate a whole file without touching the database."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImportFileError(f"cannot read {path}: {exc.strerror}") from None
    text = _decode(data, path)
    first_line = text.lstrip("\r\n").split("\n", 1)[0]
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(first_line))
    try:
        header = next(r for r in reader if any(v.strip() for v in r))
    except StopIteration:
        raise ImportFileError(f"{path.name} is empty: it needs a header row and contacts") from None
    except csv.Error as exc:
        raise ImportFileError(f"{path.name} is not a readable CSV file: {exc}") from None
    columns = _header_index(header, path)
    rows: list[ContactRow] = []
    errors: list[RowError] = []
    first_line_of: dict[str, int] = {}
    line = reader.line_num
    while True:
        start = line + 1
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.append(RowError(start, f"unreadable CSV: {exc}"))
            break  # the reader cannot resynchronise after a broken quote
        line = reader.line_num
        if not any(v.strip() for v in values):
            continue
        try:
            row = _parse_row(start, values, columns, len(header), default_region)
        except ValueError as exc:
            errors.append(RowError(start, str(exc)))
            continue
        if row.phone in first_line_of:
            errors.append(RowError(start, f"phone {row.phone} is already on line "
                                          f"{first_line_of[row.phone]} of this file"))
            continue
        first_line_of[row.phone] = start
        rows.append(row)
    if not rows and not errors:
        raise ImportFileError(f"{path.name} has a header but no contacts")
    return rows, errors


def _contact_values(row: ContactRow) -> dict[str, Any]:
    return {"name": row.name, "phone": row.phone, "pledge_cents": row.pledge_cents,
            "paid_cents": row.paid_cents, "due_date": row.due_date}


def _existing_ids(session: Session, phones: Iterable[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for batch in _batched(list(phones), _SQL_BATCH):
        result = session.execute(select(Contact.phone, Contact.id).where(Contact.phone.in_(batch)))
        found.update((phone, id_) for phone, id_ in result)
    return found


_CONTACT_COLUMNS = ("name", "phone", "pledge_cents", "paid_cents", "due_date", "created_at",
                    "updated_at")
_UPDATED_COLUMNS = ("name", "pledge_cents", "paid_cents", "due_date", "updated_at")
_CONTACTS = cast(Table, Contact.__table__)
_CONTACT_TAGS = cast(Table, ContactTag.__table__)


def _write_sqlite(session: Session, rows: Sequence[ContactRow]) -> tuple[int, int]:
    existing = _existing_ids(session, (r.phone for r in rows))
    now = utcnow()
    upsert = sqlite.insert(_CONTACTS)
    stmt = upsert.on_conflict_do_update(
        index_elements=["phone"], set_={c: upsert.excluded[c] for c in _UPDATED_COLUMNS}
    ).returning(_CONTACTS.c.phone, _CONTACTS.c.id)
    values = [{**_contact_values(r), "created_at": now, "updated_at": now} for r in rows]
    ids: dict[str, int] = dict(session.execute(stmt, values).all())
    for batch in _batched(list(existing.values()), _SQL_BATCH):
        session.execute(delete(ContactTag).where(ContactTag.contact_id.in_(batch)))
    tag_rows = [{"contact_id": ids[r.phone], "tag": t} for r in rows for t in r.tags]
    if tag_rows:
        session.execute(insert(_CONTACT_TAGS), tag_rows)
    return len(rows) - len(existing), len(existing)


def _write_postgresql(session: Session, rows: Sequence[ContactRow]) -> tuple[int, int]:
    # COPY into a scratch table and set-based statements from there: about 4x faster than
    # batched INSERT ... VALUES and IN (...) lookups through the driver at 100,000 rows.
    connection = session.connection()
    sql = connection.exec_driver_sql
    driver = connection.connection.driver_connection
    assert driver is not None
    now = utcnow().replace(tzinfo=None)  # COPY bypasses UTCDateTime: naive UTC, as it stores
    columns = ", ".join(_CONTACT_COLUMNS)
    sql("CREATE TEMP TABLE contacts_import (LIKE contacts INCLUDING DEFAULTS) ON COMMIT DROP")
    with driver.cursor() as cursor, cursor.copy(
            f"COPY contacts_import ({columns}) FROM STDIN") as copy:
        for r in rows:
            copy.write_row([r.name, r.phone, r.pledge_cents, r.paid_cents, r.due_date, now, now])
    known = "SELECT c.id FROM contacts c JOIN contacts_import i USING (phone)"
    updated = sql(f"SELECT count(*) FROM ({known}) k").scalar_one()
    sql(f"DELETE FROM contact_tags WHERE contact_id IN ({known})")
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in _UPDATED_COLUMNS)
    result = sql(f"INSERT INTO contacts ({columns}) SELECT {columns} FROM contacts_import "
                 f"ON CONFLICT (phone) DO UPDATE SET {updates} RETURNING phone, id")
    ids: dict[str, int] = dict(result.all())
    with driver.cursor() as cursor, cursor.copy(
            "COPY contact_tags (contact_id, tag) FROM STDIN") as copy:
        for r in rows:
            for tag in r.tags:
                copy.write_row([ids[r.phone], tag])
    sql("DROP TABLE contacts_import")
    return len(rows) - updated, updated


def write_contacts(session: Session, rows: Sequence[ContactRow]) -> tuple[int, int]:
    """Insert new phones and update known ones (with their tags); return (imported, updated)."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return _write_postgresql(session, rows)
    if dialect == "sqlite":
        return _write_sqlite(session, rows)
    raise ImportFileError(f"contact import supports SQLite and PostgreSQL, not {dialect}")


def import_contacts(db: Database, path: Path, default_region: str) -> ImportResult:
    rows, errors = read_contacts_csv(path, default_region)
    result = ImportResult(rejected=errors)
    if rows:
        try:
            with db.session() as session:
                result.imported, result.updated = write_contacts(session, rows)
        except IntegrityError as exc:
            raise ImportFileError(
                f"the database refused the import, so nothing from this file was saved "
                f"({exc.orig}). If another import ran at the same time, run this one again."
            ) from None
    return result
