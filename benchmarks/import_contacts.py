"""Import N generated contacts through the real import path; print JSON timings.

Usage: python benchmarks/import_contacts.py [--rows 100000] [--postgres-admin-url URL]
With --postgres-admin-url the import runs in a new PostgreSQL database, dropped afterwards.
Target: 100,000 rows well under 10 s (first import and re-import that updates every row).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text

from engine.config.settings import load_settings
from engine.store.contacts_import import import_contacts, read_contacts_csv
from engine.store.db import close_databases, open_database


def write_csv(path: Path, rows: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    tags = ["choir", "youth", "elders", "building", "east", "west"]
    with path.open("w", encoding="utf-8") as f:
        f.write("name,phone,pledge,paid_amount,due_date,tags\n")
        for i in range(rows):
            pledge = rng.randrange(1_000, 500_000)
            paid = rng.randrange(0, pledge)
            tag = ";".join(rng.sample(tags, rng.randrange(0, 3)))
            f.write(f'Member {i},07{10_000_000 + i:08d},"{pledge:,}",{paid}.50,'
                    f"2027-{1 + i % 12:02d}-15,{tag}\n")


@contextmanager
def scratch_database(admin_url: str | None) -> Iterator[str | None]:
    if not admin_url:
        yield None
        return
    admin_url = admin_url.replace("postgresql://", "postgresql+psycopg://", 1)
    name = f"relaydesk_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        close_databases()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--postgres-admin-url",
                        help="server to create a scratch database on (default: SQLite)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, scratch_database(args.postgres_admin_url) as url:
        overrides = {"RELAYDESK_DATA_DIR": tmp}
        if url:
            overrides["RELAYDESK_DATABASE_URL"] = url
        settings = load_settings(overrides)
        db = open_database(settings)
        csv_path = Path(tmp) / "contacts.csv"
        write_csv(csv_path, args.rows)

        start = time.perf_counter()
        read_contacts_csv(csv_path, settings.default_region)
        parse_s = time.perf_counter() - start

        start = time.perf_counter()
        first = import_contacts(db, csv_path, settings.default_region)
        first_s = time.perf_counter() - start

        start = time.perf_counter()
        second = import_contacts(db, csv_path, settings.default_region)
        second_s = time.perf_counter() - start
        db.dispose()

    print(json.dumps({
        "benchmark": "import_contacts",
        "database": db.engine.dialect.name,
        "rows": args.rows,
        "parse_validate_s": round(parse_s, 2),
        "first_import_s": round(first_s, 2),
        "first_import_rows_per_s": round(args.rows / first_s),
        "reimport_update_s": round(second_s, 2),
        "imported": first.imported,
        "updated": second.updated,
        "rejected": len(first.rejected) + len(second.rejected),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "target": "first_import_s and reimport_update_s well under 10",
    }, indent=2))


if __name__ == "__main__":
    main()
