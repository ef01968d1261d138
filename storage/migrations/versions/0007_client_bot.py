"""The client bot: a client's language, source and referral code; survey answers,
complaints, and the files Telegram already holds.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 09:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.types

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('client') as batch:
        batch.add_column(sa.Column('language', sa.String(length=8), nullable=True))
        batch.add_column(sa.Column('source', sa.String(length=32), nullable=True))
        batch.add_column(sa.Column('referral_code', sa.String(length=16), nullable=True))
        batch.create_unique_constraint('uq_client_referral_code', ['referral_code'])
    op.create_table(
        'survey_answer',
        sa.Column('visit_id', sa.Integer(), nullable=False),
        sa.Column('client_id', sa.Integer(), nullable=False),
        sa.Column('csat', sa.SmallInteger(), nullable=True),
        sa.Column('nps', sa.SmallInteger(), nullable=True),
        sa.Column('comment', sa.Text(), nullable=True),
        sa.Column('step', sa.String(length=16), nullable=False),
        sa.Column('channel', sa.String(length=16), nullable=False),
        sa.Column('started_at', storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column('finished_at', storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['client_id'], ['client.id'], name='fk_survey_answer_client_id_client', ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['visit_id'], ['visit.id'], name='fk_survey_answer_visit_id_visit', ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('visit_id', name='pk_survey_answer'),
    )
    op.create_index('ix_survey_answer_client_id', 'survey_answer', ['client_id'])
    op.create_table(
        'complaint',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('visit_id', sa.Integer(), nullable=False),
        sa.Column('client_id', sa.Integer(), nullable=False),
        sa.Column('branch_id', sa.Integer(), nullable=True),
        sa.Column('csat', sa.SmallInteger(), nullable=True),
        sa.Column('nps', sa.SmallInteger(), nullable=True),
        sa.Column('comment', sa.Text(), nullable=True),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('opened_at', storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column('taken_by', sa.String(length=128), nullable=True),
        sa.Column('taken_at', storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column('resolved_by', sa.String(length=128), nullable=True),
        sa.Column('resolved_at', storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column('resolution', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['branch_id'], ['branch.id'], name='fk_complaint_branch_id_branch'),
        sa.ForeignKeyConstraint(['client_id'], ['client.id'], name='fk_complaint_client_id_client', ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['visit_id'], ['visit.id'], name='fk_complaint_visit_id_visit', ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name='pk_complaint'),
        sa.UniqueConstraint('visit_id', name='uq_complaint_visit_id'),
    )
    op.create_index('ix_complaint_client_id', 'complaint', ['client_id'])
    op.create_index('ix_complaint_branch_id', 'complaint', ['branch_id'])
    op.create_index('ix_complaint_state_opened_at', 'complaint', ['state', 'opened_at'])
    op.create_table(
        'telegram_file',
        sa.Column('key', sa.String(length=128), nullable=False),
        sa.Column('file_id', sa.String(length=256), nullable=False),
        sa.Column('created_at', storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('key', name='pk_telegram_file'),
    )


def downgrade() -> None:
    op.drop_table('telegram_file')
    op.drop_table('complaint')
    op.drop_table('survey_answer')
    with op.batch_alter_table('client') as batch:
        batch.drop_constraint('uq_client_referral_code', type_='unique')
        batch.drop_column('referral_code')
        batch.drop_column('source')
        batch.drop_column('language')
