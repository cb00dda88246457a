"""retention: when a tip reached a final status (closed_at) and legal hold

Revision ID: 0005_retention
Revises: 0002_console
Create Date: 2026-11-21

On 0002_console because that revision also altered the tip table (SQLite rebuilds the table
in batch mode, so the two must not race on separate branches).

Tips that are already closed, rejected or duplicate when this runs count as closed at the
upgrade: retention then deletes them `retention_days` after the upgrade, never straight away,
which leaves supervisors time to put a legal hold on the ones that must stay.
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = '0005_retention'
down_revision: str | None = '0002_console'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('tip', schema=None) as batch_op:
        batch_op.add_column(sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('legal_hold', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.create_index(batch_op.f('ix_tip_closed_at'), ['closed_at'], unique=False)
    backfill = sa.text(
        "UPDATE tip SET closed_at = :now WHERE status IN ('closed', 'rejected', 'duplicate')"
    ).bindparams(sa.bindparam('now', type_=sa.DateTime(timezone=True)))
    op.get_bind().execute(backfill, {'now': datetime.now(UTC)})


def downgrade() -> None:
    with op.batch_alter_table('tip', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tip_closed_at'))
        batch_op.drop_column('legal_hold')
        batch_op.drop_column('closed_at')
