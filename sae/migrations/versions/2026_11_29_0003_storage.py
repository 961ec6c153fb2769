"""storage: fixity audits and their problems

Revision ID: 0003_storage
Revises: 0001_initial
Create Date: 2026-11-29 08:45:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import sae.db

revision: str = '0003_storage'
down_revision: str | Sequence[str] | None = '0001_initial'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('audits',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('offers', sa.JSON(), nullable=True),
    sa.Column('sample_rate', sa.Float(), nullable=False),
    sa.Column('repair', sa.Boolean(), nullable=False),
    sa.Column('requested_by', sa.String(length=255), nullable=False),
    sa.Column('created_at', sae.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('started_at', sae.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sae.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('claimed_by', sa.String(length=255), nullable=True),
    sa.Column('heartbeat_at', sae.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('cursor', sa.BigInteger(), nullable=False),
    sa.Column('checked', sa.Integer(), nullable=False),
    sa.Column('unreachable', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audits'))
    )
    with op.batch_alter_table('audits', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audits_status'), ['status'], unique=False)

    op.create_table('audit_problems',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('audit_id', sa.String(length=36), nullable=False),
    sa.Column('object_id', sa.String(length=36), nullable=False),
    sa.Column('copy_id', sa.BigInteger(), nullable=True),
    sa.Column('offer', sa.String(length=64), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('repaired', sa.Boolean(), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('found_at', sae.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['audit_id'], ['audits.id'], name=op.f('fk_audit_problems_audit_id_audits')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_problems'))
    )
    with op.batch_alter_table('audit_problems', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_problems_audit_id'), ['audit_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('audit_problems', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_problems_audit_id'))
    op.drop_table('audit_problems')
    with op.batch_alter_table('audits', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audits_status'))
    op.drop_table('audits')
