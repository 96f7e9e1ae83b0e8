"""Contact and opt-out import from .xlsx workbooks: the same contacts as the CSV of the same
data, cells stored as numbers, dates or text, sheet row numbers in row errors, the limits,
and files that are not workbooks (or are zip bombs) refused before anything is imported."""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from openpyxl import Workbook
from sqlalchemy import delete

from engine.store import contacts_import, xlsx_rows
from engine.store.contacts import list_contacts
from engine.store.contacts_import import ImportFileError, ImportResult, import_contacts
from engine.store.db import Database
from engine.store.models import Contact, ContactTag
from engine.store.optouts import import_optouts, list_optouts
from tests.support import run_cli

HEADER = ["name", "phone", "pledge", "paid_amount", "due_date", "tags"]


def write_xlsx(path: Path, rows: Iterable[Sequence[Any]], *, header: Sequence[Any] = HEADER,
               blank_rows_before: int = 0) -> Path:
    """A workbook as Excel stores it: numbers as numbers, dates as date cells."""
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    for _ in range(blank_rows_before):
        sheet.append([])
    sheet.append(list(header))
    for row in rows:
        sheet.append(list(row))
    workbook.save(path)
    return path


def stored(db: Database) -> list[tuple[Any, ...]]:
    with db.session() as session:
        return sorted((c.name, c.phone, c.pledge_cents, c.paid_cents, c.due_date,
                       tuple(c.tag_names)) for c in list_contacts(session))


def clear(db: Database) -> None:
    with db.session() as session:
        session.execute(delete(ContactTag))
        session.execute(delete(Contact))


def rejected(result: ImportResult) -> list[tuple[int, str]]:
    return [(r.line, r.reason) for r in result.rejected]


def test_xlsx_import_matches_the_csv_import_of_the_same_data(db: Database,
                                                             tmp_path: Path) -> None:
    # (CSV text, the cell Excel stores) for each field; the phones stored as numbers lose
    # their leading 0 in Excel, as they do when a spreadsheet user types them.
    people: list[list[tuple[str, Any]]] = []
    for i in range(60):
        pledge_cents = 1_000_000 + i * 12_345
        paid = [(f"{i * 100}.50", i * 100 + 0.5), (str(i), i), ("0", 0.0)][i % 3]
        due = date(2027, 1 + i % 12, 1 + i % 28)
        due_cell: Any = [due, datetime(due.year, due.month, due.day), due.isoformat()][i % 3]
        phone = [(f"07{i:08d}", 700_000_000 + i), (f"+2547{i:08d}", float(2547_0000_0000 + i)),
                 (f"07{i:02d} 000 {i:03d}", f"07{i:02d} 000 {i:03d}")][i % 3]
        people.append([
            (f"Zoë “{i}” Wanjiru", f"Zoë “{i}” Wanjiru"),
            phone,
            (f"{pledge_cents // 100}.{pledge_cents % 100:02d}", pledge_cents / 100),
            paid,
            (due.isoformat(), due_cell),
            (["choir;youth", "", "East"][i % 3], ["choir;youth", None, "East"][i % 3]),
        ])
    # Bad rows the same in both: their errors must match too.
    people.append([("No phone", "No phone"), ("", None), ("1", 1), ("0", 0),
                   ("2027-01-01", date(2027, 1, 1)), ("", None)])
    people.append([("Bad date", "Bad date"), ("0799000001", "0799000001"), ("1", 1),
                   ("0", 0), ("31/01/2027", "31/01/2027"), ("", None)])
    csv_path = tmp_path / "contacts.csv"
    csv_path.write_text(",".join(HEADER) + "\n" + "".join(
        ",".join(f'"{text}"' for text, _cell in person) + "\n" for person in people),
        encoding="utf-8")
    xlsx_path = write_xlsx(tmp_path / "contacts.xlsx",
                           [[cell for _text, cell in person] for person in people])

    from_csv = import_contacts(db, csv_path, "KE")
    csv_contacts = stored(db)
    clear(db)
    from_xlsx = import_contacts(db, xlsx_path, "KE")

    assert (from_xlsx.imported, from_xlsx.updated) == (from_csv.imported, 0) == (60, 0)
    assert stored(db) == csv_contacts
    assert rejected(from_xlsx) == rejected(from_csv)
    assert [line for line, _ in rejected(from_xlsx)] == [62, 63]


def test_numbers_stored_as_numbers_or_text(db: Database, tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "numbers.xlsx", [
        ["Float phone", 254712345678.0, 1250.5, 0.1 + 0.2, date(2027, 1, 31), None],
        ["Text phone", "0722 000 111", "1,250.50", "12500", date(2027, 1, 31), None],
        ["Computed", 254733000111, 1000 * 1.1, 0, date(2027, 1, 31), None],
        ["Big", 2.54744000111e11, 1.25e7, 250, date(2027, 1, 31), None],
        ["Too precise", 254755000111, 1250.505, 0, date(2027, 1, 31), None],
    ])
    result = import_contacts(db, path, "KE")
    assert rejected(result) == [(6, "bad pledge: '1250.505' has more than 2 decimal places")]
    amounts = {phone: (pledge, paid) for _n, phone, pledge, paid, _d, _t in stored(db)}
    assert amounts == {
        "+254712345678": (125_050, 30),  # not 2.54712345678E11; 0.30000000000000004 -> 0.30
        "+254722000111": (125_050, 1_250_000),
        "+254733000111": (110_000, 0),  # 1100.0000000000002 as Excel shows it
        "+254744000111": (1_250_000_000, 25_000),
    }


def test_dates_as_date_cells_and_as_text(db: Database, tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "dates.xlsx", [
        ["Date cell", "0711000001", 1, 0, date(2027, 3, 4), None],
        ["Midnight", "0711000002", 1, 0, datetime(2027, 3, 5, 0, 0), None],
        ["Text", "0711000003", 1, 0, "2027-03-06", None],
        ["With a time", "0711000004", 1, 0, datetime(2027, 3, 7, 10, 30), None],
        ["Day first", "0711000005", 1, 0, "07/03/2027", None],
        ["Serial number", "0711000006", 1, 0, 46453, None],
    ])
    result = import_contacts(db, path, "KE")
    assert {n: d for n, _p, _a, _b, d, _t in stored(db)} == {
        "Date cell": date(2027, 3, 4), "Midnight": date(2027, 3, 5), "Text": date(2027, 3, 6)}
    assert rejected(result) == [
        (5, "bad due_date: '2027-03-07 10:30:00'; write it as YYYY-MM-DD"),
        (6, "bad due_date: '07/03/2027'; write it as YYYY-MM-DD"),
        (7, "bad due_date: '46453'; write it as YYYY-MM-DD"),
    ]


def test_row_errors_carry_sheet_row_numbers_and_good_rows_are_all_imported(
        db: Database, tmp_path: Path) -> None:
    rows: list[list[Any]] = [["Good 1", "0711000001", 1, 0, date(2027, 1, 1), "a"],
                             [], ["Bad phone", "12", 1, 0, date(2027, 1, 1), None],
                             ["Good 2", "0711000002", 1, 0, date(2027, 1, 1), None],
                             ["Again", "+254711000001", 1, 0, date(2027, 1, 1), None],
                             ["", "0711000003", 1, 0, date(2027, 1, 1), None]]
    path = write_xlsx(tmp_path / "rows.xlsx", rows, blank_rows_before=2)
    result = import_contacts(db, path, "KE")
    # header on sheet row 3; the blank row 5 is skipped and still counted
    assert [line for line, _ in rejected(result)] == [6, 8, 9]
    assert rejected(result)[1] == (8, "phone +254711000001 is already on row 4 of this file")
    assert rejected(result)[2] == (9, "name is empty")
    assert (result.imported, result.rejected_count) == (2, 3)
    assert [n for n, *_ in stored(db)] == ["Good 1", "Good 2"]


def test_a_value_past_the_header_columns_is_not_read(db: Database, tmp_path: Path) -> None:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(HEADER)
    sheet.append(["Note beside", "0711000001", 1, 0, date(2027, 1, 1), None])
    sheet["XFD2"] = "a note far to the right"
    workbook.save(tmp_path / "wide.xlsx")
    assert import_contacts(db, tmp_path / "wide.xlsx", "KE").imported == 1


def test_empty_sheet_and_header_only(db: Database, tmp_path: Path) -> None:
    empty = tmp_path / "empty.xlsx"
    Workbook().save(empty)
    with pytest.raises(ImportFileError, match=r"empty\.xlsx is empty: its first sheet needs"):
        import_contacts(db, empty, "KE")
    header_only = write_xlsx(tmp_path / "header.xlsx", [])
    with pytest.raises(ImportFileError, match=r"header\.xlsx has a header but no contacts"):
        import_contacts(db, header_only, "KE")
    missing = write_xlsx(tmp_path / "missing.xlsx", [["x", "0711000001"]],
                         header=["name", "phone"])
    with pytest.raises(ImportFileError, match="lacks required column"):
        import_contacts(db, missing, "KE")
    assert stored(db) == []


def good_rows(count: int) -> list[list[Any]]:
    return [[f"P{i}", f"07110{i:05d}", 1, 0, date(2027, 1, 1), None] for i in range(count)]


def test_limits_rows_columns_and_size(db: Database, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    wide = write_xlsx(tmp_path / "wide.xlsx", good_rows(1),
                      header=[*HEADER, *(f"extra {i}" for i in range(95))])
    with pytest.raises(ImportFileError, match="has 101 columns; RelayDesk reads files with at "
                                              "most 100"):
        import_contacts(db, wide, "KE")

    path = write_xlsx(tmp_path / "rows.xlsx", good_rows(6))
    monkeypatch.setattr(contacts_import, "MAX_XLSX_ROWS", 5)
    with pytest.raises(ImportFileError, match="has more than 5 rows below its header"):
        import_contacts(db, path, "KE")
    monkeypatch.setattr(contacts_import, "MAX_XLSX_ROWS", 6)
    assert import_contacts(db, path, "KE").imported == 6
    clear(db)

    monkeypatch.setattr(contacts_import, "MAX_FILE_BYTES", path.stat().st_size - 1)
    with pytest.raises(ImportFileError, match="RelayDesk imports workbooks of up to"):
        import_contacts(db, path, "KE")
    monkeypatch.setattr(contacts_import, "MAX_FILE_BYTES", 10 * 2**20)
    monkeypatch.setattr(xlsx_rows, "MAX_UNCOMPRESSED_BYTES", 4000)
    with pytest.raises(ImportFileError, match=r"would expand to .* MB of XML"):
        import_contacts(db, path, "KE")
    assert stored(db) == []


def test_rows_numbered_past_excels_last_row_are_refused(db: Database, tmp_path: Path) -> None:
    """A row number no spreadsheet writes (r="1048577") is refused once the reader gets
    there, instead of openpyxl filling the gap up to any number it claims."""
    good = write_xlsx(tmp_path / "good.xlsx", good_rows(1))
    with zipfile.ZipFile(good) as archive:
        sheet = archive.read("xl/worksheets/sheet1.xml")
    far = re.sub(rb'r="([A-F]?)2"', rb'r="\g<1>1048577"', sheet)
    assert far != sheet
    path = rezip(good, tmp_path / "far.xlsx", {"xl/worksheets/sheet1.xml": far})
    with pytest.raises(ImportFileError, match=r"far\.xlsx has rows numbered past Excel's last "
                                              r"row \(1,048,576\)"):
        import_contacts(db, path, "KE")
    assert stored(db) == []


def rezip(source: Path, target: Path, replace: dict[str, bytes]) -> Path:
    """``source`` rewritten with some members replaced."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w",
                                                         zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            out.writestr(info.filename, replace.get(info.filename, src.read(info.filename)))
    return target


def mark_encrypted(path: Path) -> Path:
    """Set the 'encrypted' flag of every member in the zip's central directory, as a
    zip tool's password protection does (zipfile itself cannot write one)."""
    data = bytearray(path.read_bytes())
    at = data.find(b"PK\x01\x02")
    while at != -1:
        data[at + 8] |= 0x1  # general purpose bit flag, low byte
        at = data.find(b"PK\x01\x02", at + 4)
    path.write_bytes(bytes(data))
    return path


def test_zip_bomb_is_refused_before_anything_is_expanded(db: Database, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    good = write_xlsx(tmp_path / "good.xlsx", good_rows(3))
    with zipfile.ZipFile(good) as archive:
        sheet = archive.read("xl/worksheets/sheet1.xml")
    # A valid sheet padded with 16 MB of blanks: 1,000 to 1 when compressed. Without the
    # check it imports fine, after inflating all of it.
    root_end = sheet.index(b">", sheet.index(b"<worksheet")) + 1
    padded = sheet[:root_end] + b" " * (16 * 2**20) + sheet[root_end:]
    bomb = rezip(good, tmp_path / "bomb.xlsx", {"xl/worksheets/sheet1.xml": padded})
    assert bomb.stat().st_size < 100_000

    def no_expanding(*args: object, **kwargs: object) -> None:
        raise AssertionError("a member of the archive was opened")

    monkeypatch.setattr(zipfile.ZipFile, "open", no_expanding)
    with pytest.raises(ImportFileError, match=r"bomb.xlsx is not a plain workbook: its part "
                                              r"'xl/worksheets/sheet1.xml' expands [\d,]+ "
                                              r"times \(a zip bomb\?\)"):
        import_contacts(db, bomb, "KE")
    assert stored(db) == []


def test_files_that_are_not_workbooks_import_nothing(db: Database, tmp_path: Path) -> None:
    good = write_xlsx(tmp_path / "good.xlsx", good_rows(3))
    renamed = tmp_path / "renamed.xlsx"
    renamed.write_text(",".join(HEADER) + "\nA,0711000001,1,0,2027-01-01,\n")
    truncated = tmp_path / "truncated.xlsx"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    protected = tmp_path / "protected.xlsx"  # what Excel saves with a password: OLE2
    protected.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(4096))
    encrypted = tmp_path / "encrypted.xlsx"
    encrypted.write_bytes(good.read_bytes())
    mark_encrypted(encrypted)
    document = tmp_path / "document.xlsx"
    with zipfile.ZipFile(document, "w") as archive:
        archive.writestr("word/document.xml", "<document/>")
    damaged_sheet = rezip(good, tmp_path / "damaged.xlsx", {
        "xl/worksheets/sheet1.xml": zipfile.ZipFile(good).read("xl/worksheets/sheet1.xml")
        .replace(b"</row><row", b"</row><row <", 1)})
    expected = {
        renamed: "renamed.xlsx is not an Excel workbook: it looks like text. If it is a CSV "
                 "file, name it .csv",
        truncated: r"truncated.xlsx is not an Excel workbook \(.xlsx\), or it is damaged",
        protected: "protected.xlsx is password-protected or an old .xls workbook",
        encrypted: "encrypted.xlsx is encrypted",
        document: "document.xlsx could not be read as an Excel workbook",
        damaged_sheet: "damaged.xlsx could not be read as an Excel workbook \\(not well-formed",
    }
    for path, message in expected.items():
        with pytest.raises(ImportFileError, match=message) as raised:
            import_contacts(db, path, "KE")
        assert "nothing was imported" in str(raised.value)
    assert stored(db) == []


def test_optouts_import_reads_a_workbook(db: Database, tmp_path: Path) -> None:
    with_header = write_xlsx(tmp_path / "stop.xlsx", [
        [254712345678, "asked by phone"], ["0722 000 111", None], ["12", "typo"]],
        header=["Phone", "Reason"])
    result = import_optouts(db, with_header, region="KE", reason="list from the office")
    assert (result.imported, rejected(result)) == (2, [(4, "bad phone: '12' is not a valid "
                                                           "number (default country KE)")])
    one_column = write_xlsx(tmp_path / "numbers.xlsx", [[2.54733000111e11], ["0712345678"]],
                            header=["0744000111"])
    result = import_optouts(db, one_column, region="KE")
    assert (result.imported, result.already) == (2, 1)
    with db.session() as session:
        listed = {o.phone: o.reason for o in list_optouts(session)}
    assert listed == {"+254712345678": "asked by phone",
                      "+254722000111": "list from the office",
                      "+254733000111": "", "+254744000111": ""}


def test_a_formula_never_calculated_is_refused_not_read_as_empty(db: Database,
                                                                tmp_path: Path) -> None:
    """A script writes formulas without their results; read by result, such a row would be
    empty and skipped without a word (an opt-out lost). Excel saves the results."""
    uncalculated = write_xlsx(tmp_path / "stop.xlsx", [["0712345678"], ["=\"0722000111\""]],
                              header=["phone"])
    with pytest.raises(ImportFileError, match="formula with no saved result in cell A3"):
        import_optouts(db, uncalculated, region="KE")
    with db.session() as session:
        assert list_optouts(session) == []  # the good row before it is not added either
    calculated = rezip(uncalculated, tmp_path / "saved.xlsx", {
        "xl/worksheets/sheet1.xml": zipfile.ZipFile(uncalculated).read(
            "xl/worksheets/sheet1.xml").replace(
            b"<v /></c>", b"<v>254722000111</v></c>")})
    result = import_optouts(db, calculated, region="KE")
    assert (result.imported, result.rejected_count) == (2, 0)


def test_cli_imports_a_workbook(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    path = write_xlsx(tmp_path / "contacts.xlsx", [
        ["Alice", 254712345678, 12500, 2500.5, date(2027, 1, 31), "choir"],
        ["Bob", "not a phone", 1, 0, date(2027, 1, 31), None]])
    result = run_cli("--data-dir", str(data_dir), "contacts", "import", str(path))
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines()[0] == "Imported 1 new contact(s), updated 0."
    assert "  line 3: bad phone" in result.stdout
    listed = run_cli("--data-dir", str(data_dir), "contacts", "list", "--json")
    contact, = json.loads(listed.stdout)
    assert (contact["phone"], contact["due_date"]) == ("+254712345678", "2027-01-31")

    renamed = tmp_path / "renamed.xlsx"
    renamed.write_text("name,phone\n")
    result = run_cli("--data-dir", str(data_dir), "contacts", "import", str(renamed))
    assert result.returncode != 0
    assert "renamed.xlsx is not an Excel workbook: it looks like text" in result.stderr
    assert "Traceback" not in result.stderr

    stop = write_xlsx(tmp_path / "stop.xlsx", [[254799000111]], header=["phone"])
    result = run_cli("--data-dir", str(data_dir), "optouts", "import", str(stop), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["imported"] == 1
