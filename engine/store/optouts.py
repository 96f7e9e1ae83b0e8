"""The opt-out (suppression) list: numbers RelayDesk never sends to.

Numbers are stored in E.164. Adding a number that is already listed keeps its first record
(when, why and by whom it was first listed), so a provider that reports the same opt-out
twice, or an import run again, changes nothing. The planner leaves listed numbers out
(engine.store.audience_query) and the sender checks again at send time
(engine.store.delivery_state), so this module only keeps the list.

Every change to the list (added, removed, or a START reply that was refused: kept) writes
an ``OptOutEvent`` in the same transaction: the list says who is out now, the history how
it came to be (``opt_out_history``). A number the operator listed (by hand or by import)
is only taken off by the operator, never by a START reply.

An import reads its rows (``PhoneLine``: line number, text, optional reason) separately from
applying them: ``ROW_READERS`` maps a file suffix to a reader, CSV (or one number per line)
being the default, so another format adds a reader and nothing else.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, insert, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engine.domain.csv_safe import SafeCsvWriter
from engine.domain.phones import PhoneError, normalize_phone
from engine.store.bulk_sql import batched, insert_ignoring
from engine.store.contacts_import import (
    _LINE_BREAK,
    MAX_COLUMNS,
    MAX_FILE_BYTES,
    MAX_XLSX_ROWS,
    ImportFileError,
    ImportResult,
    RowError,
    _decode,
    _delimiter,
    _header,
    _read_bytes,
    _records,
)
from engine.store.db import Database
from engine.store.models import OptAction, OptOut, OptOutEvent, OptSource, utcnow
from engine.store.private_export import written_whole
from engine.store.xlsx_rows import first_sheet

MAX_REASON = 500  # a provider's error text or an operator's note, not a document
EXPORT_COLUMNS = ("phone", "reason", "source", "created_at")


@dataclass
class OptOutChange:
    """What an add or a remove did. ``added`` and ``already`` (listed before) answer an add,
    ``removed`` and ``not_listed`` a remove; ``invalid`` holds ``(text, why)`` for each text
    that is not a phone number."""

    added: int = 0
    already: int = 0
    removed: int = 0
    not_listed: int = 0
    invalid: list[tuple[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"added": self.added, "already": self.already, "removed": self.removed,
                "not_listed": self.not_listed,
                "invalid": [{"text": text, "reason": why} for text, why in self.invalid]}


@dataclass
class OptOutImport(ImportResult):
    """What an import did: ``imported`` numbers added, ``already`` on the list (or earlier
    in the file), and the rejected lines with their reasons (the first 100 listed)."""

    already: int = 0

    def as_dict(self) -> dict[str, Any]:
        data = super().as_dict()
        del data["updated"]  # a listed number is never updated: it counts as already
        return {**data, "already": self.already}


@dataclass(frozen=True)
class PhoneLine:
    """One row of an opt-out file: its line (or sheet row) number, the number as written,
    and its own reason if the file has a reason column."""

    line: int
    text: str
    reason: str | None = None


RowReader = Callable[[Path], Iterator[PhoneLine]]


def _insert_new(session: Session, phones: dict[str, str], source: OptSource,
                at: datetime | None = None) -> list[str]:
    """Add ``phones`` (number -> reason) not listed yet, each with its 'added' event;
    return the numbers that were added."""
    if not phones:
        return []
    now = at or utcnow()
    # A number already listed (by anyone, even a worker adding it at this moment) is
    # skipped, not a failure.
    stmt = insert_ignoring(session, OptOut, "phone").returning(OptOut.phone)
    values = [{"phone": phone, "reason": reason[:MAX_REASON], "source": str(source),
               "created_at": now} for phone, reason in phones.items()]
    added = list(session.scalars(stmt, values))
    _record(session, [(phone, phones[phone]) for phone in added], OptAction.ADDED, source, now)
    return added


def _record(session: Session, changes: list[tuple[str, str]], action: OptAction,
            source: OptSource, at: datetime) -> None:
    """Write one history event per (number, reason)."""
    if changes:
        session.execute(insert(OptOutEvent), [
            {"phone": phone, "action": str(action), "source": str(source),
             "reason": reason[:MAX_REASON], "at": at} for phone, reason in changes])


def _normalised(phones: Iterable[str], region: str,
                change: OptOutChange) -> list[str]:
    """The distinct E.164 forms of ``phones``; the texts that are not numbers go to
    ``change.invalid``."""
    found: dict[str, None] = {}
    for text in phones:
        try:
            found[normalize_phone(text, region)] = None
        except PhoneError as exc:
            change.invalid.append((text, str(exc)))
    return list(found)


def add_optouts(session: Session, phones: Iterable[str], *, region: str, reason: str = "",
                source: OptSource = OptSource.MANUAL) -> OptOutChange:
    """List ``phones`` (any format ``region`` reads); a listed number keeps its record."""
    change = OptOutChange()
    valid = _normalised(phones, region, change)
    change.added = len(_insert_new(session, dict.fromkeys(valid, reason.strip()), source))
    change.already = len(valid) - change.added
    return change


def list_number(session: Session, phone: str, *, reason: str, source: OptSource,
                at: datetime | None = None) -> bool:
    """List ``phone`` exactly as given: a message's number, already E.164 (the sender, when
    the provider says the recipient opted out; a STOP reply), so no rule can refuse it.
    Whether it was new (a listed number keeps its entry, and no event is written)."""
    return bool(_insert_new(session, {phone: reason.strip()}, source, at))


def remove_optouts(session: Session, phones: Iterable[str], *, region: str,
                   source: OptSource = OptSource.MANUAL, reason: str = "") -> OptOutChange:
    """Take ``phones`` off the list: they may be sent to again. ``source`` is who took
    them off (the operator, by default), kept in the history with ``reason``."""
    change = OptOutChange()
    valid = _normalised(phones, region, change)
    now = utcnow()
    for batch in batched(valid):
        removed = list(session.scalars(
            delete(OptOut).where(OptOut.phone.in_(batch)).returning(OptOut.phone)
            .execution_options(synchronize_session=False)))
        _record(session, [(phone, reason.strip()) for phone in removed], OptAction.REMOVED,
                source, now)
        change.removed += len(removed)
    change.not_listed = len(valid) - change.removed
    return change


# Entries the operator made: a START reply does not lift them.
OPERATOR_SOURCES = (OptSource.MANUAL, OptSource.IMPORT)


def opt_in_by_reply(session: Session, phone: str, *, reason: str,
                    at: datetime | None = None) -> OptAction | None:
    """A START reply from ``phone`` (E.164): take it off the list (REMOVED), unless the
    operator listed it, which only the operator lifts: then the refusal is kept in the
    history (KEPT). None when it was not listed."""
    now = at or utcnow()
    removed = session.scalar(
        delete(OptOut).where(OptOut.phone == phone)
        .where(OptOut.source.not_in([str(s) for s in OPERATOR_SOURCES]))
        .returning(OptOut.phone).execution_options(synchronize_session=False))
    if removed is not None:
        _record(session, [(phone, reason)], OptAction.REMOVED, OptSource.REPLY, now)
        return OptAction.REMOVED
    source = session.scalar(select(OptOut.source).where(OptOut.phone == phone))
    if source is None:
        return None
    _record(session, [(phone, f"{reason}; kept: listed by the operator ({source}), who "
                              "alone can take it off")], OptAction.KEPT, OptSource.REPLY, now)
    return OptAction.KEPT


def _searched(stmt: Any, search: str | None) -> Any:
    text = (search or "").strip()
    if not text:
        return stmt
    # % and _ are found as typed, not as wildcards.
    found = [OptOut.phone.contains(text, autoescape=True),
             OptOut.reason.contains(text, autoescape=True)]
    digits = "".join(c for c in text if c.isdigit())
    if digits and not text.strip("+0123456789 -()."):
        # A number as the operator writes it locally ("0712 345") finds its E.164 form.
        found.append(OptOut.phone.contains(digits.lstrip("0") or digits))
    return stmt.where(or_(*found))


def list_optouts(session: Session, *, search: str | None = None, offset: int = 0,
                 limit: int | None = None) -> list[OptOut]:
    """Listed numbers, newest first; ``search`` matches part of the number or the reason."""
    stmt = _searched(select(OptOut), search).order_by(OptOut.created_at.desc(),
                                                      OptOut.phone)
    return list(session.scalars(stmt.offset(offset).limit(limit)))


def count_optouts(session: Session, search: str | None = None) -> int:
    return session.scalar(_searched(select(func.count()).select_from(OptOut), search)) or 0


def is_opted_out(session: Session, phone: str) -> bool:
    """Whether ``phone`` (E.164) is on the list."""
    return session.scalar(select(select(OptOut.phone).where(OptOut.phone == phone)
                                 .exists())) or False


def opted_out_phones(session: Session, phones: Iterable[str]) -> set[str]:
    """Those of ``phones`` (E.164) that are on the list."""
    found: set[str] = set()
    for batch in batched(list(dict.fromkeys(phones))):
        found.update(session.scalars(select(OptOut.phone).where(OptOut.phone.in_(batch))))
    return found


def optout_dict(optout: OptOut) -> dict[str, Any]:
    return {"phone": optout.phone, "reason": optout.reason, "source": optout.source,
            "created_at": optout.created_at.isoformat()}


# The list's history.

def _history(stmt: Any, phone: str | None) -> Any:
    return stmt if phone is None else stmt.where(OptOutEvent.phone == phone)


def opt_out_history(session: Session, phone: str | None = None, offset: int = 0,
                    limit: int = 200) -> list[dict[str, Any]]:
    """The list's changes, newest first (of one number, E.164, when given): each a dict
    with id, phone, action (added / removed / kept), source, reason and at (ISO 8601)."""
    stmt = _history(select(OptOutEvent), phone).order_by(OptOutEvent.at.desc(),
                                                         OptOutEvent.id.desc())
    return [event_dict(e) for e in session.scalars(stmt.offset(offset).limit(limit))]


def count_history(session: Session, phone: str | None = None) -> int:
    return session.scalar(_history(select(func.count()).select_from(OptOutEvent),
                                   phone)) or 0


def event_dict(event: OptOutEvent) -> dict[str, Any]:
    return {"id": event.id, "phone": event.phone, "action": event.action,
            "source": event.source, "reason": event.reason, "at": event.at.isoformat()}


# Reading an import file.

def _column(header: list[str], name: str, path: Path) -> int | None:
    names = [h.strip().lower() for h in header]
    if names.count(name) > 1:
        raise ImportFileError(f"{path.name}: column {name!r} appears twice in the header")
    return names.index(name) if name in names else None


def read_csv_lines(path: Path) -> Iterator[PhoneLine]:
    """The rows of a CSV file with a ``phone`` column (and maybe ``reason``, as an export
    writes it), or of a file with one number per line; file-level problems (size, encoding,
    broken quoting) raise ImportFileError as for contacts."""
    text = _decode(_read_bytes(path), path)
    first_line = text.lstrip("\r\n").split("\n", 1)[0]
    delimiter = _delimiter(first_line)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header = _header(reader, path)
    phone = _column(header, "phone", path)
    if phone is None:
        if len(header) > 1:
            raise ImportFileError(
                f"{path.name} has columns but none is called 'phone'. Name the column of "
                "numbers 'phone' in the header row, or list one number per line.")
        # One number per line, no header: every non-blank line is a number.
        for number, line in enumerate(_LINE_BREAK.split(text), start=1):
            if line.strip():
                yield PhoneLine(number, line.strip().lstrip("\ufeff"))
        return
    if len(header) > MAX_COLUMNS:
        raise ImportFileError(
            f"{path.name} has {len(header):,} columns; RelayDesk reads files with at most "
            f"{MAX_COLUMNS}. Keep the phone column (and reason) and import it again.")
    reason = _column(header, "reason", path)
    for start, _end, values in _records(reader, path, delimiter, len(header)):
        yield PhoneLine(start, values[phone] if phone < len(values) else "",
                        values[reason] if reason is not None and reason < len(values)
                        else None)


def read_xlsx_lines(path: Path) -> Iterator[PhoneLine]:
    """The rows of a workbook's first sheet, by the same rules as CSV: a ``phone`` column
    (and maybe ``reason``), or one number per row in a single column; a row's number is
    its sheet row number."""
    with first_sheet(path, max_bytes=MAX_FILE_BYTES, max_rows=MAX_XLSX_ROWS) as sheet:
        phone = _column(sheet.header, "phone", path)
        if phone is None:
            if len(sheet.header) > 1:
                raise ImportFileError(
                    f"{path.name} has columns but none is called 'phone'. Name the column of "
                    "numbers 'phone' in the header row, or list one number per row.")
            yield PhoneLine(sheet.header_row, sheet.header[0].strip())
            for number, values in sheet.rows:
                yield PhoneLine(number, values[0].strip())
            return
        if len(sheet.header) > MAX_COLUMNS:
            raise ImportFileError(
                f"{path.name} has {len(sheet.header):,} columns; RelayDesk reads files with at "
                f"most {MAX_COLUMNS}. Keep the phone column (and reason) and import it again.")
        reason = _column(sheet.header, "reason", path)
        for number, values in sheet.rows:
            yield PhoneLine(number, values[phone], None if reason is None else values[reason])


# Suffix -> reader; any other suffix is read as CSV or one number per line.
ROW_READERS: dict[str, RowReader] = {".xlsx": read_xlsx_lines}


def read_lines(path: Path) -> Iterator[PhoneLine]:
    return ROW_READERS.get(path.suffix.lower(), read_csv_lines)(path)


def check_lines(lines: Iterable[PhoneLine], region: str, default_reason: str,
                result: OptOutImport) -> dict[str, str]:
    """The numbers to list (E.164 -> reason), in file order; bad lines are rejected into
    ``result``, repeats within the file counted as ``already``."""
    good: dict[str, str] = {}
    for line in lines:
        try:
            phone = normalize_phone(line.text, region)
        except PhoneError as exc:
            result.reject(RowError(line.line, f"bad phone: {exc}"))
            continue
        if phone in good:
            result.already += 1
            continue
        good[phone] = (line.reason or "").strip() or default_reason
    return good


def import_optouts(db: Database, path: Path, *, region: str, reason: str = "",
                   source: OptSource = OptSource.IMPORT) -> OptOutImport:
    """List every good number of the file in one transaction; nothing if the file cannot
    be read. Numbers already listed keep their record and count as ``already``."""
    result = OptOutImport()
    good = check_lines(read_lines(path), region, reason.strip(), result)
    if not good and not result.rejected_count:
        raise ImportFileError(f"{path.name} has no phone numbers")
    if good:
        try:
            with db.session() as session:
                result.imported = len(_insert_new(session, good, source))
        except IntegrityError as exc:
            raise ImportFileError(
                f"the database refused the import, so nothing from this file was saved "
                f"({exc.orig}). Run it again.") from None
        result.already += len(good) - result.imported
    return result


def export_optouts(session: Session, out: Path) -> int:
    """Write the whole list (newest first) as CSV to ``out``, whole or not at all, readable
    by the operator only (0600); return how many numbers it holds. It re-imports as is."""
    count = 0
    with written_whole(out) as file:
        writer = SafeCsvWriter(file)  # a reason such as "=cmd" is not run as a formula
        writer.writerow(EXPORT_COLUMNS)
        stmt = (select(OptOut.phone, OptOut.reason, OptOut.source, OptOut.created_at)
                .order_by(OptOut.created_at.desc(), OptOut.phone)
                .execution_options(yield_per=1000))
        for phone, why, source, created_at in session.execute(stmt):
            writer.writerow([phone, why, source, created_at.isoformat()])
            count += 1
    return count
