"""Enqueueing a campaign: the time ``send_campaign`` takes, from the call until the campaign
is queued for the workers (audience read, every message rendered and counted, the rows
written in one transaction, the jobs published). Prints JSON.

Usage: python benchmarks/enqueue.py [--recipients 100000] [--repeats 5]
                                    [--database-url postgresql://USER@HOST/DB]
Default: SQLite in a temporary data dir. With --database-url the contacts go into a new
scratch database created on that PostgreSQL server and dropped afterwards (the database
named in the URL is only used to connect). The contacts and template are those of
benchmarks/throughput.py; Redis is the embedded one; no worker runs (the jobs stay queued).
Each repeat sends the same campaign to a table holding only the contacts: the previous
repeat's campaign is deleted first (and vacuumed away on PostgreSQL), outside the timing.
``enqueue_cpu_s`` is this process's CPU time (on SQLite the database's work included),
``server_cpu_s`` that of the PostgreSQL server's processes for the scratch database when
the server runs on this machine: on a busy machine the wall time grows with the load, the
CPU times much less.
Target: median under 1.5 s at 100,000 recipients on SQLite and PostgreSQL.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil
import redis
from sqlalchemy import delete, func, select, text

sys.path.insert(0, str(Path(__file__).parent))
from _pipeline_bench import TEMPLATE, write_contacts  # throughput.py's contacts, template
from import_contacts import scratch_database  # the same scratch PostgreSQL database

from engine.config.settings import load_settings
from engine.infra.connections import celery_for
from engine.infra.embedded_redis import EmbeddedRedis
from engine.operations.campaigns import send_campaign
from engine.store.contacts_import import import_contacts
from engine.store.db import Database, open_database
from engine.store.models import Campaign, OutgoingMessage

TARGET_S = 1.5


def clear(db: Database) -> None:
    """Remove the previous repeat's campaign; on PostgreSQL also its dead rows, which the
    next COPY would otherwise find in the table and its indexes."""
    with db.session() as session:
        session.execute(delete(OutgoingMessage))
        session.execute(delete(Campaign))
    if db.engine.dialect.name == "postgresql":
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE outgoing_messages"))


def server_cpu_s(db: Database) -> float | None:
    """CPU seconds used so far by the PostgreSQL server processes serving this database,
    when the server runs on this machine (None for SQLite or a server elsewhere)."""
    if db.engine.dialect.name != "postgresql":
        return None
    with db.engine.connect() as conn:
        pids = list(conn.scalars(text("SELECT pid FROM pg_stat_activity "
                                      "WHERE datname = current_database()")))
    try:
        return sum(sum(psutil.Process(pid).cpu_times()[:2]) for pid in pids)
    except psutil.Error:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--database-url",
                        help="a PostgreSQL server to create the scratch database on "
                             "(default: SQLite)")
    args = parser.parse_args()
    times: list[float] = []
    cpu: list[float] = []
    server_cpu: list[float] = []
    loads: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, scratch_database(args.database_url) as url:
        overrides = {"RELAYDESK_DATA_DIR": tmp}
        if url:
            overrides["RELAYDESK_DATABASE_URL"] = url
        settings = load_settings(overrides)
        db = open_database(settings)
        csv = Path(tmp) / "contacts.csv"
        write_contacts(csv, args.recipients)
        import_contacts(db, csv, settings.default_region)
        server = EmbeddedRedis.for_settings(settings)
        process, redis_url = server.start()
        try:
            client = redis.Redis.from_url(redis_url)
            celery_for(redis_url)
            for _ in range(args.repeats):
                clear(db)
                client.flushdb()
                loads.append(os.getloadavg()[0])
                server_before = server_cpu_s(db)
                start, start_cpu = time.perf_counter(), time.process_time()
                created = send_campaign(db, client, settings, TEMPLATE)
                times.append(time.perf_counter() - start)
                cpu.append(time.process_time() - start_cpu)
                server_after = server_cpu_s(db)
                if server_before is not None and server_after is not None:
                    server_cpu.append(server_after - server_before)
                with db.session() as session:
                    written = session.scalar(select(func.count(OutgoingMessage.id)).where(
                        OutgoingMessage.campaign_id == created.id))
                if written != args.recipients:
                    raise SystemExit(f"{written} messages written, not {args.recipients}")
            client.close()
        finally:
            server.stop()
            if process is not None:
                process.wait()
            dialect = db.engine.dialect.name
            db.dispose()

    median = statistics.median(times)
    print(json.dumps({
        "benchmark": "enqueue",
        "database": dialect,
        "recipients": args.recipients,
        "route": str(created.plan.route),
        "repeats_s": [round(t, 3) for t in times],
        "enqueue_s": round(median, 3),
        "enqueue_cpu_s": round(statistics.median(cpu), 3),
        "server_cpu_s": round(statistics.median(server_cpu), 3) if server_cpu else None,
        "load_average_1m": [round(load, 2) for load in loads],
        "cpus": os.cpu_count(),
        "target": f"median under {TARGET_S} s",
        "within_target": median < TARGET_S,
    }, indent=2))


if __name__ == "__main__":
    main()
