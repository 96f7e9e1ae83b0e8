"""Data that lasts: retention keeps each campaign's totals, and finds settled messages fast.

campaign_pruned_counts holds what `relaydesk db prune` (and RELAYDESK_KEEP_MESSAGES) removed
from a campaign, per message status and delivery status, so its totals read the same
after. Two partial indexes on outgoing_messages list the settled messages by when they
settled: ended ones (cancelled, suppressed, dead) by status and updated_at, sent ones with a
final delivery status by delivery status and delivery_at. Only settled rows are in them, so sending never writes to
them. Nothing is deleted here: an upgrade never prunes on its own.

Revision ID: 0005
Revises: 0004
Create Date: 2027-01-10 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

# Written out as in engine.store.models (a migration must not change when the models do).
ENDED = "status IN ('cancelled', 'suppressed', 'dead')"
REPORTED = "delivery IN ('delivered', 'undelivered', 'expired')"


def upgrade() -> None:
    op.create_table('campaign_pruned_counts',
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('delivery', sa.String(length=16), nullable=False),
    sa.Column('messages', sa.Integer(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'],
                            name=op.f('fk_campaign_pruned_counts_campaign_id_campaigns'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('campaign_id', 'status', 'delivery',
                            name=op.f('pk_campaign_pruned_counts'))
    )
    with op.batch_alter_table('outgoing_messages', schema=None) as batch_op:
        batch_op.create_index('ix_outgoing_messages_ended_at',
                              ['status', 'updated_at', 'id'],
                              unique=False, sqlite_where=sa.text(ENDED),
                              postgresql_where=sa.text(ENDED))
        batch_op.create_index('ix_outgoing_messages_reported_at',
                              ['delivery', 'delivery_at', 'id'],
                              unique=False, sqlite_where=sa.text(REPORTED),
                              postgresql_where=sa.text(REPORTED))


def downgrade() -> None:
    with op.batch_alter_table('outgoing_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_outgoing_messages_reported_at')
        batch_op.drop_index('ix_outgoing_messages_ended_at')
    op.drop_table('campaign_pruned_counts')
