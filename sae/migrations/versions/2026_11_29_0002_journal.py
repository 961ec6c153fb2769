"""journal: stored subtree hashes, counters, signed tree heads, event digests

Revision ID: 0002_journal
Revises: 0001_initial
Create Date: 2026-11-29 09:00:00

Existing events (appended before this revision) keep their leaves: their digests column is
filled from the leaf, their subtree hashes are computed, and the tree_size counter starts at
their count.
"""
from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import sae.db

revision: str = '0002_journal'
down_revision: str | Sequence[str] | None = '0001_initial'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('journal_nodes',
    sa.Column('level', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('index', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('hash', sa.LargeBinary(length=32), nullable=False),
    sa.PrimaryKeyConstraint('level', 'index', name=op.f('pk_journal_nodes'))
    )
    op.create_table('journal_state',
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('value', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_journal_state'))
    )
    op.create_table('tree_heads',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('tree_size', sa.BigInteger(), nullable=False),
    sa.Column('root_hash', sa.LargeBinary(length=32), nullable=False),
    sa.Column('origin', sa.String(length=255), nullable=False),
    sa.Column('timestamp', sae.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('checkpoint', sa.LargeBinary(), nullable=False),
    sa.Column('signature', sa.LargeBinary(), nullable=False),
    sa.Column('public_key_pem', sa.LargeBinary(), nullable=False),
    sa.Column('tsr', sa.LargeBinary(), nullable=False),
    sa.Column('tsa_chain_pem', sa.LargeBinary(), nullable=False),
    sa.Column('tsa_time', sae.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tree_heads')),
    sa.UniqueConstraint('tree_size', name=op.f('uq_tree_heads_tree_size'))
    )
    with op.batch_alter_table('tree_heads', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tree_heads_timestamp'), ['timestamp'], unique=False)

    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('digests', sa.JSON(), nullable=True))

    _backfill()

    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.alter_column('digests', existing_type=sa.JSON(), nullable=False)


def _backfill() -> None:
    """Digests, subtree hashes and counters for events appended before this revision."""
    from sae.journal import merkle

    bind = op.get_bind()
    events = sa.table(
        'events',
        sa.column('id', sa.Integer()),
        sa.column('leaf_index', sa.Integer()),
        sa.column('leaf', sa.LargeBinary()),
        sa.column('leaf_hash', sa.LargeBinary()),
        sa.column('digests', sa.JSON()),
    )
    nodes = sa.table(
        'journal_nodes',
        sa.column('level', sa.Integer()),
        sa.column('index', sa.BigInteger()),
        sa.column('hash', sa.LargeBinary()),
    )
    state = sa.table('journal_state', sa.column('name', sa.String()), sa.column('value', sa.BigInteger()))
    rows = bind.execute(
        sa.select(events.c.id, events.c.leaf_index, events.c.leaf, events.c.leaf_hash)
        .order_by(events.c.leaf_index)
    ).all()
    peaks: list[bytes] = []
    new_nodes = []
    for expected, (row_id, index, leaf, lh) in enumerate(rows):
        if index != expected:
            raise RuntimeError(f"events are not contiguous at leaf {expected}: run sae journal verify")
        try:
            digests = json.loads(leaf).get('sha512') or {}
        except ValueError:
            digests = {}
        bind.execute(events.update().where(events.c.id == row_id).values(digests=digests))
        created, peaks = merkle.append_leaf(index, peaks, lh)
        new_nodes.extend({'level': lv, 'index': ix, 'hash': h} for (lv, ix), h in created)
    if new_nodes:
        bind.execute(nodes.insert(), new_nodes)
    bind.execute(state.insert(), [{'name': 'tree_size', 'value': len(rows)},
                                  {'name': 'sealer', 'value': 0}])


def downgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_column('digests')
    with op.batch_alter_table('tree_heads', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tree_heads_timestamp'))
    op.drop_table('tree_heads')
    op.drop_table('journal_state')
    op.drop_table('journal_nodes')
