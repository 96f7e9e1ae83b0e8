"""Who and when: the opt-out list, each campaign's audience and send window, scheduling.

opt_outs is the suppression list. campaigns gains the audience it was sent with (JSON), the
time zone and quiet hours it recorded at creation, the time it is scheduled for, and how
many matched contacts the opt-out list removed. Campaigns from before keep sending as they
did: no audience (they kept tag_filter), UTC and no quiet hours.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 01:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('opt_outs',
    sa.Column('phone', sa.String(length=20), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('phone', name=op.f('pk_opt_outs'))
    )
    with op.batch_alter_table('opt_outs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_opt_outs_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_opt_outs_source'), ['source'], unique=False)
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.add_column(sa.Column('audience', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('timezone', sa.String(length=64), nullable=False,
                                      server_default='UTC'))
        batch_op.add_column(sa.Column('quiet_hours', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('scheduled_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('suppressed', sa.Integer(), nullable=False,
                                      server_default='0'))
        batch_op.create_index(batch_op.f('ix_campaigns_status_scheduled_at'),
                              ['status', 'scheduled_at'], unique=False)
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_contacts_due_date'), ['due_date'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_contacts_due_date'))
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_campaigns_status_scheduled_at'))
        batch_op.drop_column('suppressed')
        batch_op.drop_column('scheduled_at')
        batch_op.drop_column('quiet_hours')
        batch_op.drop_column('timezone')
        batch_op.drop_column('audience')
    with op.batch_alter_table('opt_outs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_opt_outs_source'))
        batch_op.drop_index(batch_op.f('ix_opt_outs_created_at'))
    op.drop_table('opt_outs')
