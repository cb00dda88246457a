"""duty officer console: accounts, sessions, throttling, audit log, notes, tags, follow-ups,
the per-tip message thread, and claim columns + queue indexes on tip

Revision ID: 0002_console
Revises: 0001
Create Date: 2026-11-21

The partial indexes on tip serve the "next tip" claim (unclaimed new/in-review tips in queue
order), the default queue page (open tips in queue order) and the expiry of held claims. Their
WHERE clauses must match storage/console.py literally, or the planners will not use them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0002_console'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('login_throttle',
    sa.Column('key_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('window_started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('key_hash')
    )
    op.create_table('officer',
    sa.Column('username', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('language', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('password_hash', sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
    sa.Column('totp_secret', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('last_totp_step', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('username')
    )
    op.create_table('audit_entry',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('officer_id', sa.Integer(), nullable=True),
    sa.Column('officer_username', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('tip_id', sa.Integer(), nullable=True),
    sa.Column('detail', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
    sa.ForeignKeyConstraint(['officer_id'], ['officer.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('audit_entry', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_entry_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_entry_officer_id'), ['officer_id'], unique=False)
        batch_op.create_index('ix_audit_tip', ['tip_id', 'at'], unique=False)

    op.create_table('follow_up',
    sa.Column('question', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
    sa.Column('language', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('prepared_key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tip_id', sa.Integer(), nullable=False),
    sa.Column('officer_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('answered_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['officer_id'], ['officer.id'], ),
    sa.ForeignKeyConstraint(['tip_id'], ['tip.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('follow_up', schema=None) as batch_op:
        batch_op.create_index('ix_follow_up_status', ['status', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_follow_up_tip_id'), ['tip_id'], unique=False)

    op.create_table('officer_session',
    sa.Column('token_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('officer_id', sa.Integer(), nullable=False),
    sa.Column('csrf_token', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['officer_id'], ['officer.id'], ),
    sa.PrimaryKeyConstraint('token_hash')
    )
    with op.batch_alter_table('officer_session', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_officer_session_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_officer_session_last_seen_at'), ['last_seen_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_officer_session_officer_id'), ['officer_id'], unique=False)

    op.create_table('tip_note',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tip_id', sa.Integer(), nullable=False),
    sa.Column('officer_id', sa.Integer(), nullable=False),
    sa.Column('officer_username', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('text', sqlmodel.sql.sqltypes.AutoString(length=4000), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['officer_id'], ['officer.id'], ),
    sa.ForeignKeyConstraint(['tip_id'], ['tip.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('tip_note', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tip_note_tip_id'), ['tip_id'], unique=False)

    op.create_table('tip_tag',
    sa.Column('tip_id', sa.Integer(), nullable=False),
    sa.Column('tag', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.ForeignKeyConstraint(['tip_id'], ['tip.id'], ),
    sa.PrimaryKeyConstraint('tip_id', 'tag')
    )
    with op.batch_alter_table('tip_tag', schema=None) as batch_op:
        batch_op.create_index('ix_tip_tag_tag', ['tag', 'tip_id'], unique=False)

    op.create_table('tip_message',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tip_id', sa.Integer(), nullable=False),
    sa.Column('direction', sa.String(length=8), nullable=False),
    sa.Column('text', sqlmodel.sql.sqltypes.AutoString(length=4000), nullable=False),
    sa.Column('follow_up_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['follow_up_id'], ['follow_up.id'], ),
    sa.ForeignKeyConstraint(['tip_id'], ['tip.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('tip_message', schema=None) as batch_op:
        batch_op.create_index('ix_tip_message_tip', ['tip_id', 'created_at'], unique=False)

    with op.batch_alter_table('tip', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claimed_by', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('claim_expires_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('status_reason', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True))
        batch_op.add_column(sa.Column('duplicate_of', sa.Integer(), nullable=True))
        batch_op.create_index('ix_tip_claim_expiry', ['claim_expires_at'], unique=False, sqlite_where=sa.text('claimed_by IS NOT NULL'), postgresql_where=sa.text('claimed_by IS NOT NULL'))
        batch_op.create_index('ix_tip_claimable', ['urgency_rank', 'received_at', 'id'], unique=False, sqlite_where=sa.text("status IN ('new', 'in_review') AND claimed_by IS NULL"), postgresql_where=sa.text("status IN ('new', 'in_review') AND claimed_by IS NULL"))
        batch_op.create_index('ix_tip_open_queue', ['urgency_rank', 'received_at', 'id'], unique=False, sqlite_where=sa.text("status IN ('new', 'in_review', 'verified', 'forwarded')"), postgresql_where=sa.text("status IN ('new', 'in_review', 'verified', 'forwarded')"))



def downgrade() -> None:
    with op.batch_alter_table('tip', schema=None) as batch_op:
        batch_op.drop_index('ix_tip_open_queue', sqlite_where=sa.text("status IN ('new', 'in_review', 'verified', 'forwarded')"), postgresql_where=sa.text("status IN ('new', 'in_review', 'verified', 'forwarded')"))
        batch_op.drop_index('ix_tip_claimable', sqlite_where=sa.text("status IN ('new', 'in_review') AND claimed_by IS NULL"), postgresql_where=sa.text("status IN ('new', 'in_review') AND claimed_by IS NULL"))
        batch_op.drop_index('ix_tip_claim_expiry', sqlite_where=sa.text('claimed_by IS NOT NULL'), postgresql_where=sa.text('claimed_by IS NOT NULL'))
        batch_op.drop_column('duplicate_of')
        batch_op.drop_column('status_reason')
        batch_op.drop_column('claim_expires_at')
        batch_op.drop_column('claimed_by')

    with op.batch_alter_table('tip_message', schema=None) as batch_op:
        batch_op.drop_index('ix_tip_message_tip')

    op.drop_table('tip_message')
    with op.batch_alter_table('tip_tag', schema=None) as batch_op:
        batch_op.drop_index('ix_tip_tag_tag')

    op.drop_table('tip_tag')
    with op.batch_alter_table('tip_note', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tip_note_tip_id'))

    op.drop_table('tip_note')
    with op.batch_alter_table('officer_session', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_officer_session_officer_id'))
        batch_op.drop_index(batch_op.f('ix_officer_session_last_seen_at'))
        batch_op.drop_index(batch_op.f('ix_officer_session_created_at'))

    op.drop_table('officer_session')
    with op.batch_alter_table('follow_up', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_follow_up_tip_id'))
        batch_op.drop_index('ix_follow_up_status')

    op.drop_table('follow_up')
    with op.batch_alter_table('audit_entry', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_tip')
        batch_op.drop_index(batch_op.f('ix_audit_entry_officer_id'))
        batch_op.drop_index(batch_op.f('ix_audit_entry_at'))

    op.drop_table('audit_entry')
    op.drop_table('officer')
    op.drop_table('login_throttle')
