"""Each campaign's maintained message counts (models.MessageCount, kept by the triggers of
migration 0007): folded on PostgreSQL, where every statement that changes messages appends
rows; and the count from scratch, for stores bulk-loaded with the triggers off
(benchmarks/_store_seed.py)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

# Into an empty table: every campaign's counts from its messages.
REBUILD = """
INSERT INTO campaign_message_counts (campaign_id, status, delivery, messages, attempts)
SELECT campaign_id, status, COALESCE(delivery, ''), COUNT(*), COALESCE(SUM(attempts), 0)
FROM outgoing_messages GROUP BY campaign_id, status, COALESCE(delivery, '')
"""

# The campaigns with a key in more than one row lose those rows for one row per key,
# their sum, in one statement: rows appended meanwhile by other transactions are not in
# its snapshot, so they are neither deleted nor summed, and stay as they are.
_FOLD = """
WITH scattered AS (
    SELECT DISTINCT campaign_id FROM campaign_message_counts
    GROUP BY campaign_id, status, delivery HAVING COUNT(*) > 1 OR SUM(messages) = 0
), gone AS (
    DELETE FROM campaign_message_counts
    WHERE campaign_id IN (SELECT campaign_id FROM scattered)
    RETURNING campaign_id, status, delivery, messages, attempts
)
INSERT INTO campaign_message_counts (campaign_id, status, delivery, messages, attempts)
SELECT campaign_id, status, delivery, SUM(messages), SUM(attempts) FROM gone
GROUP BY campaign_id, status, delivery HAVING SUM(messages) <> 0 OR SUM(attempts) <> 0
"""


def fold(session: Session) -> int:
    """PostgreSQL: one row per key again, zero rows dropped; the rows written. SQLite keeps
    one row per key already: nothing to do."""
    if session.get_bind().dialect.name == "sqlite":
        return 0
    return int(getattr(session.execute(text(_FOLD)), "rowcount", 0) or 0)
