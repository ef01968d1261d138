"""Service bookings (capacity lives in the config) and the inbound contacts register.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 12:16:53.137174
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.types

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('booking',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('client_id', sa.Integer(), nullable=False),
    sa.Column('car_id', sa.Integer(), nullable=True),
    sa.Column('branch_id', sa.Integer(), nullable=False),
    sa.Column('service', sa.String(length=32), nullable=False),
    sa.Column('service_name', sa.String(length=128), nullable=False),
    sa.Column('starts_at', storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ends_at', storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('requested_at', storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('confirmed_at', storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('arrived_at', storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('completed_at', storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('cancelled_at', storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('declined_at', storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('no_show_at', storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('rescheduled_from_id', sa.Integer(), nullable=True),
    sa.Column('visit_id', sa.Integer(), nullable=True),
    sa.Column('external_ref', sa.String(length=64), nullable=True),
    sa.Column('actor', sa.String(length=128), nullable=True),
    sa.Column('created_at', storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['branch_id'], ['branch.id'], name=op.f('fk_booking_branch_id_branch')),
    sa.ForeignKeyConstraint(['car_id'], ['car.id'], name=op.f('fk_booking_car_id_car'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['client_id'], ['client.id'], name=op.f('fk_booking_client_id_client'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['rescheduled_from_id'], ['booking.id'], name=op.f('fk_booking_rescheduled_from_id_booking'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['visit_id'], ['visit.id'], name=op.f('fk_booking_visit_id_visit'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_booking')),
    sa.UniqueConstraint('external_ref', name=op.f('uq_booking_external_ref')),
    sa.UniqueConstraint('rescheduled_from_id', name=op.f('uq_booking_rescheduled_from_id'))
    )
    with op.batch_alter_table('booking', schema=None) as batch_op:
        batch_op.create_index('ix_booking_branch_starts', ['branch_id', 'starts_at'], unique=False)
        batch_op.create_index('ix_booking_client_starts', ['client_id', 'starts_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_booking_visit_id'), ['visit_id'], unique=False)

    op.create_table('inbound_contact',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('happened_at', storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('purpose', sa.String(length=16), nullable=False),
    sa.Column('source', sa.String(length=64), nullable=True),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('client_id', sa.Integer(), nullable=True),
    sa.Column('phone', sa.String(length=32), nullable=True),
    sa.Column('branch_id', sa.Integer(), nullable=True),
    sa.Column('campaign_id', sa.Integer(), nullable=True),
    sa.Column('booking_id', sa.Integer(), nullable=True),
    sa.Column('staff', sa.String(length=128), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('external_ref', sa.String(length=64), nullable=True),
    sa.Column('created_at', storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['booking_id'], ['booking.id'], name=op.f('fk_inbound_contact_booking_id_booking'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['branch_id'], ['branch.id'], name=op.f('fk_inbound_contact_branch_id_branch')),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaign.id'], name=op.f('fk_inbound_contact_campaign_id_campaign'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['client_id'], ['client.id'], name=op.f('fk_inbound_contact_client_id_client'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inbound_contact')),
    sa.UniqueConstraint('external_ref', name=op.f('uq_inbound_contact_external_ref'))
    )
    with op.batch_alter_table('inbound_contact', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_inbound_contact_client_id'), ['client_id'], unique=False)
        batch_op.create_index('ix_inbound_contact_happened', ['happened_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('inbound_contact', schema=None) as batch_op:
        batch_op.drop_index('ix_inbound_contact_happened')
        batch_op.drop_index(batch_op.f('ix_inbound_contact_client_id'))

    op.drop_table('inbound_contact')
    with op.batch_alter_table('booking', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_booking_visit_id'))
        batch_op.drop_index('ix_booking_client_starts')
        batch_op.drop_index('ix_booking_branch_starts')

    op.drop_table('booking')
