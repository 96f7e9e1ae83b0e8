"""Import N generated contacts from an .xlsx workbook, and the same data as CSV; print JSON.

Usage: python benchmarks/xlsx_import.py [--rows 100000] [--small-rows 10000]

Each import runs in a fresh process into a fresh SQLite database, so each peak RSS is its
own; generating the files is not measured. The workbook is written as Excel writes one
(numbers as numbers, due dates as date cells, a <dimension> element). ``growth_mb`` is the
peak RSS minus the process's RSS just before the import: at N and at N/10 rows it shows what
grows with the file. An import keeps every good row until its one transaction (all or
nothing), for CSV as for .xlsx; ``read_only`` streams the sheet without keeping rows, which
is the reader's own share. ``calamine`` (only when python-calamine is installed) reads the
same sheet with python-calamine, the faster reader RelayDesk does not use (xlsx_rows says
why). Target: the reader's memory about flat (read_only growth of a few MB at 100,000
rows: openpyxl keeps an emptied XML element, about 80 bytes, per row read), and an .xlsx
import costing about the CSV import plus the reading.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

TAGS = ["choir", "youth", "elders", "building", "east", "west"]


def contact_rows(rows: int, seed: int = 7) -> list[tuple[str, int, int, float, date, str]]:
    rng = random.Random(seed)
    out = []
    for i in range(rows):
        pledge = rng.randrange(1_000, 500_000)
        paid = rng.randrange(0, pledge) + 0.5
        out.append((f"Member {i}", 254_710_000_000 + i, pledge, paid,
                    date(2027, 1 + i % 12, 15), ";".join(rng.sample(TAGS, rng.randrange(0, 3)))))
    return out


def write_files(folder: Path, rows: int) -> tuple[Path, Path]:
    from openpyxl import Workbook

    data = contact_rows(rows)
    csv_path = folder / f"contacts-{rows}.csv"
    with csv_path.open("w", encoding="utf-8") as f:
        f.write("name,phone,pledge,paid_amount,due_date,tags\n")
        for name, phone, pledge, paid, due, tags in data:
            # the phone as Excel shows the number cell: no "+", as spreadsheets hold them
            f.write(f"{name},{phone},{pledge},{paid},{due.isoformat()},{tags}\n")
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["name", "phone", "pledge", "paid_amount", "due_date", "tags"])
    for row in data:
        sheet.append(list(row))
    xlsx_path = folder / f"contacts-{rows}.xlsx"
    workbook.save(xlsx_path)
    return csv_path, xlsx_path


def status_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process. Not ru_maxrss: Linux carries that
    across exec, so a child would report its parent's peak (the generated workbook's)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def cpu_s() -> float:
    """This process's CPU time: steadier than the wall clock on a shared machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(mode: str, path: Path, data_dir: Path) -> dict[str, Any]:
    """One measurement, in this (fresh) process."""
    from engine.config.settings import load_settings
    from engine.store.contacts_import import MAX_FILE_BYTES, MAX_XLSX_ROWS, import_contacts
    from engine.store.db import open_database
    from engine.store.xlsx_rows import first_sheet

    if mode == "calamine":
        from python_calamine import CalamineWorkbook
    import openpyxl  # noqa: F401  (imported before the baseline, as import time is not memory)

    db = open_database(load_settings({"RELAYDESK_DATA_DIR": str(data_dir)}))
    before = status_mb("VmRSS")
    start, cpu_start = time.perf_counter(), cpu_s()
    rows = 0
    if mode == "import":
        result = import_contacts(db, path, "KE")
        rows = result.imported
        assert result.rejected_count == 0, result.rejected[:3]
    elif mode == "read_only":
        with first_sheet(path, max_bytes=MAX_FILE_BYTES, max_rows=MAX_XLSX_ROWS) as sheet:
            rows = sum(1 for _ in sheet.rows)
    else:
        with CalamineWorkbook.from_path(str(path)) as workbook:
            rows = sum(1 for _ in workbook.get_sheet_by_index(0).iter_rows()) - 1
    seconds, cpu = time.perf_counter() - start, cpu_s() - cpu_start
    db.dispose()
    peak = status_mb("VmHWM")
    return {"rows": rows, "seconds": round(seconds, 2), "cpu_s": round(cpu, 2),
            "rows_per_s": round(rows / seconds),
            "peak_rss_mb": round(peak, 1), "growth_mb": round(peak - before, 1)}


def run(mode: str, path: Path, folder: Path) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(dir=folder))
    out = subprocess.run([sys.executable, __file__, "--measure", mode, str(path), str(data_dir)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--small-rows", type=int, default=10_000)
    parser.add_argument("--measure", nargs=3, metavar=("MODE", "FILE", "DATA_DIR"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        mode, path, data_dir = args.measure
        print(json.dumps(measure(mode, Path(path), Path(data_dir))))
        return
    try:
        import python_calamine  # noqa: F401
        modes = ["import", "read_only", "calamine"]
    except ImportError:
        modes = ["import", "read_only"]
    report: dict[str, Any] = {"benchmark": "xlsx_import", "database": "sqlite"}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for rows in (args.rows, args.small_rows):
            csv_path, xlsx_path = write_files(folder, rows)
            report[f"rows_{rows}"] = {
                "xlsx_bytes": xlsx_path.stat().st_size,
                "csv_bytes": csv_path.stat().st_size,
                "xlsx": {mode: run(mode, xlsx_path, folder) for mode in modes},
                "csv": {"import": run("import", csv_path, folder)},
            }
    big, small = report[f"rows_{args.rows}"], report[f"rows_{args.small_rows}"]
    report["reader_growth_mb"] = {
        mode: [small["xlsx"][mode]["growth_mb"], big["xlsx"][mode]["growth_mb"]]
        for mode in modes if mode != "import"}
    report["target"] = ("read_only growth a few MB per 100,000 rows; xlsx import about the "
                        "csv import plus read_only")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
