"""Initial schema: contacts, tags, campaigns, outgoing messages, the dead-letter store.

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-27 19:26:00.001021
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('campaigns',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('template', sa.Text(), nullable=False),
    sa.Column('tag_filter', sa.String(length=64), nullable=True),
    sa.Column('urgent', sa.Boolean(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('route', sa.String(length=16), nullable=False),
    sa.Column('queue', sa.String(length=32), nullable=False),
    sa.Column('recipients', sa.Integer(), nullable=False),
    sa.Column('segments', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=True),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.Column('pause_reason', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_campaigns'))
    )
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_campaigns_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_campaigns_status'), ['status'], unique=False)
    op.create_table('contacts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('phone', sa.String(length=20), nullable=False),
    sa.Column('pledge_cents', sa.BigInteger(), nullable=False),
    sa.Column('paid_cents', sa.BigInteger(), nullable=False),
    sa.Column('due_date', sa.Date(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_contacts')),
    sa.UniqueConstraint('phone', name=op.f('uq_contacts_phone'))
    )
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_contacts_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_contacts_name'), ['name'], unique=False)
    op.create_table('contact_tags',
    sa.Column('contact_id', sa.Integer(), nullable=False),
    sa.Column('tag', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], name=op.f('fk_contact_tags_contact_id_contacts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('contact_id', 'tag', name=op.f('pk_contact_tags'))
    )
    with op.batch_alter_table('contact_tags', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_contact_tags_tag'), ['tag'], unique=False)
    op.create_table('outgoing_messages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('contact_id', sa.Integer(), nullable=True),
    sa.Column('phone', sa.String(length=20), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('encoding', sa.String(length=8), nullable=False),
    sa.Column('segments', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('claimed_at', sa.DateTime(), nullable=True),
    sa.Column('first_error', sa.Text(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('provider_message_id', sa.String(length=128), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('sent_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_outgoing_messages_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], name=op.f('fk_outgoing_messages_contact_id_contacts'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outgoing_messages')),
    sa.UniqueConstraint('campaign_id', 'contact_id', name=op.f('uq_outgoing_messages_campaign_id_contact_id'))
    )
    with op.batch_alter_table('outgoing_messages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_outgoing_messages_campaign_id_status'), ['campaign_id', 'status'], unique=False)
        batch_op.create_index(batch_op.f('ix_outgoing_messages_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_outgoing_messages_phone'), ['phone'], unique=False)
        batch_op.create_index(batch_op.f('ix_outgoing_messages_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_outgoing_messages_status_claimed_at'), ['status', 'claimed_at'], unique=False)
    op.create_table('failed_jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('message_id', sa.Integer(), nullable=True),
    sa.Column('campaign_id', sa.Integer(), nullable=True),
    sa.Column('recipient', sa.String(length=20), nullable=False),
    sa.Column('queue', sa.String(length=32), nullable=False),
    sa.Column('task_name', sa.String(length=128), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('exception_type', sa.String(length=128), nullable=False),
    sa.Column('first_error', sa.Text(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=False),
    sa.Column('traceback', sa.Text(), nullable=True),
    sa.Column('provider_response', sa.Text(), nullable=True),
    sa.Column('first_failed_at', sa.DateTime(), nullable=False),
    sa.Column('failed_at', sa.DateTime(), nullable=False),
    sa.Column('retried_at', sa.DateTime(), nullable=True),
    sa.Column('retry_of_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_failed_jobs_campaign_id_campaigns'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['message_id'], ['outgoing_messages.id'], name=op.f('fk_failed_jobs_message_id_outgoing_messages'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['retry_of_id'], ['failed_jobs.id'], name=op.f('fk_failed_jobs_retry_of_id_failed_jobs'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_failed_jobs'))
    )
    with op.batch_alter_table('failed_jobs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_failed_jobs_campaign_id'), ['campaign_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_failed_jobs_exception_type'), ['exception_type'], unique=False)
        batch_op.create_index(batch_op.f('ix_failed_jobs_failed_at'), ['failed_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_failed_jobs_message_id'), ['message_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_failed_jobs_queue'), ['queue'], unique=False)
        batch_op.create_index(batch_op.f('ix_failed_jobs_recipient'), ['recipient'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('failed_jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_failed_jobs_recipient'))
        batch_op.drop_index(batch_op.f('ix_failed_jobs_queue'))
        batch_op.drop_index(batch_op.f('ix_failed_jobs_message_id'))
        batch_op.drop_index(batch_op.f('ix_failed_jobs_failed_at'))
        batch_op.drop_index(batch_op.f('ix_failed_jobs_exception_type'))
        batch_op.drop_index(batch_op.f('ix_failed_jobs_campaign_id'))
    op.drop_table('failed_jobs')
    with op.batch_alter_table('outgoing_messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outgoing_messages_status_claimed_at'))
        batch_op.drop_index(batch_op.f('ix_outgoing_messages_status'))
        batch_op.drop_index(batch_op.f('ix_outgoing_messages_phone'))
        batch_op.drop_index(batch_op.f('ix_outgoing_messages_created_at'))
        batch_op.drop_index(batch_op.f('ix_outgoing_messages_campaign_id_status'))
    op.drop_table('outgoing_messages')
    with op.batch_alter_table('contact_tags', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_contact_tags_tag'))
    op.drop_table('contact_tags')
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_contacts_name'))
        batch_op.drop_index(batch_op.f('ix_contacts_created_at'))
    op.drop_table('contacts')
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_campaigns_status'))
        batch_op.drop_index(batch_op.f('ix_campaigns_created_at'))
    op.drop_table('campaigns')

