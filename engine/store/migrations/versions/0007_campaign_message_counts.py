"""Campaign totals kept as messages change, so the Campaigns page need not count them.

campaign_message_counts holds each campaign's messages (and their attempts) per status and
delivery status ('' for none). Triggers on outgoing_messages keep it: whatever statement
inserts, updates or deletes messages (a claim, an outcome, a report, an expiry, a cancel, a
prune, a campaign discarded) changes the counts in the same transaction, so a reader sees
both in one snapshot and no code path can forget them.

- SQLite has one writer at a time: row triggers add to the key's one row (an upsert).
- PostgreSQL has many: updating a shared counter row would serialise the workers on it
  and can deadlock (a claim moves failed -> sending while an outcome moves sending ->
  failed). Statement triggers append one row per key the statement changed, read from its
  transition tables; a key may have several rows, which readers add up and the workers'
  sweep folds into one (engine.store.message_counts.fold).

Measured on the Campaigns page at 3,000,000 messages (benchmarks/large_store.py): its list
counted the messages of its first page of campaigns in 2,580 ms; it reads these in 14 ms.

Revision ID: 0007
Revises: 0006
Create Date: 2027-01-20 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

# The counts as they are now; the same statement as engine.store.message_counts.REBUILD
# (written out: a migration must not change when the code does).
BACKFILL = """
INSERT INTO campaign_message_counts (campaign_id, status, delivery, messages, attempts)
SELECT campaign_id, status, COALESCE(delivery, ''), COUNT(*), COALESCE(SUM(attempts), 0)
FROM outgoing_messages GROUP BY campaign_id, status, COALESCE(delivery, '')
"""

# SQLite: add ``sign`` times the row's message to its key.
_SQLITE_ADD = """
    INSERT INTO campaign_message_counts (campaign_id, status, delivery, messages, attempts)
    VALUES ({row}.campaign_id, {row}.status, COALESCE({row}.delivery, ''), {sign}1,
            {sign}{row}.attempts)
    ON CONFLICT (campaign_id, status, delivery) DO UPDATE
    SET messages = messages + excluded.messages, attempts = attempts + excluded.attempts;
"""

SQLITE_TRIGGERS = (
    "CREATE TRIGGER campaign_counts_insert AFTER INSERT ON outgoing_messages BEGIN"
    + _SQLITE_ADD.format(row="NEW", sign="") + "END",
    "CREATE TRIGGER campaign_counts_delete AFTER DELETE ON outgoing_messages BEGIN"
    + _SQLITE_ADD.format(row="OLD", sign="-") + "END",
    # Only when a counted column changed: most updates (an error text, a poll time) don't.
    "CREATE TRIGGER campaign_counts_update "
    "AFTER UPDATE OF campaign_id, status, delivery, attempts ON outgoing_messages "
    "WHEN OLD.campaign_id IS NOT NEW.campaign_id OR OLD.status IS NOT NEW.status "
    "OR OLD.delivery IS NOT NEW.delivery OR OLD.attempts IS NOT NEW.attempts BEGIN"
    + _SQLITE_ADD.format(row="OLD", sign="-") + _SQLITE_ADD.format(row="NEW", sign="")
    + "END",
)

# PostgreSQL: one appended row per key the statement changed, from its transition tables
# (``changes``: a SELECT of campaign_id, status, delivery, messages, attempts). Transition
# tables cannot name columns, so the update trigger sees every update; keys whose rows
# only changed in other columns add up to zero and are left out.
_PG_FUNCTION = """
CREATE FUNCTION relaydesk_count_{name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO campaign_message_counts (campaign_id, status, delivery, messages, attempts)
    SELECT campaign_id, status, delivery, SUM(messages), SUM(attempts)
    FROM ({changes}) AS changes
    GROUP BY campaign_id, status, delivery
    HAVING SUM(messages) <> 0 OR SUM(attempts) <> 0;
    RETURN NULL;
END $$
"""
_PG_ROWS = ("SELECT campaign_id, status, COALESCE(delivery, '') AS delivery, "
            "{sign}1 AS messages, {sign}attempts AS attempts FROM {table}")
PG_STATEMENTS = (
    _PG_FUNCTION.format(name="inserted", changes=_PG_ROWS.format(sign="", table="new_rows")),
    _PG_FUNCTION.format(name="deleted", changes=_PG_ROWS.format(sign="-", table="old_rows")),
    _PG_FUNCTION.format(name="updated", changes=_PG_ROWS.format(sign="", table="new_rows")
                        + " UNION ALL " + _PG_ROWS.format(sign="-", table="old_rows")),
    "CREATE TRIGGER campaign_counts_insert AFTER INSERT ON outgoing_messages "
    "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
    "EXECUTE FUNCTION relaydesk_count_inserted()",
    "CREATE TRIGGER campaign_counts_delete AFTER DELETE ON outgoing_messages "
    "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT "
    "EXECUTE FUNCTION relaydesk_count_deleted()",
    "CREATE TRIGGER campaign_counts_update AFTER UPDATE ON outgoing_messages "
    "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT "
    "EXECUTE FUNCTION relaydesk_count_updated()",
)


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    # No foreign key: a campaign discarded with its messages (operations.campaigns) has
    # its counts taken to zero by the delete trigger, whichever order the cascade runs in;
    # a key's row never blocks the campaign's deletion.
    op.create_table(
        'campaign_message_counts',
        sa.Column('campaign_id', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(length=12), nullable=False),
        sa.Column('delivery', sa.String(length=16), nullable=False),
        sa.Column('messages', sa.Integer(), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        *([sa.PrimaryKeyConstraint('campaign_id', 'status', 'delivery',
                                   name=op.f('pk_campaign_message_counts'))]
          if sqlite else []),
    )
    if not sqlite:
        op.create_index('ix_campaign_message_counts_campaign_id', 'campaign_message_counts',
                        ['campaign_id'])
    # Triggers first: on PostgreSQL creating one locks out writers until this commits,
    # so no change falls between the count and the triggers (SQLite: the write lock).
    for statement in SQLITE_TRIGGERS if sqlite else PG_STATEMENTS:
        op.execute(statement)
    op.execute(BACKFILL)


def downgrade() -> None:
    for trigger in ("insert", "delete", "update"):
        op.execute(f"DROP TRIGGER campaign_counts_{trigger}"
                   + ("" if op.get_bind().dialect.name == "sqlite" else " ON outgoing_messages"))
    if op.get_bind().dialect.name != "sqlite":
        for name in ("inserted", "deleted", "updated"):
            op.execute(f"DROP FUNCTION relaydesk_count_{name}()")
    op.drop_table('campaign_message_counts')
