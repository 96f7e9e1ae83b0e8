"""Long maintenance on SQLite (a prune, giving space back) leaves room for sending.

SQLite has one write lock for the whole database. A loop that takes it again the moment
it let go starves the workers: a worker that found it taken sleeps in SQLite's busy
handler (up to 100 ms at a time) and finds it taken again each time it wakes. Measured
with benchmarks/large_store.py (3,000,000 messages, two workers sending at 2,195 msg/s
before): sending fell to 242 msg/s while a prune deleted in back-to-back batches, and to
6 msg/s, with a 42 s gap, while the freed pages were given back. So after each step the
loop rests as long as the step held the lock, and at least as long as the busy handler's
longest sleep: a waiting worker wakes within the rest, and sending has the lock at least
half the time. PostgreSQL locks rows, not the database: nothing to share there.
"""

from __future__ import annotations

import time

from engine.store.db import Database

# SQLite's busy handler sleeps at most 100 ms between tries.
MIN_REST_S = 0.1

sleep = time.sleep  # looked up at each rest: a test records the rests instead


def rest_after_step(db: Database, held_s: float) -> None:
    """Rest as long as the step that held SQLite's write lock for ``held_s`` (at least
    MIN_REST_S); at once on another database."""
    if db.engine.dialect.name == "sqlite":
        sleep(max(held_s, MIN_REST_S))
