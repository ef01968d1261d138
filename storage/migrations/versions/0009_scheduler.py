"""The scheduler: a row per job run (what makes a job run once), and nightly class snapshots.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 12:46:43.611245
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import storage.types

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('job_run',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job', sa.String(length=64), nullable=False),
    sa.Column('slot', sa.String(length=32), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('started_at', storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('heartbeat_at', storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('host', sa.String(length=64), nullable=False),
    sa.Column('counts', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job_run')),
    sa.UniqueConstraint('job', 'slot', name=op.f('uq_job_run_job_slot'))
    )
    op.create_table('class_snapshot',
    sa.Column('taken_on', sa.Date(), nullable=False),
    sa.Column('client_id', sa.Integer(), nullable=False),
    sa.Column('abc', sa.String(length=1), nullable=True),
    sa.Column('xyz', sa.String(length=1), nullable=True),
    sa.Column('revenue', sa.Numeric(precision=14, scale=2), nullable=True),
    sa.ForeignKeyConstraint(['client_id'], ['client.id'], name=op.f('fk_class_snapshot_client_id_client'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('taken_on', 'client_id', name=op.f('pk_class_snapshot'))
    )
    with op.batch_alter_table('class_snapshot', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_class_snapshot_client_id'), ['client_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('class_snapshot', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_class_snapshot_client_id'))

    op.drop_table('class_snapshot')
    op.drop_table('job_run')
