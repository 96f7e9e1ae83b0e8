"""Did it arrive: delivery status per message, delivery reports, the reply inbox and the
opt-out list's history.

outgoing_messages gains who sent it (provider), its delivery status and reason, when that
became final, the Twilio poll schedule and the opt-out notice flag. Messages sent before
keep no delivery status (NULL): nothing will report on them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 11:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outgoing_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('provider', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('delivery', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('delivery_error', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('delivery_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('report_poll_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('report_polls', sa.Integer(), nullable=False,
                                      server_default='0'))
        batch_op.add_column(sa.Column('opt_out_notice', sa.Boolean(), nullable=False,
                                      server_default='0'))
        batch_op.create_index(batch_op.f('ix_outgoing_messages_provider_message_id'),
                              ['provider_message_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_outgoing_messages_campaign_id_delivery'),
                              ['campaign_id', 'delivery'], unique=False)
        batch_op.create_index(batch_op.f('ix_outgoing_messages_delivery_sent_at'),
                              ['delivery', 'sent_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_outgoing_messages_report_poll_at'),
                              ['report_poll_at'], unique=False)
    op.create_table('opt_out_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('phone', sa.String(length=20), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_opt_out_events'))
    )
    with op.batch_alter_table('opt_out_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_opt_out_events_phone'), ['phone'], unique=False)
        batch_op.create_index(batch_op.f('ix_opt_out_events_at'), ['at'], unique=False)
    op.create_table('delivery_reports',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('receipt', sa.String(length=32), nullable=False),
    sa.Column('provider', sa.String(length=16), nullable=False),
    sa.Column('provider_message_id', sa.String(length=128), nullable=False),
    sa.Column('message_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=True),
    sa.Column('provider_status', sa.String(length=32), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['message_id'], ['outgoing_messages.id'],
                            name=op.f('fk_delivery_reports_message_id_outgoing_messages'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_delivery_reports')),
    sa.UniqueConstraint('receipt', name=op.f('uq_delivery_reports_receipt'))
    )
    with op.batch_alter_table('delivery_reports', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_delivery_reports_provider_message_id'),
                              ['provider_message_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_delivery_reports_message_id'), ['message_id'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_delivery_reports_received_at'), ['received_at'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_delivery_reports_message_id_received_at'),
                              ['message_id', 'received_at'], unique=False)
    op.create_table('inbound_messages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('receipt', sa.String(length=32), nullable=False),
    sa.Column('provider', sa.String(length=16), nullable=False),
    sa.Column('provider_ref', sa.String(length=128), nullable=False),
    sa.Column('phone', sa.String(length=20), nullable=False),
    sa.Column('to', sa.String(length=32), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.Column('contact_id', sa.Integer(), nullable=True),
    sa.Column('campaign_id', sa.Integer(), nullable=True),
    sa.Column('keyword', sa.String(length=8), nullable=True),
    sa.Column('handled_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'],
                            name=op.f('fk_inbound_messages_campaign_id_campaigns'),
                            ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'],
                            name=op.f('fk_inbound_messages_contact_id_contacts'),
                            ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inbound_messages')),
    sa.UniqueConstraint('receipt', name=op.f('uq_inbound_messages_receipt'))
    )
    with op.batch_alter_table('inbound_messages', schema=None) as batch_op:
        for column in ('phone', 'received_at', 'contact_id', 'campaign_id', 'handled_at'):
            batch_op.create_index(batch_op.f(f'ix_inbound_messages_{column}'), [column],
                                  unique=False)


def downgrade() -> None:
    op.drop_table('inbound_messages')
    op.drop_table('delivery_reports')
    op.drop_table('opt_out_events')
    with op.batch_alter_table('outgoing_messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outgoing_messages_report_poll_at'))
        batch_op.drop_index(batch_op.f('ix_outgoing_messages_delivery_sent_at'))
        batch_op.drop_index(batch_op.f('ix_outgoing_messages_campaign_id_delivery'))
        batch_op.drop_index(batch_op.f('ix_outgoing_messages_provider_message_id'))
        for column in ('opt_out_notice', 'report_polls', 'report_poll_at', 'delivery_at',
                       'delivery_error', 'delivery', 'provider'):
            batch_op.drop_column(column)
