"""Queue names, in the order workers consume them (first = most urgent)."""

from __future__ import annotations

HIGH_PRIORITY = "high_priority"
MESSAGES = "messages"
BULK_MESSAGES = "bulk_messages"

ALL_QUEUES: tuple[str, ...] = (HIGH_PRIORITY, MESSAGES, BULK_MESSAGES)
