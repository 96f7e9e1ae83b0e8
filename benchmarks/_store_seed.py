"""A month of RelayDesk's history, bulk-loaded straight into the store (not through the
pipeline) for benchmarks/large_store.py: campaigns of tens of thousands of messages spread
over ``days`` days, most sent (delivered, undelivered, expired or still awaiting a report),
some dead with their failed jobs (a fifth of those retried: sent after the retry, or dead
again with a second record), some suppressed; one campaign cancelled half-way and the
newest one paused half-way; delivery reports, failed attempts, replies, the opt-out list
and the contacts they went to.

Every row is fully determined by its place (message ``g`` of the store), so a run can be
repeated, and the failed jobs' fields come from tests/failed_seed.py's ``seed_row`` (the
same error types, queues and "quota exceeded" every 1,000th), as the Failed page's earlier
benchmark used.

Loading: the schema comes from RelayDesk's own migrations (open_database); the big tables'
secondary indexes are dropped, the rows are written with the driver's fastest bulk path
(executemany on SQLite, COPY on PostgreSQL) and the indexes built again, exactly as the
migrations declared them. SQLite gets no ANALYZE (RelayDesk never runs one, so a real
store has no statistics); PostgreSQL does (its autovacuum would soon).
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# The count of every campaign's messages, for stores loaded with the triggers off.
from engine.store.message_counts import REBUILD as REBUILD_COUNTS
from tests.failed_seed import seed_row

# The tables whose secondary indexes are dropped while loading and built again after.
BIG_TABLES = ("outgoing_messages", "delivery_reports", "delivery_attempts", "failed_jobs",
              "inbound_messages")
NAMES = ("Pledge reminder", "Choir fundraiser", "Building fund drive", "Harvest appeal",
         "Youth camp pledges", "Monthly statement")
REPORT_EXPIRY = timedelta(hours=48)  # RELAYDESK_REPORT_EXPIRY's default
# Per 100,000 messages (see _fate): dead and waiting for review, retried (of which some
# dead again), suppressed at send time. 100,000 failed jobs for 3,000,000 messages.
DEAD_UNTIL, RETRIED_UNTIL, AGAIN_UNTIL, SUPPRESSED_UNTIL = 2667, 3200, 2800, 3700
LOG: Callable[[str], None] = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731


@dataclass(frozen=True)
class Shape:
    """How big the store is and when its history happened."""

    messages: int = 3_000_000
    campaigns: int = 100
    contacts: int = 100_000
    days: float = 35.0
    now: datetime = datetime(2027, 1, 1, tzinfo=UTC)

    @property
    def per_campaign(self) -> int:
        return self.messages // self.campaigns

    def created(self, k: int) -> datetime:
        """Campaign ``k`` (0 oldest): evenly spread, the newest ``days / campaigns`` ago."""
        return self.now - timedelta(days=self.days * (self.campaigns - k) / self.campaigns)

    @property
    def paused(self) -> int:
        return self.campaigns - 1  # the newest: paused half-way, half its messages queued

    @property
    def cancelled(self) -> int:
        return self.campaigns // 2  # cancelled after 70% of its messages


def phone(contact: int) -> str:
    # ends in 5: never one of the sandbox gateway's test numbers (0001-0004, 0006-0008)
    return f"+2547{contact:07d}5"


def _stamp(moment: datetime, sqlite_text: bool) -> Any:
    naive = moment.astimezone(UTC).replace(tzinfo=None)
    # SQLAlchemy's SQLite DateTime format (always with microseconds): compared as text.
    return naive.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite_text else naive


# Each table's columns in the order Rows gives its values.
COLUMNS: dict[str, tuple[str, ...]] = {
    "contacts": ("id", "name", "phone", "pledge_cents", "paid_cents", "due_date",
                 "created_at", "updated_at"),
    "contact_tags": ("contact_id", "tag"),
    "campaigns": ("id", "name", "template", "audience", "timezone", "suppressed",
                  "urgent", "status", "route", "queue", "recipients", "segments",
                  "created_at", "started_at", "finished_at", "pause_reason"),
    "outgoing_messages": (
        "id", "campaign_id", "contact_id", "phone", "body", "encoding", "segments",
        "status", "attempts", "claimed_at", "first_error", "last_error",
        "provider_message_id", "created_at", "updated_at", "sent_at", "provider",
        "delivery", "delivery_error", "delivery_at", "report_polls", "opt_out_notice"),
    "delivery_reports": ("id", "receipt", "provider", "provider_message_id", "message_id",
                         "status", "provider_status", "error", "received_at"),
    "delivery_attempts": ("id", "message_id", "attempt", "at", "error"),
    "failed_jobs": ("id", "message_id", "campaign_id", "recipient", "queue", "task_name",
                    "payload", "attempts", "exception_type", "first_error", "last_error",
                    "traceback", "provider_response", "first_failed_at", "failed_at",
                    "retried_at", "retry_of_id"),
    "inbound_messages": ("id", "receipt", "provider", "provider_ref", "phone", "to",
                         "text", "received_at", "contact_id", "campaign_id", "keyword",
                         "handled_at"),
    "opt_outs": ("phone", "reason", "source", "created_at"),
}


class Rows:
    """The rows of every table, as tuples in the column order of ``COLUMNS``."""

    def __init__(self, shape: Shape, sqlite_text: bool) -> None:
        self.shape = shape
        self.sqlite = sqlite_text
        self.ts = lambda moment: _stamp(moment, sqlite_text)
        self.counts: dict[str, int] = {}

    def contacts(self) -> Iterator[tuple[Any, ...]]:
        created = self.ts(self.shape.now - timedelta(days=self.shape.days + 30))
        due = date(2027, 6, 30)
        for c in range(1, self.shape.contacts + 1):
            pledge = 500_000 + (c % 20) * 50_000
            yield (c, f"Member {c}", phone(c), pledge, (c * 7919) % pledge,
                   due.isoformat() if self.sqlite else due, created, created)

    def contact_tags(self) -> Iterator[tuple[Any, ...]]:
        for c in range(1, self.shape.contacts + 1):
            yield (c, "members")
            if c % 3 == 0:
                yield (c, "choir")

    def campaigns(self) -> Iterator[tuple[Any, ...]]:
        shape = self.shape
        for k in range(shape.campaigns):
            created = shape.created(k)
            status, finished, reason = "completed", created + timedelta(hours=1), None
            if k == shape.paused:
                status, finished, reason = "paused", None, "paused by the operator"
            elif k == shape.cancelled:
                status = "cancelled"
            name = f"{NAMES[k % len(NAMES)]} {created:%d %b} #{k + 1}"
            yield (k + 1, name, "Dear #name, of your pledge of #pledge you have paid "
                   "#paid_amount; #balance remains.", None, "UTC", 0, False, status, "bulk",
                   "bulk_messages", shape.per_campaign, shape.per_campaign,
                   self.ts(created), self.ts(created), finished and self.ts(finished), reason)

    def _contact(self, k: int, j: int) -> int:
        return (k * 3001 + j) % self.shape.contacts + 1

    def campaign_rows(self, k: int) -> dict[str, list[tuple[Any, ...]]]:
        """Campaign ``k``'s messages and what hangs on them, per table."""
        out: dict[str, list[tuple[Any, ...]]] = {
            t: [] for t in ("outgoing_messages", "delivery_reports", "delivery_attempts",
                            "failed_jobs", "inbound_messages")}
        shape, ts = self.shape, self.ts
        per = shape.per_campaign
        created = shape.created(k)
        step = timedelta(seconds=3600 / per)  # each campaign goes out over an hour
        for j in range(per):
            g = k * per + j  # the message's place in the store; its id is g + 1
            mid, contact = g + 1, self._contact(k, j)
            to = phone(contact)
            body = (f"Dear Member {contact}, of your pledge of KES {5000 + contact % 20 * 500:,}"
                    f" you have paid KES {contact % 4000:,}; the rest remains.")
            sent_at = created + timedelta(seconds=5) + j * step
            row: dict[str, Any] = {
                "status": "sent", "attempts": 1, "first_error": None, "last_error": None,
                "pmid": None, "updated": sent_at, "sent_at": None, "provider": None,
                "delivery": None, "delivery_error": None, "delivery_at": None}
            fate = (g * 2654435761) % 100_000
            if k == shape.paused and j >= per // 2:
                row.update(status="queued", attempts=0, updated=created)
            elif k == shape.cancelled and j >= per * 7 // 10:
                row.update(status="cancelled", attempts=0,
                           updated=created + timedelta(minutes=40))
            elif fate < RETRIED_UNTIL:
                self._dead(mid, k, to, body, sent_at, fate, row, out)
            elif fate < SUPPRESSED_UNTIL:
                row.update(status="suppressed", attempts=0)
            if row["status"] == "sent":
                self._sent(g, mid, k, contact, to, sent_at, row, out)
            out["outgoing_messages"].append((
                mid, k + 1, contact, to, body, "gsm7", 1, row["status"], row["attempts"],
                None, row["first_error"], row["last_error"], row["pmid"], ts(created),
                ts(row["updated"]), row["sent_at"] and ts(row["sent_at"]), row["provider"],
                row["delivery"], row["delivery_error"],
                row["delivery_at"] and ts(row["delivery_at"]), 0, False))
        return out

    def _next_id(self, table: str) -> int:
        self.counts[table] = self.counts.get(table, 0) + 1
        return self.counts[table]

    def _dead(self, mid: int, k: int, to: str, body: str, at: datetime, fate: int,
              row: dict[str, Any], out: dict[str, list[tuple[Any, ...]]]) -> None:
        """A message given up on, with its failed attempts and failed job. Some were
        retried a day later: then sent, or dead again into a second record that points
        back to the first (the first stays, marked retried)."""
        ts = self.ts
        rounds = 2 if DEAD_UNTIL <= fate < AGAIN_UNTIL else 1
        ends_sent = AGAIN_UNTIL <= fate < RETRIED_UNTIL
        retry_of = None
        for n in range(rounds):
            fid = self._next_id("failed_jobs")
            spec = seed_row(fid - 1)
            tried = spec["attempts"]
            first_at = at + timedelta(days=n)
            failed_at = first_at + timedelta(minutes=2 * (tried - 1))
            for a in range(tried):
                out["delivery_attempts"].append((
                    self._next_id("delivery_attempts"), mid, a + 1,
                    ts(first_at + timedelta(minutes=2 * a)), spec["error"]))
            retried = failed_at + timedelta(days=1) if (n < rounds - 1 or ends_sent) \
                else None
            payload = json.dumps({"message_id": mid, "to": to, "body": body, "segments": 1,
                                  "encoding": "gsm7"})
            out["failed_jobs"].append((
                fid, mid, k + 1, to, spec["queue"], "relaydesk.send_chunk", payload, tried,
                spec["error_type"], spec["error"], spec["error"], None,
                '{"status": "rejected"}', ts(first_at), ts(failed_at),
                retried and ts(retried), retry_of))
            retry_of = fid
            row.update(status="dead", attempts=tried, first_error=spec["error"],
                       last_error=spec["error"], updated=failed_at)
            if ends_sent:
                row.update(status="sent", attempts=1, updated=retried)

    def _sent(self, g: int, mid: int, k: int, contact: int, to: str, sent_at: datetime,
              row: dict[str, Any], out: dict[str, list[tuple[Any, ...]]]) -> None:
        ts, now = self.ts, self.shape.now
        sent_at = max(sent_at, row["updated"])
        chance = (g * 40503) % 100
        delivery, error, final = "delivered", None, sent_at + timedelta(seconds=4 + g % 30)
        if chance >= 88:
            delivery, error = "undelivered", "absent subscriber"
        if chance >= 94:  # no report came: expired after 48 h, or still awaited
            delivery, error, final = "expired", None, sent_at + REPORT_EXPIRY
            if final > now:
                delivery, final = "awaiting_report", None
        row.update(sent_at=sent_at, provider="sandbox", pmid=f"sbx-{g:010d}",
                   delivery=delivery, delivery_error=error, delivery_at=final,
                   updated=final or sent_at)
        if delivery in ("delivered", "undelivered"):
            out["delivery_reports"].append((
                self._next_id("delivery_reports"), f"r{g:031d}", "sandbox", row["pmid"], mid,
                delivery, delivery, error or "", ts(final)))
        if g % 331 == 0:  # about 0.3% answer
            word, text = ("stop", "STOP") if g % 7 == 0 else (None, "Thank you, will pay soon")
            out["inbound_messages"].append((
                self._next_id("inbound_messages"), f"i{g:031d}", "sandbox", f"in-{g}", to,
                "RelayDesk", text, ts(sent_at + timedelta(minutes=30)), contact, k + 1, word,
                ts(sent_at + timedelta(hours=2)) if g % 2 else None))


@dataclass
class SeedReport:
    messages: int
    failed_jobs: int
    rows: dict[str, int]
    seconds: dict[str, float]


class Loader:
    """Bulk writes into one database: executemany on SQLite, COPY on PostgreSQL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sqlite = url.startswith("sqlite")
        if self.sqlite:
            self.conn: Any = sqlite3.connect(url.split("///", 1)[1], isolation_level=None)
            for pragma in ("synchronous=OFF", "foreign_keys=OFF", "cache_size=-500000"):
                self.conn.execute(f"PRAGMA {pragma}")
        else:
            import psycopg
            self.conn = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"),
                                        autocommit=True)
            # Foreign keys are checked by triggers: off for the load (as pg_restore
            # --disable-triggers does), every row is consistent by construction.
            self.conn.execute("SET session_replication_role = replica")
            self.conn.execute("SET maintenance_work_mem = '512MB'")

    def secondary_indexes(self, tables: Sequence[str]) -> list[tuple[str, str]]:
        """(name, CREATE statement) of the indexes that back no constraint."""
        names = ", ".join(f"'{t}'" for t in tables)
        if self.sqlite:
            return list(self.conn.execute(
                f"SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
                f"AND tbl_name IN ({names})"))
        return list(self.conn.execute(
            f"SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND "
            f"tablename IN ({names}) AND indexname NOT IN (SELECT conname FROM pg_constraint)"))

    def execute(self, sql: str) -> None:
        self.conn.execute(sql)

    def load(self, table: str, rows: Sequence[tuple[Any, ...]]) -> int:
        """Write ``rows`` (in COLUMNS[table] order); on SQLite inside the caller's
        transaction (begin / commit)."""
        columns = COLUMNS[table]
        quoted = ", ".join(f'"{c}"' for c in columns)
        if self.sqlite:
            marks = ", ".join("?" * len(columns))
            self.conn.executemany(f'INSERT INTO "{table}" ({quoted}) VALUES ({marks})', rows)
            return len(rows)
        with self.conn.cursor() as cur, cur.copy(f'COPY "{table}" ({quoted}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row(row)
        return len(rows)

    def begin(self) -> None:
        if self.sqlite:
            self.conn.execute("BEGIN")

    def commit(self) -> None:
        if self.sqlite:
            self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


def seed(url: str, shape: Shape) -> SeedReport:
    """Fill the (migrated, empty) database at ``url`` with ``shape``'s history."""
    loader = Loader(url)
    rows = Rows(shape, loader.sqlite)
    seconds: dict[str, float] = {}
    counts: dict[str, int] = {}
    try:
        indexes = loader.secondary_indexes(BIG_TABLES)
        for name, _ in indexes:
            loader.execute(f'DROP INDEX "{name}"')
        started = time.perf_counter()
        for table in ("contacts", "contact_tags", "campaigns"):
            loader.begin()
            counts[table] = loader.load(table, list(getattr(rows, table)()))
            loader.commit()
        for k in range(shape.campaigns):
            loader.begin()
            for table, found in rows.campaign_rows(k).items():
                counts[table] = counts.get(table, 0) + loader.load(table, found)
            loader.commit()
            if k % 10 == 9:
                LOG(f"seed: {k + 1} of {shape.campaigns} campaigns, "
                    f"{counts['outgoing_messages']:,} messages in "
                    f"{time.perf_counter() - started:.0f} s")
        unmatched = [(counts["delivery_reports"] + n + 1, f"u{n:031d}", "sandbox",
                      f"unknown-{n}", None, "delivered", "delivered", "",
                      rows.ts(shape.now - timedelta(hours=n % 72))) for n in range(1000)]
        optouts = [(phone(c), "STOP", "reply", rows.ts(shape.now - timedelta(days=40)))
                   for c in range(7, shape.contacts, 997)]
        loader.begin()
        counts["delivery_reports"] += loader.load("delivery_reports", unmatched)
        counts["opt_outs"] = loader.load("opt_outs", optouts)
        loader.commit()
        seconds["load"] = round(time.perf_counter() - started, 1)
        t0 = time.perf_counter()
        for _, create in indexes:
            loader.execute(create)
        seconds["indexes"] = round(time.perf_counter() - t0, 1)
        LOG(f"seed: {len(indexes)} indexes built in {seconds['indexes']} s")
        if not loader.sqlite:
            for table in ("contacts", "contact_tags", "campaigns"):  # explicit ids
                loader.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                               f"(SELECT max(id) FROM {table}))" if table != "contact_tags"
                               else "SELECT 1")
            for table in ("outgoing_messages", "delivery_reports", "delivery_attempts",
                          "failed_jobs", "inbound_messages"):
                loader.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                               f"(SELECT max(id) FROM {table}))")
            # Replica mode kept the count triggers off too: count the messages once.
            t0 = time.perf_counter()
            loader.execute("DELETE FROM campaign_message_counts")
            loader.execute(REBUILD_COUNTS)
            seconds["counts"] = round(time.perf_counter() - t0, 1)
            t0 = time.perf_counter()
            loader.execute("ANALYZE")
            seconds["analyze"] = round(time.perf_counter() - t0, 1)
    finally:
        loader.close()
    return SeedReport(counts["outgoing_messages"], counts["failed_jobs"], counts, seconds)
