"""officer alerts: one row per alert sent for a tip (critical, escalation)

Revision ID: 0004_alerts
Revises: 0001
Create Date: 2026-11-28

A separate branch from 0001 (like 0002_console, 0003_runtime): storage.db.migrate upgrades
"heads". The unique (tip_id, kind) key is what makes storage.alerts.claim_alert send an alert
once across restarts and gateway processes; the cascade lets retention delete tips without
knowing this table.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0004_alerts'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('sent_alert',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tip_id', sa.Integer(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tip_id'], ['tip.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tip_id', 'kind', name='uq_sent_alert_tip_kind')
    )


def downgrade() -> None:
    op.drop_table('sent_alert')
