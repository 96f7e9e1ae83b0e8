"""The failed-job review: every failed delivery attempt, and indexes for a 100,000-row panel.

delivery_attempts keeps each failed attempt of a message (the message row keeps only the
first and last error). The (retried_at, <sort column>) indexes serve the panel's default
view (not retried yet) in each sort order, and its count, without reading the wide rows;
the retry_of_id index keeps forgetting records (whose successors lose their link) from
scanning the table once per record.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 01:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('delivery_attempts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('message_id', sa.Integer(), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['message_id'], ['outgoing_messages.id'], name=op.f('fk_delivery_attempts_message_id_outgoing_messages'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_delivery_attempts'))
    )
    with op.batch_alter_table('delivery_attempts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_delivery_attempts_message_id'), ['message_id'], unique=False)
    with op.batch_alter_table('failed_jobs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_failed_jobs_retried_at_failed_at'), ['retried_at', 'failed_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_failed_jobs_retried_at_campaign_id'), ['retried_at', 'campaign_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_failed_jobs_retried_at_recipient'), ['retried_at', 'recipient'], unique=False)
        batch_op.create_index(batch_op.f('ix_failed_jobs_retried_at_queue'), ['retried_at', 'queue'], unique=False)
        batch_op.create_index(batch_op.f('ix_failed_jobs_retried_at_exception_type'), ['retried_at', 'exception_type'], unique=False)
        batch_op.create_index(batch_op.f('ix_failed_jobs_retried_at_attempts'), ['retried_at', 'attempts'], unique=False)
        batch_op.create_index(batch_op.f('ix_failed_jobs_retry_of_id'), ['retry_of_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('failed_jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_failed_jobs_retry_of_id'))
        batch_op.drop_index(batch_op.f('ix_failed_jobs_retried_at_attempts'))
        batch_op.drop_index(batch_op.f('ix_failed_jobs_retried_at_exception_type'))
        batch_op.drop_index(batch_op.f('ix_failed_jobs_retried_at_queue'))
        batch_op.drop_index(batch_op.f('ix_failed_jobs_retried_at_recipient'))
        batch_op.drop_index(batch_op.f('ix_failed_jobs_retried_at_campaign_id'))
        batch_op.drop_index(batch_op.f('ix_failed_jobs_retried_at_failed_at'))
    with op.batch_alter_table('delivery_attempts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_delivery_attempts_message_id'))
    op.drop_table('delivery_attempts')
