"""Counting a campaign's audience among 100,000 contacts: each filter alone and combined,
as ``campaign preview``/``send`` and Compose's live recipient count do it. Prints JSON.

Usage: python benchmarks/audience_count.py [--rows 100000] [--repeats 15]
                                           [--database-url postgresql://USER@HOST/DB]
Default: SQLite in a temporary data dir. With --database-url the contacts go into a new
scratch database created on that PostgreSQL server and dropped afterwards (the database
named in the URL is only used to connect).
Target: every count (median and max) under 200 ms on SQLite and PostgreSQL.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, text

sys.path.insert(0, str(Path(__file__).parent))
from import_contacts import scratch_database  # the same scratch PostgreSQL database

from engine.config.settings import load_settings
from engine.domain.audience import Audience
from engine.store.audience_query import count_audience
from engine.store.db import Database, open_database
from engine.store.models import Contact, ContactTag, OptOut, OptSource

TAGS = ["choir", "youth", "elders", "building", "east", "west"]
TODAY = date(2027, 3, 1)  # fixed: the same data and the same counts on every run
TARGET_MS = 200

FILTERS = {
    "everyone": Audience(),
    "tag": Audience(tags=("choir",)),
    "tags_any_of_two": Audience(tags=("choir", "youth")),
    "exclude_tag": Audience(exclude_tags=("elders",)),
    "owing": Audience(owing=True),
    "min_balance": Audience(min_balance_cents=100_000_00),
    "due_within_30": Audience(due_within_days=30),
    "overdue": Audience(overdue=True),
    "selection_5000": Audience(ids=tuple(range(1, 100_001, 20))),
    "combined": Audience(tags=("choir", "youth"), exclude_tags=("elders",), owing=True,
                         min_balance_cents=50_000_00, due_within_days=60),
}


def fill(db: Database, rows: int, seed: int = 7) -> int:
    """``rows`` contacts: 0-2 tags each, a fifth paid in full, due dates from 180 days
    before TODAY to 180 after; 2% of numbers (and as many strangers) opted out."""
    rng = random.Random(seed)
    contacts, tags, optouts = [], [], []
    for i in range(1, rows + 1):
        phone = f"+2547{10_000_000 + i:08d}"
        pledge = rng.randrange(1_000_00, 500_000_00)
        paid = pledge if rng.random() < 0.2 else rng.randrange(0, pledge)
        contacts.append({"id": i, "name": f"Member {i}", "phone": phone,
                         "pledge_cents": pledge, "paid_cents": paid,
                         "due_date": TODAY + timedelta(days=rng.randrange(-180, 181))})
        tags += [{"contact_id": i, "tag": t} for t in rng.sample(TAGS, rng.randrange(0, 3))]
        if rng.random() < 0.02:
            optouts.append({"phone": phone, "reason": "", "source": OptSource.MANUAL})
    optouts += [{"phone": f"+2541{i:08d}", "reason": "", "source": OptSource.IMPORT}
                for i in range(len(optouts))]
    with db.session() as session:
        for table, values in ((Contact, contacts), (ContactTag, tags), (OptOut, optouts)):
            for start in range(0, len(values), 10_000):
                session.execute(insert(table), values[start:start + 10_000])
    with db.engine.begin() as conn:  # fresh statistics, as after any large import
        conn.execute(text("ANALYZE"))
    return len(optouts)


def measure(db: Database, audience: Audience, repeats: int) -> dict[str, Any]:
    """Wall time per count, and this process's CPU time: on a busy machine the wall time
    grows with the load, while for SQLite (which runs in this process) the CPU time is the
    query's own work."""
    times, cpu = [], []
    with db.session() as session:
        for _ in range(repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            counted = count_audience(session, audience, TODAY)
            times.append((time.perf_counter() - start) * 1000)
            cpu.append((time.process_time() - start_cpu) * 1000)
    return {"matched": counted.matched, "suppressed": counted.suppressed,
            "median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1),
            "cpu_median_ms": round(statistics.median(cpu), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--database-url",
                        help="a PostgreSQL server to create the scratch database on "
                             "(default: SQLite)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, scratch_database(args.database_url) as url:
        overrides = {"RELAYDESK_DATA_DIR": tmp}
        if url:
            overrides["RELAYDESK_DATABASE_URL"] = url
        db = open_database(load_settings(overrides))
        start = time.perf_counter()
        opted_out = fill(db, args.rows)
        fill_s = time.perf_counter() - start
        load_before = os.getloadavg()[0]
        counts = {name: measure(db, audience, args.repeats)
                  for name, audience in FILTERS.items()}
        load_after = os.getloadavg()[0]
        db.dispose()

    slowest = max(c["max_ms"] for c in counts.values())
    print(json.dumps({
        "benchmark": "audience_count",
        "database": db.engine.dialect.name,
        "contacts": args.rows,
        "opt_outs": opted_out,
        "repeats": args.repeats,
        "fill_s": round(fill_s, 1),
        "counts": counts,
        "load_average_1m": [round(load_before, 2), round(load_after, 2)],
        "cpus": os.cpu_count(),
        "slowest_ms": slowest,
        "target": f"every count under {TARGET_MS} ms",
        "within_target": slowest < TARGET_MS,
    }, indent=2))


if __name__ == "__main__":
    main()
