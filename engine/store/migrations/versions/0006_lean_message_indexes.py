"""Leaner message indexes: queueing a campaign writes to six indexes, not eleven.

Every index on outgoing_messages costs each queued row an entry, and a queued message has
no provider id, delivery status, send time or poll time yet. The indexes on those columns
become partial (``WHERE column IS NOT NULL``): a message enters them when it is sent, in
the same UPDATE that sets the column, and every query that reads them asks for a value
(``=``, ``IN``, ``<=``), which both databases accept for a partial index of that form.
Messages sent before 0004 (sent, no delivery status), which retention finds by sent_at,
get an index of their own: no message sent since enters it. The index on status alone
goes: (status, claimed_at) begins with status and serves every query it served.

Measured at 100,000 recipients on PostgreSQL, the campaign's COPY alone: 1.75 s with the
old indexes, 1.23 s with partial ones.

Revision ID: 0006
Revises: 0005
Create Date: 2027-01-12 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

# (name, columns, the condition of the new partial index), as in engine.store.models.
PARTIAL = (
    ('ix_outgoing_messages_provider_message_id', ['provider_message_id'],
     'provider_message_id IS NOT NULL'),
    ('ix_outgoing_messages_campaign_id_delivery', ['campaign_id', 'delivery'],
     'delivery IS NOT NULL'),
    ('ix_outgoing_messages_delivery_sent_at', ['delivery', 'sent_at'],
     'delivery IS NOT NULL'),
    ('ix_outgoing_messages_report_poll_at', ['report_poll_at'],
     'report_poll_at IS NOT NULL'),
)
UNREPORTED = "status = 'sent' AND delivery IS NULL"


def upgrade() -> None:
    op.drop_index('ix_outgoing_messages_status', table_name='outgoing_messages')
    for name, columns, condition in PARTIAL:
        op.drop_index(name, table_name='outgoing_messages')
        op.create_index(name, 'outgoing_messages', columns, sqlite_where=sa.text(condition),
                        postgresql_where=sa.text(condition))
    op.create_index('ix_outgoing_messages_sent_unreported', 'outgoing_messages',
                    ['status', 'sent_at', 'id'], sqlite_where=sa.text(UNREPORTED),
                    postgresql_where=sa.text(UNREPORTED))


def downgrade() -> None:
    op.drop_index('ix_outgoing_messages_sent_unreported', table_name='outgoing_messages')
    for name, columns, _ in PARTIAL:
        op.drop_index(name, table_name='outgoing_messages')
        op.create_index(name, 'outgoing_messages', columns)
    op.create_index('ix_outgoing_messages_status', 'outgoing_messages', ['status'])
