"""Status notices, spam pseudonyms, flood flag

Revision ID: 0006_pipeline
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0006_pipeline"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "status_notice",
        sa.Column("tip_id", sa.Integer(), nullable=False),
        sa.Column("notified_status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tip_id"], ["tip.id"]),
        sa.PrimaryKeyConstraint("tip_id"),
    )
    op.create_table(
        "spam_pseudonym",
        sa.Column("reporter_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("marked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("reporter_id"),
    )
    with op.batch_alter_table("reporter") as batch_op:
        batch_op.add_column(sa.Column("flood_flagged_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("reporter") as batch_op:
        batch_op.drop_column("flood_flagged_at")
    op.drop_table("spam_pseudonym")
    op.drop_table("status_notice")
