"""Many dead letters, bulk-inserted straight into the store (the tests of the Failed page and
benchmarks/failed_panel.py): dead messages of three campaigns and their failed_jobs rows.

Row ``i`` is fully determined by ``i`` (see seed_row), so a test can count in Python what
a filter must find.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, text

from engine.store.db import Database
from engine.store.models import Campaign, CampaignStatus, FailedJob, MessageStatus, OutgoingMessage

ERROR_TYPES = ("invalid_number", "timeout", "http_500", "blocked")
QUEUES = ("messages", "bulk_messages", "high_priority")
CAMPAIGNS = ("Pledge reminder March", "Choir fundraiser", "Building fund drive")
FIRST_FAILURE = datetime(2026, 11, 1, tzinfo=UTC)
STEP = timedelta(seconds=20)  # 100,000 rows span 23 days, all in the past
QUOTA_EVERY = 1000  # row i with i % 1000 == 7 says "quota exceeded"
BATCH = 5000


def seed_row(i: int) -> dict[str, Any]:
    error_type = ERROR_TYPES[i % len(ERROR_TYPES)]
    reason = "quota exceeded" if i % QUOTA_EVERY == 7 else "provider refused"
    return {
        "i": i, "phone": f"+2547{i:07d}5",  # never ends in the gateway's 0001-0004
        "campaign": (i // 7) % len(CAMPAIGNS), "queue": QUEUES[i % len(QUEUES)],
        "error_type": error_type, "attempts": 1 + i % 3,
        "error": f"{error_type}: {reason} (ref {i})",
        "failed_at": FIRST_FAILURE + i * STEP,
    }


def seed_failed(db: Database, count: int) -> list[int]:
    """Insert ``count`` dead messages with their failed jobs; returns the campaign ids."""
    now = datetime.now(UTC)
    with db.session() as session:
        campaigns = [Campaign(name=name, template="Dear #name", status=CampaignStatus.COMPLETED,
                              route="individual", queue=QUEUES[n], created_at=now)
                     for n, name in enumerate(CAMPAIGNS)]
        session.add_all(campaigns)
        session.flush()
        campaign_ids = [c.id for c in campaigns]
        first_message = (session.execute(text("SELECT max(id) FROM outgoing_messages"))
                         .scalar() or 0) + 1
        first_failed = (session.execute(text("SELECT max(id) FROM failed_jobs")).scalar()
                        or 0) + 1
        for start in range(0, count, BATCH):
            messages, failed = [], []
            for i in range(start, min(start + BATCH, count)):
                row = seed_row(i)
                body = f"Dear member {i}, your pledge balance is 1,000. Thank you."
                messages.append({
                    "id": first_message + i, "campaign_id": campaign_ids[row["campaign"]],
                    "phone": row["phone"], "body": body, "encoding": "gsm7", "segments": 1,
                    "status": MessageStatus.DEAD, "attempts": row["attempts"],
                    "first_error": row["error"], "last_error": row["error"],
                    "created_at": now, "updated_at": now})
                failed.append({
                    "id": first_failed + i, "message_id": first_message + i,
                    "campaign_id": campaign_ids[row["campaign"]], "recipient": row["phone"],
                    "queue": row["queue"], "task_name": "relaydesk.send_message",
                    "payload": json.dumps({"message_id": first_message + i, "to": row["phone"],
                                           "body": body, "segments": 1, "encoding": "gsm7"}),
                    "attempts": row["attempts"], "exception_type": row["error_type"],
                    "first_error": row["error"], "last_error": row["error"],
                    "provider_response": '{"status": "rejected"}',
                    "first_failed_at": row["failed_at"], "failed_at": row["failed_at"]})
            session.execute(insert(OutgoingMessage.__table__), messages)
            session.execute(insert(FailedJob.__table__), failed)
        if db.engine.dialect.name == "postgresql":  # explicit ids: move the sequences on
            for table in ("outgoing_messages", "failed_jobs"):
                session.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                     f"(SELECT max(id) FROM {table}))"))
    return campaign_ids


def rows(count: int) -> Iterator[dict[str, Any]]:
    return (seed_row(i) for i in range(count))
