from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from engine.contacts import count_contacts, list_contacts
from engine.contacts_import import ImportFileError, import_contacts
from engine.db import Database, open_database
from engine.models import Contact
from engine.settings import Settings

HEADER = "name,phone,pledge,paid_amount,due_date,tags\n"


def write(tmp_path: Path, body: str, name: str = "contacts.csv") -> Path:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


def contacts_by_phone(db: Database) -> dict[str, Contact]:
    with db.session() as s:
        return {c.phone: c for c in list_contacts(s)}


def test_good_file(db: Database, tmp_path: Path) -> None:
    path = write(tmp_path, HEADER
                 + 'Alice Wanjiru,0712 345 678,"12,500",2500,2027-01-31,Choir; youth\n'
                 + "Bob,+254722000111,1250.50,0,2026-12-31,\n")
    result = import_contacts(db, path, "KE")
    assert result.as_dict() == {"imported": 2, "updated": 0, "rejected": []}
    contacts = contacts_by_phone(db)
    alice = contacts["+254712345678"]
    assert (alice.name, alice.pledge_cents, alice.paid_cents) == ("Alice Wanjiru", 1_250_000,
                                                                   250_000)
    assert alice.due_date == date(2027, 1, 31)
    assert alice.tag_names == ["choir", "youth"]
    assert contacts["+254722000111"].pledge_cents == 125_050


def test_reimport_updates_instead_of_duplicating(db: Database, tmp_path: Path) -> None:
    import_contacts(db, write(tmp_path, HEADER + "Alice,0712345678,100,0,2027-01-31,a;b\n"),
                    "KE")
    second = write(tmp_path, HEADER + "Alice W.,+254 712 345678,100,60,2027-02-28,c\n"
                   + "Dan,0733123456,5,0,2027-01-01,\n", "again.csv")
    result = import_contacts(db, second, "KE")
    assert (result.imported, result.updated) == (1, 1)
    contacts = contacts_by_phone(db)
    assert len(contacts) == 2
    alice = contacts["+254712345678"]
    assert (alice.name, alice.paid_cents, alice.due_date) == ("Alice W.", 6000, date(2027, 2, 28))
    assert alice.tag_names == ["c"]


def test_bad_rows_are_reported_by_line_and_good_rows_kept(db: Database, tmp_path: Path) -> None:
    path = write(tmp_path, HEADER
                 + "Good One,0712345678,100,0,2027-01-31,\n"      # line 2
                 + "Bad Phone,12345,100,0,2027-01-31,\n"          # line 3
                 + "Neg,0712345679,-100,0,2027-01-31,\n"          # line 4
                 + "Text,0712345670,lots,0,2027-01-31,\n"         # line 5
                 + "Date,0712345671,100,0,31/01/2027,\n"          # line 6
                 + ",0712345672,100,0,2027-01-31,\n"              # line 7
                 + "\n"                                           # line 8: blank, skipped
                 + '"Multi\nLine",0712345673,100,0,2027-01-31,\n'  # lines 9-10: good
                 + "Short,0712345674,100\n"                       # line 11
                 + "Again,0712 345 678,1,0,2027-01-31,\n"         # line 12: repeat of line 2
                 + "Good Two,0733123456,1,0,2027-01-31,\n")       # line 13
    result = import_contacts(db, path, "KE")
    reasons = {r.line: r.reason for r in result.rejected}
    assert set(reasons) == {3, 4, 5, 6, 7, 11, 12}
    assert reasons[3].startswith("bad phone")
    assert "negative" in reasons[4]
    assert "not a number" in reasons[5]
    assert "YYYY-MM-DD" in reasons[6]
    assert "name is empty" in reasons[7]
    assert "bad paid_amount" in reasons[11]
    assert "line 2" in reasons[12]
    assert result.imported == 3
    assert set(contacts_by_phone(db)) == {"+254712345678", "+254712345673", "+254733123456"}


@pytest.mark.parametrize(("body", "message"), [
    ("", "empty"),
    ("\n\n", "empty"),
    ("name,phone\nAlice,0712345678\n", "lacks required column(s) pledge, paid_amount, due_date"),
    (HEADER, "no contacts"),
    ("name,phone,pledge,paid_amount,due_date,phone\n", "appears twice"),
])
def test_file_level_problems_change_nothing(db: Database, tmp_path: Path, body: str,
                                           message: str) -> None:
    import_contacts(db, write(tmp_path, HEADER + "Keep,0712345678,1,0,2027-01-01,\n",
                              "first.csv"), "KE")
    with pytest.raises(ImportFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        import_contacts(db, write(tmp_path, body), "KE")
    with db.session() as s:
        assert count_contacts(s) == 1


def test_binary_and_non_utf8_files_are_refused(db: Database, tmp_path: Path) -> None:
    xlsx = tmp_path / "contacts.xlsx"
    xlsx.write_bytes(b"PK\x03\x04\x00\x00\x08\x00" + bytes(range(256)))
    with pytest.raises(ImportFileError, match="not a CSV text file"):
        import_contacts(db, xlsx, "KE")
    latin = tmp_path / "latin.csv"
    latin.write_bytes((HEADER + "Zoë,0712345678,1,0,2027-01-01,\n").encode("latin-1"))
    with pytest.raises(ImportFileError, match="CSV UTF-8"):
        import_contacts(db, latin, "KE")
    with pytest.raises(ImportFileError, match="cannot read"):
        import_contacts(db, tmp_path / "missing.csv", "KE")


def test_spreadsheet_variants(db: Database, tmp_path: Path) -> None:
    """Excel's BOM, ';' separators, header case and extra columns are all accepted."""
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffName;PHONE;Pledge;Paid_Amount;Due_Date;Email\r\n"
                     "Zoë;0712345678;1000;0;2027-01-01;z@example.org\r\n".encode())
    assert import_contacts(db, path, "KE").imported == 1
    assert contacts_by_phone(db)["+254712345678"].name == "Zoë"


def test_default_region_applies_to_local_numbers(db: Database, tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "Ugandan,0772123456,1,0,2027-01-01,\n")
    assert import_contacts(db, path, "UG").imported == 1
    assert "+256772123456" in contacts_by_phone(db)


def test_a_failing_write_leaves_nothing_half_imported(settings: Settings,
                                                      tmp_path: Path) -> None:
    db = open_database(settings)  # SQLite: the failure is injected with a trigger
    with db.engine.begin() as conn:
        conn.execute(text("CREATE TRIGGER boom BEFORE INSERT ON contact_tags "
                          "WHEN NEW.tag = 'boom' BEGIN SELECT RAISE(ABORT, 'boom'); END"))
    path = write(tmp_path, HEADER + "A,0712345678,1,0,2027-01-01,ok\n"
                 + "B,0712345679,1,0,2027-01-01,boom\n")
    with pytest.raises(ImportFileError, match=r"nothing from this file was saved \(boom\)"):
        import_contacts(db, path, "KE")
    with db.session() as s:
        assert s.scalar(select(func.count(Contact.id))) == 0
