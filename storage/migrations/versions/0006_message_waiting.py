"""Why a queued message waits: quiet hours, a daily limit, a halted channel, a retry, or the
server's pause; shown beside its next attempt, and quiet-hours waits re-evaluated on start.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 07:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('message', sa.Column('waiting', sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('message') as batch:
        batch.drop_column('waiting')
