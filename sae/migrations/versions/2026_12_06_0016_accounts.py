"""auth: named accounts (users), token expiry and last use, sign-in failures for the rate limit

Revision ID: 0016_accounts
Revises: 0015_fulltext
Create Date: 2026-12-06

Every token belongs to an account afterwards. Existing tokens get service accounts, exactly as
``sae.auth.service.create_token`` makes one for a token created without an account:

- the tokens labelled ``first-start admin`` (written to ``admin.token`` on a first start) share
  the account ``admin``, whose id is the oldest of them's id: the first-start account that
  ``sae token reset-admin`` works on;
- every other token gets its own service account, whose id is the token's id, login
  ``service-`` and the id's first 8 characters (the whole id on a collision), the token's role,
  producers and label (as display name), disabled when the token was revoked.

Same id as the token: a transfer submitted with the token (``transfers.submitted_by``) is the
account's.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import sae.db

revision: str = "0016_accounts"
down_revision: str | Sequence[str] | None = "0015_fulltext"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FIRST_START_LABEL = "first-start admin"
FIRST_START_LOGIN = "admin"
FIRST_START_NAME = "Administrateur (premier démarrage)"

_tokens = sa.table(
    "api_tokens",
    sa.column("id", sa.String()),
    sa.column("role", sa.String()),
    sa.column("producers", sa.JSON()),
    sa.column("label", sa.String()),
    sa.column("created_at", sae.db.UTCDateTime(timezone=True)),
    sa.column("revoked_at", sae.db.UTCDateTime(timezone=True)),
    sa.column("user_id", sa.String()),
)
_users = sa.table(
    "users",
    sa.column("id", sa.String()),
    sa.column("login", sa.String()),
    sa.column("display_name", sa.String()),
    sa.column("email", sa.String()),
    sa.column("kind", sa.String()),
    sa.column("role", sa.String()),
    sa.column("producers", sa.JSON()),
    sa.column("source", sa.String()),
    sa.column("password_hash", sa.String()),
    sa.column("disabled_at", sae.db.UTCDateTime(timezone=True)),
    sa.column("created_at", sae.db.UTCDateTime(timezone=True)),
    sa.column("last_login_at", sae.db.UTCDateTime(timezone=True)),
)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("login", sa.String(length=255), nullable=False),
        sa.Column("display_name", sa.String(length=255), nullable=False),
        sa.Column("email", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("producers", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        sa.Column("disabled_at", sae.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", sae.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_login_at", sae.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("login", name=op.f("uq_users_login")),
    )
    op.create_table(
        "sign_in_failures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("at", sae.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sign_in_failures")),
    )
    op.create_index("ix_sign_in_failures_key_at", "sign_in_failures", ["key", "at"], unique=False)
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("user_id", sa.String(length=36), nullable=True))
        batch_op.add_column(
            sa.Column("expires_at", sae.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("last_used_at", sae.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("idle_minutes", sa.Integer(), nullable=True))
    _give_every_token_an_account()
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.alter_column("user_id", existing_type=sa.String(length=36), nullable=False)
        batch_op.create_index(batch_op.f("ix_api_tokens_user_id"), ["user_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_api_tokens_user_id_users"), "users", ["user_id"], ["id"]
        )


def _give_every_token_an_account() -> None:
    connection = op.get_bind()
    tokens = connection.execute(
        sa.select(
            _tokens.c.id,
            _tokens.c.role,
            _tokens.c.producers,
            _tokens.c.label,
            _tokens.c.created_at,
            _tokens.c.revoked_at,
        ).order_by(_tokens.c.created_at, _tokens.c.id)
    ).all()
    logins: set[str] = set()
    first_start: str | None = None
    for token in tokens:
        if token.label == FIRST_START_LABEL:
            if first_start is None:
                first_start = token.id
                logins.add(FIRST_START_LOGIN)
                connection.execute(
                    _users.insert().values(
                        id=token.id,
                        login=FIRST_START_LOGIN,
                        display_name=FIRST_START_NAME,
                        email="",
                        kind="service",
                        role="admin",
                        producers=[],
                        source="local",
                        password_hash=None,
                        disabled_at=None,
                        created_at=token.created_at,
                        last_login_at=None,
                    )
                )
            owner = first_start
        else:
            login = f"service-{token.id[:8]}"
            if login in logins:
                login = f"service-{token.id}"
            logins.add(login)
            connection.execute(
                _users.insert().values(
                    id=token.id,
                    login=login,
                    display_name=token.label,
                    email="",
                    kind="service",
                    role=token.role,
                    producers=list(token.producers or []),
                    source="local",
                    password_hash=None,
                    disabled_at=token.revoked_at,
                    created_at=token.created_at,
                    last_login_at=None,
                )
            )
            owner = token.id
        connection.execute(
            _tokens.update().where(_tokens.c.id == token.id).values(user_id=owner)
        )


def downgrade() -> None:
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_api_tokens_user_id_users"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_api_tokens_user_id"))
        batch_op.drop_column("idle_minutes")
        batch_op.drop_column("last_used_at")
        batch_op.drop_column("expires_at")
        batch_op.drop_column("user_id")
    op.drop_index("ix_sign_in_failures_key_at", table_name="sign_in_failures")
    op.drop_table("sign_in_failures")
    op.drop_table("users")
