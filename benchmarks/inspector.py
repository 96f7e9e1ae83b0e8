"""What the development inspector costs; prints JSON.

- write: microseconds per recorded entry (one pipelined XADD + XTRIM), with the stream full
  so that every write also trims;
- read: milliseconds for the page's read (newest 500 of every kind), unfiltered and with a
  campaign filter that matches one entry in ten (so every batch is read), and the live
  view's next read (10 new entries after the previous read's cursors);
- memory: Redis bytes held by the three full streams;
- sql: microseconds per SQLite statement without the inspector and with it recording.

Usage: python benchmarks/inspector.py [--entries 5000] [--statements 3000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import text

from engine.config.settings import load_settings
from engine.infra.embedded_redis import EmbeddedRedis
from engine.infra.inspector_store import KINDS, Entry, InspectorStore, Query, stream_key
from engine.monitoring import inspector
from engine.store.db import create_db_engine


def _entry(kind: Any, i: int) -> Entry:
    detail = {"statement": "UPDATE outgoing_messages SET status=?, claimed_at=? WHERE "
                           "outgoing_messages.id = ?", "request_body": "x" * 200}
    return Entry(kind, time.time(), "UPDATE", f"entry {i}", "ok", i % 10, "relaydesk.send_chunk",
                 0.3, detail)


def _timed(fn: Any, repeat: int = 5) -> float:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def _sql_us(engine: Any, statements: int) -> float:
    with engine.connect() as connection:
        start = time.perf_counter()
        for _ in range(statements):
            connection.execute(text("SELECT 1"))
        return (time.perf_counter() - start) / statements * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=5000)
    parser.add_argument("--statements", type=int, default=3000)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="relaydesk-inspector-bench-"))
    os.environ.update({"RELAYDESK_DATA_DIR": str(data_dir), "RELAYDESK_ENV": "development",
                       "RELAYDESK_CONFIG_FILE": str(data_dir / "config.toml"),
                       "RELAYDESK_INSPECTOR_MAX_ENTRIES": str(args.entries)})
    server = EmbeddedRedis(data_dir / "redis")
    server.start()
    try:
        client = redis.Redis.from_url(server.url())
        store = InspectorStore(client, args.entries, 3600)
        for kind in KINDS:
            for i in range(args.entries):
                store.add(_entry(kind, i))
        writes = 1000
        start = time.perf_counter()
        for i in range(writes):
            store.add(_entry("sql", i))
        write_us = (time.perf_counter() - start) / writes * 1e6
        read_ms = _timed(lambda: store.entries(Query(limit=500))) * 1000
        filtered_ms = _timed(lambda: store.entries(Query(campaign=3, limit=500))) * 1000
        cursors = store.read(Query(limit=500)).cursors
        for i in range(10):
            store.add(_entry("job", i))
        live_ms = _timed(lambda: store.read(Query(limit=500, after=cursors))) * 1000
        memory = sum(int(client.memory_usage(stream_key(k)) or 0) for k in KINDS)

        settings = load_settings()
        plain = create_db_engine(f"sqlite:///{data_dir / 'plain.db'}")
        watched = create_db_engine(f"sqlite:///{data_dir / 'watched.db'}")
        inspector.watch_sql(watched, settings)
        plain_us = _sql_us(plain, args.statements)
        watched_us = _sql_us(watched, args.statements)
        inspector.stop()
        print(json.dumps({
            "entries_per_kind": args.entries,
            "write_us_per_entry": round(write_us, 1),
            "read_newest_500_ms": round(read_ms, 1),
            "read_campaign_filtered_500_ms": round(filtered_ms, 1),
            "read_10_new_after_cursors_ms": round(live_ms, 1),
            "redis_bytes_full_store": memory,
            "sql_us_per_statement_off": round(plain_us, 1),
            "sql_us_per_statement_recording": round(watched_us, 1),
        }, indent=2))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
