"""The rows of an Excel workbook's (.xlsx) first sheet, as text, for the imports.

Each cell becomes the text a CSV file would hold for it, so an import applies its CSV
rules unchanged: a number cell is written with Excel's own 15 significant digits
(254712345678, never 2.54712345678E11; 1250.5, never 1250.4999999999998), a date cell as
YYYY-MM-DD, a formula as the value Excel last computed for it.

A workbook is a zip archive of XML files. Its directory is checked before anything is
expanded: the sizes it declares must add up to at most MAX_UNCOMPRESSED_BYTES, and no large
member may be compressed more than MAX_RATIO to 1 (a zip bomb is, around 1,000 to 1; a
sheet is 5 to 20). Python's zipfile, which openpyxl reads through, never inflates a member
past its declared size (the CRC check fails instead), so the declared sizes are the bound.

The sheet is streamed row by row with openpyxl's read-only mode, so memory stays flat
however many rows it has. python-calamine reads about ten times faster but builds the
whole sheet as one dense grid before the first row: 45 MB more per 100,000 contacts, and
a 10 KB sheet with one cell in A1 and one in XFD1048576 makes it allocate 550 GB and abort
the process (benchmarks/xlsx_import.py has the figures).
"""

from __future__ import annotations

import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, BinaryIO
from xml.etree import ElementTree

from engine.store.contacts_import import ImportFileError

EXCEL_MAX_ROWS = 1_048_576  # Excel's last row: a sheet whose rows go past it is not real
MAX_UNCOMPRESSED_BYTES = 1024 * 2**20  # about three times a 1,000,000-contact sheet
MAX_RATIO = 200
_RATIO_FROM_BYTES = 2**20  # a member smaller than this cannot bomb anything
_ENCRYPTED = 0x1  # zip general-purpose flag: the member is encrypted
# A password-protected .xlsx is an OLE2 compound file (so is an old .xls), not a zip.
_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_SAVE_AS = "Open it in Excel, save it as an Excel Workbook (.xlsx) and import that"


@dataclass
class Sheet:
    """The first sheet: its header (the first non-blank row, trailing blank cells dropped)
    and then ``rows``, each non-blank row after it as ``(sheet row number, texts)`` cut or
    padded to the header's width."""

    header_row: int
    header: list[str]
    rows: Iterator[tuple[int, list[str]]]


def cell_text(value: Any) -> str:
    """A cell's value as the text an import reads."""
    if value is None:
        return ""
    if isinstance(value, bool):  # before the numbers: a bool is an int
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        # Excel keeps 15 significant digits; the binary float's tail beyond them is noise.
        return format(value, ".15g")
    if isinstance(value, datetime):
        value = value.date() if value.time() == time() else value.isoformat(" ")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)  # text, a whole number, a time of day or a duration


def _refused(path: Path, problem: str) -> ImportFileError:
    return ImportFileError(f"{path.name} {problem}; nothing was imported.")


def check_archive(file: BinaryIO, path: Path, max_bytes: int) -> None:
    """Refuse, before expanding anything, a file that is not an .xlsx workbook or that
    would expand past the limits."""
    size = path.stat().st_size
    if size > max_bytes:
        raise _refused(path, f"is {size / 2**20:,.0f} MB; RelayDesk imports workbooks of up "
                             f"to {max_bytes // 2**20} MB. Split it into smaller files")
    start = file.read(len(_OLE2))
    if start == _OLE2:
        raise _refused(path, "is password-protected or an old .xls workbook. Open it in "
                             "Excel, remove the password and save it as an Excel Workbook "
                             "(.xlsx), then import that")
    try:
        with zipfile.ZipFile(file) as archive:  # reads the directory only
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        if b"\x00" not in start and start.strip():
            raise _refused(path, "is not an Excel workbook: it looks like text. If it is a "
                                 "CSV file, name it .csv and import it again") from None
        raise _refused(path, f"is not an Excel workbook (.xlsx), or it is damaged. "
                             f"{_SAVE_AS}") from None
    if any(member.flag_bits & _ENCRYPTED for member in members):
        raise _refused(path, f"is encrypted. {_SAVE_AS} without a password")
    total = sum(member.file_size for member in members)
    if total > MAX_UNCOMPRESSED_BYTES:
        raise _refused(path, f"would expand to {total / 2**20:,.0f} MB of XML; RelayDesk reads "
                             f"workbooks of up to {MAX_UNCOMPRESSED_BYTES // 2**20:,} MB "
                             "expanded. Split it into smaller files")
    for member in members:
        if (member.file_size > _RATIO_FROM_BYTES
                and member.file_size > MAX_RATIO * max(member.compress_size, 1)):
            raise _refused(path, f"is not a plain workbook: its part {member.filename[:60]!r} "
                                 f"expands {member.file_size // max(member.compress_size, 1):,} "
                                 f"times (a zip bomb?). {_SAVE_AS}")


def _unreadable(path: Path, exc: Exception, row: int | None = None) -> ImportFileError:
    where = f" at sheet row {row}" if row else ""
    detail = str(exc)[:200] or type(exc).__name__
    return _refused(path, f"could not be read as an Excel workbook{where} ({detail}). "
                          f"{_SAVE_AS}")


def _row_texts(values: tuple[Any, ...]) -> list[str]:
    return [cell_text(v) for v in values]


def _past_last_row(path: Path) -> ImportFileError:
    return _refused(path, f"has rows numbered past Excel's last row ({EXCEL_MAX_ROWS:,}): it "
                          f"was not written by a spreadsheet program. {_SAVE_AS}")


def _header(sheet: Any, path: Path) -> tuple[int, list[str]]:
    rows = sheet.iter_rows(values_only=True)
    number = 0
    while True:
        number += 1
        try:
            values = next(rows)
        except StopIteration:
            raise _refused(path, "is empty: its first sheet needs a header row and the rows "
                                 "to import below it") from None
        except Exception as exc:  # openpyxl meets a damaged file with any exception type
            raise _unreadable(path, exc, number) from None
        if number > EXCEL_MAX_ROWS:
            raise _past_last_row(path)
        texts = _row_texts(values)
        if any(t.strip() for t in texts):
            rows.close()
            while not texts[-1].strip():
                texts.pop()
            return number, texts


def _rows(sheet: Any, path: Path, start: int, width: int,
          max_rows: int) -> Iterator[tuple[int, list[str]]]:
    # max_col: each row is read as the header's width, whatever far cell it holds.
    rows = sheet.iter_rows(min_row=start, max_col=width, values_only=True)
    number, count = start - 1, 0
    while True:
        number += 1
        try:
            values = next(rows)
        except StopIteration:
            return
        except Exception as exc:  # as in _header
            raise _unreadable(path, exc, number) from None
        if number > EXCEL_MAX_ROWS:
            raise _past_last_row(path)
        if all(v is None for v in values):  # a gap in the sheet: up to a million of them
            continue
        texts = _row_texts(values)
        if not any(t.strip() for t in texts):
            continue
        count += 1
        if count > max_rows:
            raise _refused(path, f"has more than {max_rows:,} rows below its header; "
                                 "RelayDesk imports up to that many at once. Split it into "
                                 "smaller files")
        yield number, texts


_SHEET_NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"


def _refuse_formulas_without_values(sheet: Any, path: Path) -> None:
    """A formula is read by its saved result. A workbook written by a program (a script,
    an export) may hold formulas that were never calculated: their cells would read as
    empty, and a row of them would be skipped without a word. Refuse the workbook instead,
    naming the first such cell; a spreadsheet program saves the results."""
    cell_tag, formula_tag, value_tag, row_tag, data_tag = (
        f"{_SHEET_NS}{t}" for t in ("c", "f", "v", "row", "sheetData"))
    rows_parent = None
    # The sheet's XML, as openpyxl's read-only sheet opens it; parsed once more, for this,
    # each row dropped once read so memory stays flat however long the sheet.
    try:
        with sheet._get_source() as source:
            for event, element in ElementTree.iterparse(source, events=("start", "end")):
                if event == "start":
                    if element.tag == data_tag:
                        rows_parent = element
                elif element.tag == row_tag and rows_parent is not None:
                    rows_parent.clear()
                elif element.tag == cell_tag and _uncalculated(element, formula_tag,
                                                                value_tag):
                    raise _refused(path, f"has a formula with no saved result in cell "
                                         f"{element.get('r', '?')}: it was written by a "
                                         "program and never calculated. Open it in a "
                                         "spreadsheet program and save it (the results are "
                                         "saved with it), then import it again")
    except ElementTree.ParseError as exc:
        raise _unreadable(path, exc) from None


def _uncalculated(cell: Any, formula_tag: str, value_tag: str) -> bool:
    """A formula cell with no result: no value, or an empty one where only a text result
    (``t="str"``, e.g. a formula giving "") may be empty."""
    if cell.find(formula_tag) is None:
        return False
    value = cell.find(value_tag)
    return value is None or (not value.text and cell.get("t") != "str")


@contextmanager
def first_sheet(path: Path, *, max_bytes: int, max_rows: int) -> Iterator[Sheet]:
    """The first sheet of the workbook at ``path``, read as it is iterated; every problem
    with the file as a whole, met before or while reading, raises ImportFileError."""
    # Imported here: openpyxl takes most of a second to import, and only a workbook needs it.
    from openpyxl import load_workbook

    try:
        file = path.open("rb")
    except OSError as exc:
        raise ImportFileError(f"cannot read {path}: {exc.strerror}") from None
    with file, warnings.catch_warnings():
        # openpyxl warns about parts it drops (data validation, extensions...): none is data.
        warnings.filterwarnings("ignore", module=r"openpyxl(\.|$)")
        check_archive(file, path, max_bytes)
        try:
            workbook = load_workbook(file, read_only=True, data_only=True, keep_links=False)
        except Exception as exc:  # as in _header
            raise _unreadable(path, exc) from None
        try:
            if not workbook.worksheets:
                raise _refused(path, "has no worksheet")
            sheet = workbook.worksheets[0]
            _refuse_formulas_without_values(sheet, path)
            # Rows are read as they are: the sheet's own stated size (<dimension>) can be
            # wrong, and openpyxl would pad every row and the end of the sheet to it.
            sheet.reset_dimensions()
            header_row, header = _header(sheet, path)
            yield Sheet(header_row, header,
                        _rows(sheet, path, header_row + 1, len(header), max_rows))
        finally:
            workbook.close()
