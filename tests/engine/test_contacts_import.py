from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from engine.config.settings import Settings
from engine.store import contacts_import
from engine.store.contact_browser import ContactEditError, update_contact
from engine.store.contacts import count_contacts, list_contacts
from engine.store.contacts_import import (
    MAX_COLUMNS,
    MAX_FILE_BYTES,
    MAX_LISTED_REJECTIONS,
    ImportFileError,
    import_contacts,
)
from engine.store.db import Database, open_database
from engine.store.models import Contact
from tests.support import write_contacts

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
    assert result.as_dict() == {"imported": 2, "updated": 0, "rejected_count": 0,
                                "rejected": [], "rejected_not_listed": 0}
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
                 + '"Multi\nLine",0712345673,100,0,2027-01-31,\n'  # lines 9-10: line break
                 + "Fine,0712345675,1,0,2027-01-31,\n"            # line 11
                 + "\n"                                           # line 12: blank, skipped
                 + "Short,0712345674,100\n"                       # line 13
                 + "Again,0712 345 678,1,0,2027-01-31,\n"         # line 14: repeat of line 2
                 + "Good Two,0733123456,1,0,2027-01-31,\n")       # line 15
    result = import_contacts(db, path, "KE")
    reasons = {r.line: r.reason for r in result.rejected}
    assert set(reasons) == {3, 4, 5, 6, 7, 9, 13, 14}
    assert reasons[3].startswith("bad phone")
    assert "negative" in reasons[4]
    assert "not a number" in reasons[5]
    assert "YYYY-MM-DD" in reasons[6]
    assert "name is empty" in reasons[7]
    assert reasons[9] == ("name contains a control character (U+000A, character 6): remove it "
                          "(this row spans lines 9 to 10)")
    assert "bad paid_amount" in reasons[13]
    assert "line 2" in reasons[14]
    assert result.imported == 3
    assert set(contacts_by_phone(db)) == {"+254712345678", "+254712345675", "+254733123456"}


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
    with pytest.raises(ImportFileError, match=r"not an Excel workbook \(.xlsx\), or it is damaged"):
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


# --- a file that breaks the CSV format is refused whole ------------------------------------

def fifty_two_rows(line_4: str) -> str:
    """A header and 51 contacts; line 4 replaced by ``line_4``."""
    rows = [f"Person {i},07123{i:05d},{i},0,2027-01-31," for i in range(2, 53)]
    rows[2] = line_4
    return HEADER + "\n".join(rows) + "\n"


def assert_unchanged(db: Database) -> None:
    with db.session() as s:
        assert count_contacts(s) == 1
    keep = contacts_by_phone(db)["+254700000001"]
    assert (keep.name, keep.pledge_cents) == ("Keep", 100)


@pytest.fixture
def one_contact(db: Database, tmp_path: Path) -> Database:
    import_contacts(db, write(tmp_path, HEADER + "Keep,0700000001,1,0,2027-01-01,\n", "k.csv"),
                    "KE")
    return db


@pytest.mark.parametrize("body", [
    # the file: the quote is never closed (the rest of the file became one field)
    fifty_two_rows('"Bob,0712000004,4,0,2027-01-31,'),
    # closed again by a later quoted cell, mid-field
    fifty_two_rows('"Bob,0712000004,4,0,2027-01-31,').replace(
        "Person 30,0712300030,30", 'Person 30,0712300030,"30"'),
    # closed again cleanly before a separator: the rows between became one name
    fifty_two_rows('"Bob,0712000004,4,0,2027-01-31,').replace(
        "Person 30,", 'Person 30",'),
], ids=["never-closed", "closed-mid-field", "closed-cleanly"])
def test_stray_quote_refuses_the_whole_file(one_contact: Database, tmp_path: Path,
                                            body: str) -> None:
    """Before: 2 rows saved, 1 error, 49 rows dropped without a word."""
    with pytest.raises(ImportFileError, match=r"contacts\.csv, line 4: .*stray \"") as caught:
        import_contacts(one_contact, write(tmp_path, body), "KE")
    assert "Nothing was imported" in str(caught.value)
    assert_unchanged(one_contact)


def test_field_over_the_csv_size_limit_refuses_the_whole_file(one_contact: Database,
                                                              tmp_path: Path) -> None:
    body = (HEADER + "Ann,0712345678,1,0,2027-01-31,\n"
            + "Bo,0712345679,1,0,2027-01-31,\n"
            + '"' + "x" * 200_000 + '",0712345670,1,0,2027-01-31,\n')
    with pytest.raises(ImportFileError, match=r"line 4: a field starting here runs past"):
        import_contacts(one_contact, write(tmp_path, body), "KE")
    assert_unchanged(one_contact)


def test_header_that_breaks_the_format_is_refused(one_contact: Database,
                                                  tmp_path: Path) -> None:
    with pytest.raises(ImportFileError, match=r"line 2: a quoted field starts here and is "
                                              "never closed"):
        import_contacts(one_contact, write(tmp_path, '\n"name,phone,pledge\n'), "KE")
    assert_unchanged(one_contact)


def test_multi_line_cell_in_an_extra_column_is_kept(db: Database, tmp_path: Path) -> None:
    path = write(tmp_path, "name,phone,pledge,paid_amount,due_date,notes\n"
                 + 'Ann,0712345678,1,0,2027-01-31,"call after 5,\nnot on Sunday"\n'
                 + "Bo,0712345679,1,0,2027-01-31,\n")
    assert import_contacts(db, path, "KE").imported == 2


# --- amounts, control characters, limits ---------------------------------------------------

def test_absurd_amounts_are_one_rejected_row_each(one_contact: Database,
                                                  tmp_path: Path) -> None:
    """Before: 1e999999999 crashed the import (decimal.Overflow, nothing saved), 9e999990
    cost ~23 s of CPU, 99999999999999999999 failed at insert with no line number."""
    absurd = ["1e999999999", "9e999990", "99999999999999999999", "1000000000000.01",
              "1e-999999999", "9" * 5000]
    rows = [f"Row {i},07120000{i:02d},{amount},0,2027-01-31," for i, amount in
            enumerate(absurd)]
    rows += [f"Paid {i},07130000{i:02d},1,{amount},2027-01-31," for i, amount in
             enumerate(absurd)]
    rows.append("Fine,0714000000,1000000000000,0,2027-01-31,")
    result = import_contacts(one_contact, write(tmp_path, HEADER + "\n".join(rows) + "\n"),
                             "KE")
    assert result.imported == 1
    reasons = {r.line: r.reason for r in result.rejected}
    assert sorted(reasons) == list(range(2, 2 + 2 * len(absurd)))
    for line in range(2, 2 + len(absurd)):
        assert reasons[line].startswith("bad pledge: ")
        assert reasons[line + len(absurd)].startswith("bad paid_amount: ")
    assert "above the largest amount accepted (1,000,000,000,000)" in reasons[2]
    assert contacts_by_phone(one_contact)["+254714000000"].pledge_cents == 10**14


@pytest.mark.parametrize(("name", "tags", "reason"), [
    ("Nul\x00Byte", "", "name contains a control character (U+0000, character 4)"),
    ("Tab\tInside", "", "name contains a control character (U+0009, character 4)"),
    ("Del\x7f", "", "name contains a control character (U+007F, character 4)"),
    ("C1\x85Next", "", "name contains a control character (U+0085, character 3)"),
    ("Line\u2028Sep", "", "name contains a control character (U+2028, character 5)"),
    ("Esc\x1b[31m", "", "name contains a control character (U+001B, character 4)"),
    ("Fine", "ok;ba\x00d", "tag 'ba\\x00d' contains a control character (U+0000, character 3)"),
    ("Fine", "b\x07ell", "tag 'b\\x07ell' contains a control character (U+0007, character 2)"),
])
def test_control_characters_in_names_and_tags_are_row_errors(
        db: Database, tmp_path: Path, name: str, tags: str, reason: str) -> None:
    path = tmp_path / "c.csv"
    good = [f"Good {i},07123{i:05d},1,0,2027-01-31," for i in range(300)]  # NUL past 8 KB
    path.write_bytes((HEADER + "\n".join(good)
                      + f'\n"{name}",0799999999,1,0,2027-01-31,"{tags}"\n').encode())
    result = import_contacts(db, path, "KE")
    assert [(r.line, r.reason) for r in result.rejected] == [(302, reason + ": remove it")]
    assert result.imported == 300


def test_file_over_the_size_limit_is_refused_unread(one_contact: Database,
                                                    tmp_path: Path) -> None:
    big = tmp_path / "big.csv"
    with big.open("wb") as file:  # sparse: costs no disk and, refused by size, no reading
        file.write(HEADER.encode())
        file.truncate(MAX_FILE_BYTES + 1)
    with pytest.raises(ImportFileError, match=r"big\.csv is 200 MB; RelayDesk imports files "
                                              r"of up to 200 MB \(about 1,000,000 contacts\)"):
        import_contacts(one_contact, big, "KE")
    assert_unchanged(one_contact)


def test_size_limit_fits_a_million_generous_contacts() -> None:
    row = ("Wanjiru Kamau Njoroge Mwangi-Otieno,+254712345678,1250000.50,1250000.50,"
           "2027-01-31,choir;youth;building-fund;nairobi-east;2026-pledges;committee\n")
    assert len(row.encode()) * 1_000_000 < MAX_FILE_BYTES


def test_too_many_columns_is_refused_with_the_limit(one_contact: Database,
                                                    tmp_path: Path) -> None:
    header = "name,phone,pledge,paid_amount,due_date," + ",".join(
        f"extra{i}" for i in range(MAX_COLUMNS))
    with pytest.raises(ImportFileError, match=rf"has {MAX_COLUMNS + 5} columns; RelayDesk "
                                              rf"reads files with at most {MAX_COLUMNS}"):
        import_contacts(one_contact, write(tmp_path, header + "\nA,0712345678,1,0,2027-01-01\n"),
                        "KE")
    assert_unchanged(one_contact)


def test_rejection_list_is_capped_and_counted(db: Database, tmp_path: Path) -> None:
    rows = [f"Bad {i},not-a-phone,1,0,2027-01-31," for i in range(250)]
    rows.append("Good,0712345678,1,0,2027-01-31,")
    result = import_contacts(db, write(tmp_path, HEADER + "\n".join(rows) + "\n"), "KE")
    assert result.imported == 1
    assert result.rejected_count == 250
    assert [r.line for r in result.rejected] == list(range(2, 2 + MAX_LISTED_REJECTIONS))
    data = result.as_dict()
    assert (data["rejected_count"], len(data["rejected"]), data["rejected_not_listed"]) == \
        (250, MAX_LISTED_REJECTIONS, 150)


def test_edit_uses_the_same_rules(db: Database, tmp_path: Path) -> None:
    import_contacts(db, write(tmp_path, HEADER + "Ann,0712345678,1,0,2027-01-31,\n"), "KE")
    contact_id = contacts_by_phone(db)["+254712345678"].id
    fields = {"name": "Ann", "phone": "0712345678", "pledge": "1", "paid_amount": "0",
              "due_date": "2027-01-31", "tags": ""}
    for change, reason in [({"pledge": "1e999999999"}, "bad pledge: .* above the largest"),
                           ({"paid_amount": "9e999990"}, "bad paid_amount: .* above"),
                           ({"name": "A\tnn"}, "name contains a control character"),
                           ({"tags": "x\x00"}, "contains a control character")]:
        with pytest.raises(ContactEditError, match=reason), db.session() as s:
            update_contact(s, contact_id, {**fields, **change}, "KE")
    assert contacts_by_phone(db)["+254712345678"].pledge_cents == 100


def test_an_import_written_in_batches_counts_and_tags_every_contact(
        db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of three: new and known phones fall in every batch, and each keeps its own
    tags, on both databases."""
    monkeypatch.setattr(contacts_import, "_WRITE_BATCH", 3)
    rows = [(f"M{i}", f"0712{i:06d}", "100", "0", "2027-01-01", f"t{i % 2}") for i in range(8)]
    import_contacts(db, write_contacts(tmp_path / "first.csv", rows[::2]), "KE")
    again = [(name, phone, "200", "50", due, "again") for name, phone, _, _, due, _ in rows]
    result = import_contacts(db, write_contacts(tmp_path / "all.csv", again), "KE")
    assert (result.imported, result.updated) == (4, 4)
    with db.session() as session:
        contacts = list_contacts(session)
    assert len(contacts) == 8
    assert {c.pledge_cents for c in contacts} == {20_000}
    assert {tuple(c.tag_names) for c in contacts} == {("again",)}
