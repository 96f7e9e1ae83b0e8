"""``relaydesk contacts import`` as an operator runs it (a real process, a real data dir)
on files that used to lose rows, crash or flood the terminal."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support import run_cli

HEADER = "name,phone,pledge,paid_amount,due_date,tags\n"


def import_file(data_dir: Path, path: Path, *extra: str) -> tuple[int, str, str]:
    result = run_cli("--data-dir", str(data_dir), "contacts", "import", str(path), *extra)
    return result.returncode, result.stdout, result.stderr


def phones(data_dir: Path) -> list[str]:
    result = run_cli("--data-dir", str(data_dir), "contacts", "list", "--json")
    assert result.returncode == 0, result.stderr
    return [c["phone"] for c in json.loads(result.stdout)]


def test_stray_quote_refuses_the_file_and_keeps_the_database(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    (tmp_path / "keep.csv").write_text(HEADER + "Keep,0700000001,1,0,2027-01-01,\n")
    assert import_file(data_dir, tmp_path / "keep.csv")[0] == 0
    rows = [f"Person {i},07123{i:05d},{i},0,2027-01-31," for i in range(2, 53)]
    rows[2] = '"Bob,0712000004,4,0,2027-01-31,'
    broken = tmp_path / "broken.csv"
    broken.write_text(HEADER + "\n".join(rows) + "\n")
    status, out, err = import_file(data_dir, broken)
    assert status != 0
    assert "broken.csv, line 4: " in err
    assert "Nothing was imported" in err
    assert "Traceback" not in err
    assert out == ""
    assert phones(data_dir) == ["+254700000001"]


def test_rejections_are_listed_up_to_100_and_counted(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    path = tmp_path / "many.csv"
    path.write_text(HEADER + "".join(f"Bad {i},not-a-phone,1,0,2027-01-31,\n"
                                     for i in range(250))
                    + "Absurd,0712345679,1e999999999,0,2027-01-31,\n"
                    + "Good,0712345678,1,0,2027-01-31,\n")
    status, out, err = import_file(data_dir, path)
    assert status == 1, err
    lines = out.splitlines()
    assert lines[0] == "Imported 1 new contact(s), updated 0."
    assert lines[1].startswith("Rejected 251 row(s)")
    listed = [line for line in lines if line.startswith("  line ")]
    assert len(listed) == 100
    assert listed[0].startswith("  line 2: bad phone")
    assert lines[-1] == ("  ... and 151 more rejected row(s) not listed (only the first 100 "
                         "are shown)")

    status, out, err = import_file(data_dir, path, "--json")
    assert status == 1, err
    data = json.loads(out)
    assert (data["imported"], data["updated"]) == (0, 1)
    assert (data["rejected_count"], len(data["rejected"]), data["rejected_not_listed"]) == \
        (251, 100, 151)


def test_absurd_amount_is_a_row_error_with_its_line(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    path = tmp_path / "amounts.csv"
    path.write_text(HEADER + "Good,0712345678,1,0,2027-01-31,\n"
                    + "Huge,0712345679,9e999990,0,2027-01-31,\n"
                    + "Long,0712345670,99999999999999999999,0,2027-01-31,\n")
    status, out, err = import_file(data_dir, path)
    assert status == 1, err
    assert "  line 3: bad pledge: '9e999990' is above the largest amount accepted " \
           "(1,000,000,000,000)" in out
    assert "  line 4: bad pledge: '99999999999999999999' is above the largest amount" in out
    assert phones(data_dir) == ["+254712345678"]
