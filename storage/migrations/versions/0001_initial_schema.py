"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-21 01:10:42.994947
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table('inbound_message',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('provider_message_id', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('reporter_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('text', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('language_hint', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('told_received', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('channel', 'provider_message_id', name='uq_inbound_provider_id')
    )
    with op.batch_alter_table('inbound_message', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_inbound_message_next_attempt_at'), ['next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_inbound_message_reporter_id'), ['reporter_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_inbound_message_state'), ['state'], unique=False)

    op.create_table('reporter',
    sa.Column('reporter_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('language', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=True),
    sa.Column('pending_latitude', sa.Float(), nullable=True),
    sa.Column('pending_longitude', sa.Float(), nullable=True),
    sa.Column('last_choices', sa.JSON(), nullable=False),
    sa.Column('first_contact_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_contact_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_turn_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('reporter_id')
    )
    op.create_table('tip',
    sa.Column('what', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('where_text', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('when_text', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('danger_now', sa.Boolean(), nullable=False),
    sa.Column('language', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('latitude', sa.Float(), nullable=True),
    sa.Column('longitude', sa.Float(), nullable=True),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('receipt_code', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('reporter_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('submission_key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('urgency', sa.String(length=16), nullable=False),
    sa.Column('urgency_rank', sa.Integer(), nullable=False),
    sa.Column('urgency_reasons', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('receipt_code'),
    sa.UniqueConstraint('submission_key')
    )
    with op.batch_alter_table('tip', schema=None) as batch_op:
        batch_op.create_index('ix_tip_queue', ['status', 'urgency_rank', 'received_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_tip_received_at'), ['received_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_tip_reporter_id'), ['reporter_id'], unique=False)

    op.create_table('vault_entry',
    sa.Column('reporter_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('ciphertext', sa.LargeBinary(), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('reporter_id')
    )
    with op.batch_alter_table('vault_entry', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_vault_entry_expires_at'), ['expires_at'], unique=False)

    op.create_table('attachment',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('reporter_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('tip_id', sa.Integer(), nullable=True),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('content_type', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.Column('metadata_removed', sa.Boolean(), nullable=False),
    sa.Column('flagged_reason', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tip_id'], ['tip.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('attachment', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_attachment_reporter_id'), ['reporter_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_attachment_tip_id'), ['tip_id'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('attachment', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_attachment_tip_id'))
        batch_op.drop_index(batch_op.f('ix_attachment_reporter_id'))

    op.drop_table('attachment')
    with op.batch_alter_table('vault_entry', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_vault_entry_expires_at'))

    op.drop_table('vault_entry')
    with op.batch_alter_table('tip', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tip_reporter_id'))
        batch_op.drop_index(batch_op.f('ix_tip_received_at'))
        batch_op.drop_index('ix_tip_queue')

    op.drop_table('tip')
    op.drop_table('reporter')
    with op.batch_alter_table('inbound_message', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_inbound_message_state'))
        batch_op.drop_index(batch_op.f('ix_inbound_message_reporter_id'))
        batch_op.drop_index(batch_op.f('ix_inbound_message_next_attempt_at'))

    op.drop_table('inbound_message')

