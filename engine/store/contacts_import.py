"""Contact import from CSV or an Excel workbook (.xlsx): every good row in one
transaction, every bad row reported.

A file-level problem (not text, empty, too large, too many columns, required columns
missing, broken CSV quoting, a damaged or oversized workbook) raises ImportFileError and
changes nothing. A bad row is reported with its line number (a workbook's: its sheet row
number) and a plain reason and skipped; the good rows are written together, so an import
never leaves half a row or half a file, and no line of the file goes unaccounted for: each
is imported, updated, rejected with its line, or blank. A workbook's first sheet is read
with the same columns and rules as CSV (engine.store.xlsx_rows turns its cells into text).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, delete, insert, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engine.domain.errors import OperatorError
from engine.domain.money import AmountError, parse_amount
from engine.domain.phones import PhoneError, normalize_phone
from engine.store.bulk_sql import batched
from engine.store.db import Database
from engine.store.models import Contact, ContactTag, utcnow

REQUIRED_COLUMNS = ("name", "phone", "pledge", "paid_amount", "due_date")
OPTIONAL_COLUMNS = ("tags",)
MAX_NAME = 200
MAX_TAG = 64
# 1,000,000 contacts at up to 200 bytes a row (a typical row is 60 to 90 bytes: name,
# E.164 phone, two amounts, a date, a few tags), with room for extra columns.
MAX_FILE_BYTES = 200 * 1024 * 1024
MAX_COLUMNS = 100  # the six RelayDesk reads plus whatever else a sheet carries
# A workbook is limited by its rows, as many as the CSV size limit is sized for (its
# file size says little: a sheet compresses 5 to 20 times).
MAX_XLSX_ROWS = 1_000_000
MAX_LISTED_REJECTIONS = 100  # kept with their reasons; the rest are only counted
# C0 and C1 controls and DEL (NUL, tab, line breaks, escape...) plus the Unicode line and
# paragraph separators: none belongs in a name or tag, and each breaks a message or a table.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_WRITE_BATCH = 10_000  # contacts written per statement batch of an import


class ImportFileError(OperatorError, ValueError):
    """The file as a whole cannot be imported; nothing was changed."""


@dataclass(frozen=True)
class RowError:
    line: int
    reason: str


@dataclass(frozen=True, slots=True)  # slots: an import holds every good row until it writes
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
    """What an import did. ``rejected`` lists the first MAX_LISTED_REJECTIONS bad rows;
    ``rejected_count`` counts them all (a broken 10 MB file must not make a 15 MB report)."""

    imported: int = 0
    updated: int = 0
    rejected: list[RowError] = field(default_factory=list)
    rejected_count: int = 0

    @property
    def rejected_not_listed(self) -> int:
        return self.rejected_count - len(self.rejected)

    def as_dict(self) -> dict[str, Any]:
        return {
            "imported": self.imported,
            "updated": self.updated,
            "rejected_count": self.rejected_count,
            "rejected": [{"line": r.line, "reason": r.reason} for r in self.rejected],
            "rejected_not_listed": self.rejected_not_listed,
        }

    def rejection_lines(self, unit: str = "row") -> list[str]:
        """The report of the rejected ``unit``s, one line each, as every front end shows it."""
        lines = [f"line {r.line}: {r.reason}" for r in self.rejected]
        if self.rejected_not_listed:
            lines.append(f"... and {self.rejected_not_listed:,} more rejected {unit}(s) not "
                         f"listed (only the first {len(self.rejected)} are shown)")
        return lines

    def reject(self, error: RowError) -> None:
        self.rejected_count += 1
        if len(self.rejected) < MAX_LISTED_REJECTIONS:
            self.rejected.append(error)


def _read_bytes(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size <= MAX_FILE_BYTES:
            with path.open("rb") as file:
                data = file.read(MAX_FILE_BYTES + 1)  # it may have grown since stat
                size = len(data)
    except OSError as exc:
        raise ImportFileError(f"cannot read {path}: {exc.strerror}") from None
    if size > MAX_FILE_BYTES:
        raise ImportFileError(
            f"{path.name} is {size / 2**20:,.0f} MB; RelayDesk imports files of up to "
            f"{MAX_FILE_BYTES // 2**20} MB (about 1,000,000 contacts). Split it into smaller "
            "files and import each; nothing was imported.")
    return data


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
    if len(header) > MAX_COLUMNS:
        raise ImportFileError(
            f"{path.name} has {len(header):,} columns; RelayDesk reads files with at most "
            f"{MAX_COLUMNS}. Delete the columns it does not need (it reads "
            f"{', '.join(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)}) and import it again.")
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
            f"{', '.join(n[:40] for n in names if n) or 'nothing'}."
        )
    return {name: i for name, i in seen.items() if name in REQUIRED_COLUMNS + OPTIONAL_COLUMNS}


def _check_text(what: str, text: str) -> None:
    found = _CONTROL.search(text)
    if found:
        raise ValueError(f"{what} contains a control character (U+{ord(found.group()):04X}, "
                         f"character {found.start() + 1}): remove it")


def _parse_tags(text: str) -> tuple[str, ...]:
    tags = dict.fromkeys(t.strip().lower() for t in text.split(";"))
    tags.pop("", None)
    for tag in tags:
        if len(tag) > MAX_TAG:
            raise ValueError(f"tag {tag[:20]!r}... is longer than {MAX_TAG} characters")
        _check_text(f"tag {tag[:20]!r}", tag)
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
    says what is wrong with it. The one set of rules for the CLI's and the console's
    import and the contact edit dialog."""

    def get(name: str) -> str:
        return fields.get(name, "").strip()

    name = get("name")
    if not name:
        raise ValueError("name is empty")
    if len(name) > MAX_NAME:
        raise ValueError(f"name is longer than {MAX_NAME} characters")
    _check_text("name", name)
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
        shown = repr(due_text[:20]) if due_text else "empty"
        raise ValueError(f"bad due_date: {shown}; write it as YYYY-MM-DD") from None
    return ContactRow(line, name, phone, amounts["pledge"], amounts["paid_amount"], due,
                      _parse_tags(get("tags")))


def _csv_problem(exc: csv.Error) -> str:
    text = str(exc)
    if "unexpected end of data" in text:
        return 'a quoted field starts here and is never closed (a stray " ?)'
    if "field larger than field limit" in text:
        return (f"a field starting here runs past {csv.field_size_limit():,} characters "
                '(a stray " that swallows the lines after it?)')
    if "expected after" in text:
        return ('a quoted field starting here is followed by more text before the next '
                'separator (a stray " ?)')
    return f"unreadable CSV ({text})"


def _refuse(path: Path, line: int, problem: str) -> ImportFileError:
    return ImportFileError(f"{path.name}, line {line}: {problem}. Nothing was imported: fix "
                           "that line and import the file again.")


def _swallowed_rows(values: list[str], delimiter: str, width: int) -> int | None:
    """The line offset, within this record, of a field that swallowed whole rows: a line
    it runs on to holds a row's worth of separators (a stray quote opened it, and the rows
    after it became its text). None when there is no such field."""
    offset = 0
    for value in values:
        lines = _LINE_BREAK.split(value)
        if any(part.count(delimiter) >= width - 1 for part in lines[1:]):
            return offset
        offset += len(lines) - 1
    return None


def _header(reader: Any, path: Path) -> list[str]:
    """The first non-blank row of the file."""
    start = 1
    try:
        while True:
            header: list[str] = next(reader)
            if any(v.strip() for v in header):
                return header
            start = reader.line_num + 1
    except StopIteration:
        raise ImportFileError(f"{path.name} is empty: it needs a header row and contacts") from None
    except csv.Error as exc:
        raise _refuse(path, start, _csv_problem(exc)) from None


def _records(reader: Any, path: Path, delimiter: str,
             width: int) -> Iterator[tuple[int, int, list[str]]]:
    """``(first line, last line, values)`` of every non-blank record after the header; a
    record the CSV format cannot account for refuses the whole file."""
    line = reader.line_num
    while True:
        start = line + 1
        try:
            values: list[str] = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise _refuse(path, start, _csv_problem(exc)) from None
        line = reader.line_num
        if not any(v.strip() for v in values):
            continue
        if line > start:
            offset = _swallowed_rows(values, delimiter, width)
            if offset is not None:
                raise _refuse(path, start + offset,
                              f"a quoted field starts here and runs to line {line}, taking "
                              'in whole rows (a stray " ?)')
        yield start, line, values


def _collect(records: Iterable[tuple[int, int, list[str]]], columns: dict[str, int],
             width: int, default_region: str, path: Path,
             unit: str) -> tuple[list[ContactRow], ImportResult]:
    """The good rows of ``records`` (first line, last line, values) and an ImportResult
    with the rejected ones; ``unit`` names what the numbers count ("line", "row")."""
    rows: list[ContactRow] = []
    result = ImportResult()
    first_line_of: dict[str, int] = {}
    for start, end, values in records:
        try:
            row = _parse_row(start, values, columns, width, default_region)
        except ValueError as exc:
            span = f" (this row spans lines {start} to {end})" if end > start else ""
            result.reject(RowError(start, f"{exc}{span}"))
            continue
        if row.phone in first_line_of:
            result.reject(RowError(start, f"phone {row.phone} is already on {unit} "
                                          f"{first_line_of[row.phone]} of this file"))
            continue
        first_line_of[row.phone] = start
        rows.append(row)
    if not rows and not result.rejected_count:
        raise ImportFileError(f"{path.name} has a header but no contacts")
    return rows, result


def read_contacts_csv(path: Path, default_region: str) -> tuple[list[ContactRow], ImportResult]:
    """Parse and validate a whole file without touching the database: the good rows, and
    an ImportResult with the rejected ones."""
    text = _decode(_read_bytes(path), path)
    first_line = text.lstrip("\r\n").split("\n", 1)[0]
    delimiter = _delimiter(first_line)
    # strict: a quote that is never closed, or closed in mid-field, is an error to report,
    # not a field that silently swallows the rows after it.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header = _header(reader, path)
    columns = _header_index(header, path)
    return _collect(_records(reader, path, delimiter, len(header)), columns, len(header),
                    default_region, path, "line")


def read_contacts_xlsx(path: Path, default_region: str) -> tuple[list[ContactRow], ImportResult]:
    """As read_contacts_csv, for the first sheet of an .xlsx workbook; a row's number is
    its sheet row number."""
    # Imported here: xlsx_rows raises this module's ImportFileError.
    from engine.store.xlsx_rows import first_sheet

    with first_sheet(path, max_bytes=MAX_FILE_BYTES, max_rows=MAX_XLSX_ROWS) as sheet:
        columns = _header_index(sheet.header, path)
        records = ((number, number, values) for number, values in sheet.rows)
        return _collect(records, columns, len(sheet.header), default_region, path, "row")


def read_contacts(path: Path, default_region: str) -> tuple[list[ContactRow], ImportResult]:
    """A workbook (.xlsx) or CSV file's contacts, by the file's suffix."""
    if path.suffix.lower() == ".xlsx":
        return read_contacts_xlsx(path, default_region)
    return read_contacts_csv(path, default_region)


def _contact_values(row: ContactRow) -> dict[str, Any]:
    return {"name": row.name, "phone": row.phone, "pledge_cents": row.pledge_cents,
            "paid_cents": row.paid_cents, "due_date": row.due_date}


def _existing_ids(session: Session, phones: Iterable[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for batch in batched(list(phones)):
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
    for batch in batched(list(existing.values())):
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
    """Insert new phones and update known ones (with their tags); return (imported, updated).
    Written in batches, in the caller's one transaction: what a batch needs on the way (its
    parameters, the ids returned) never exists for the whole file at once."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        write = _write_postgresql
    elif dialect == "sqlite":
        write = _write_sqlite
    else:
        raise ImportFileError(f"contact import supports SQLite and PostgreSQL, not {dialect}")
    imported = updated = 0
    for batch in batched(rows, _WRITE_BATCH):
        new, known = write(session, batch)
        imported, updated = imported + new, updated + known
    return imported, updated


def import_contacts(db: Database, path: Path, default_region: str) -> ImportResult:
    rows, result = read_contacts(path, default_region)
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
