"""Accounts and their API tokens.

A token is stored hashed (SHA-256 of the secret): a database leak gives no usable token. A
password is stored as an argon2id hash. Every token belongs to an account (a person or a
service); the account's role and producing services are what the token may do.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from sae.db import Base, utcnow


class User(Base):
    """A named account: a person (signs in to the console) or a service (holds API tokens)."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    #: The login, case-folded (``Jean.Dupont`` and ``jean.dupont`` are one account).
    login: Mapped[str] = mapped_column(String(255), unique=True)
    display_name: Mapped[str] = mapped_column(String(255), default="")
    email: Mapped[str] = mapped_column(String(255), default="")
    #: ``person`` or ``service``.
    kind: Mapped[str] = mapped_column(String(16), default="person")
    role: Mapped[str] = mapped_column(String(16))
    producers: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: ``local``, ``ldap`` or ``oidc``: who vouches for the person at sign-in.
    source: Mapped[str] = mapped_column(String(16), default="local")
    #: argon2id (PHC string); None: no password sign-in for this account.
    password_hash: Mapped[str | None] = mapped_column(String(255))
    disabled_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]


class ApiToken(Base):
    """A bearer token of one account.

    ``role`` and ``producers`` are the account's when the token was made (evidence of what it
    could do then); a request made with it is allowed what the account may do now.
    """

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    producers: Mapped[list[str]] = mapped_column(JSON, default=list)
    label: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    #: Refused from this instant on (None: until revoked).
    expires_at: Mapped[datetime | None]
    #: Written at most once a minute per token (reads do not each write).
    last_used_at: Mapped[datetime | None]
    #: Refused when unused for longer than this (console sessions); None: no idle limit.
    idle_minutes: Mapped[int | None] = mapped_column(Integer)


class SignInFailure(Base):
    """One refused sign-in, for the rate limit (shared by every worker through the database).

    ``key`` is ``login:<folded login>`` or ``address:<client address>``; rows older than the
    window are deleted as new failures come.
    """

    __tablename__ = "sign_in_failures"
    __table_args__ = (Index("ix_sign_in_failures_key_at", "key", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(300))
    at: Mapped[datetime] = mapped_column(default=utcnow)
