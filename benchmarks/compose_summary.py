"""Compose's totals over 100,000 contacts with the Unicode hints: ``summarise`` renders every
message once, streamed, and tallies the characters that force UCS-2 and what they cost.
Compared with rendering alone (the floor), for an all-GSM-7 template and one with a curly
apostrophe (every message UCS-2), names with ’ or ✓ in a few contacts. Prints JSON.

Usage: python benchmarks/compose_summary.py [--rows 100000] [--repeats 3]
Peak Python memory (tracemalloc) is taken on a separate run, as tracing slows it down.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from sqlalchemy import insert

from engine.config.settings import load_settings
from engine.domain.audience import EVERYONE
from engine.domain.personalize import Template
from engine.operations.preview import ComposeSummary, summarise
from engine.store.audience_query import render_audience
from engine.store.db import Database, open_database
from engine.store.models import Contact

TODAY = date(2027, 3, 1)
TEMPLATES = {
    "gsm7": "Dear #name, of your pledge of #pledge you have paid #paid_amount; #balance "
            "remains, #days_remain days to go.",
    "curly_apostrophe": "Dear #name, of your pledge of #pledge you’ve paid #paid_amount; "
                        "#balance remains, #days_remain days to go.",
}


def fill(db: Database, rows: int) -> None:
    """1 contact in 100 is an O’Name, 1 in 200 has a ✓ in the name."""
    contacts = [{"id": i, "phone": f"+2547{10_000_000 + i:08d}",
                 "name": f"O’Member {i}" if i % 100 == 0 else
                 f"Member {i} ✓" if i % 200 == 1 else f"Member {i}",
                 "pledge_cents": 100_000 + i, "paid_cents": i * 3 % 100_000,
                 "due_date": TODAY + timedelta(days=i % 90)} for i in range(1, rows + 1)]
    with db.session() as session:
        for start in range(0, rows, 10_000):
            session.execute(insert(Contact), contacts[start:start + 10_000])


def timed(work: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - start)
    return round(statistics.median(times), 2), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings({"RELAYDESK_DATA_DIR": tmp,
                                  "RELAYDESK_PRICE_PER_SEGMENT": "0.80"})
        db = open_database(settings)
        fill(db, args.rows)
        with db.session() as session:
            for name, text in TEMPLATES.items():
                def render(template: Template = Template.parse(text)) -> int:  # noqa: B008
                    return sum(1 for _ in render_audience(session, template, EVERYONE, TODAY,
                                                          settings.currency_format))

                def summary_of(text: str = text) -> ComposeSummary:
                    return summarise(session, settings, text, EVERYONE, today=TODAY)

                render()  # warm the database's cache for both
                render_s, _ = timed(render, args.repeats)
                summary_s, summary = timed(summary_of, args.repeats)
                tracemalloc.start()
                summarise(session, settings, text, EVERYONE, today=TODAY)
                peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
                results[name] = {
                    "render_only_s": render_s, "summarise_s": summary_s,
                    "peak_traced_mib": round(peak / 2**20, 1),
                    "segments": summary.segments,
                    "unicode_extra_segments": summary.unicode_extra_segments,
                    "unicode_extra_cost": str(summary.unicode_extra_cost),
                    "ucs2_characters": [c.as_dict() | {"contacts": len(c.contacts)}
                                        for c in summary.ucs2_characters],
                }
        db.dispose()
    print(json.dumps({"benchmark": "compose_summary", "contacts": args.rows,
                      "repeats": args.repeats, "templates": results}, indent=2,
                     ensure_ascii=False))


if __name__ == "__main__":
    main()
