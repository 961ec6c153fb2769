"""Bearer tokens: created, stored hashed, checked.

A token is ``sae_`` followed by 43 URL-safe characters (256 random bits). Only its SHA-256 is
stored: a stolen database yields no usable token, and a fast hash is enough for a secret that
long (no dictionary to attack).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from sae.auth.errors import InvalidToken, UnknownRole
from sae.auth.models import ApiToken
from sae.db import new_id, utcnow
from sae.journal.service import append_event

ROLES = ("admin", "archivist", "auditor", "depositor", "reader")
TOKEN_PREFIX = "sae_"  # noqa: S105 - a prefix, not a secret


@dataclass(frozen=True)
class Principal:
    """Who is calling: a token's identity, role and producing services."""

    token_id: str
    role: str
    producers: tuple[str, ...] = field(default_factory=tuple)
    label: str = ""

    @property
    def actor(self) -> str:
        """How the journal names this caller (never the secret)."""
        return f"token:{self.token_id}:{self.role}"

    def may_act_for(self, producer: str | None) -> bool:
        """Whether this caller may deposit or read for ``producer``."""
        if self.role in ("admin", "archivist", "auditor"):
            return True
        return producer is not None and producer in self.producers


SYSTEM = Principal(token_id="system", role="admin", label="system")  # noqa: S106 - no secret


def hash_token(secret: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(
    session: Session,
    *,
    role: str,
    producers: list[str] | None = None,
    label: str = "",
    actor: Principal = SYSTEM,
) -> tuple[ApiToken, str]:
    """Create a token; returns the row and the secret (shown once, never stored)."""
    if role not in ROLES:
        raise UnknownRole(f"unknown role {role!r}; roles are: {', '.join(ROLES)}")
    producers = sorted(set(producers or []))
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        id=new_id(), token_hash=hash_token(secret), role=role, producers=producers, label=label
    )
    session.add(token)
    session.flush()
    append_event(
        session,
        type="auth.token_created",
        actor=actor.actor,
        payload={"token_id": token.id, "role": role, "producers": producers, "label": label},
    )
    return token, secret


def authenticate(session: Session, secret: str) -> Principal:
    """The principal behind a bearer secret, or ``InvalidToken``."""
    if not secret.startswith(TOKEN_PREFIX):
        raise InvalidToken("the bearer token is not an SAE token")
    token = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(secret)))
    if token is None or token.revoked_at is not None:
        raise InvalidToken("unknown or revoked token")
    return Principal(
        token_id=token.id, role=token.role, producers=tuple(token.producers), label=token.label
    )


def revoke_token(session: Session, token_id: str, *, actor: Principal = SYSTEM) -> None:
    """Revoke a token (journaled)."""
    token = session.get(ApiToken, token_id)
    if token is None:
        raise InvalidToken(f"no token {token_id}")
    token.revoked_at = utcnow()
    append_event(
        session, type="auth.token_revoked", actor=actor.actor, payload={"token_id": token_id}
    )


def ensure_admin_token(session: Session, data_dir: Path) -> Path | None:
    """On first start, create an admin token and write it to ``admin.token`` (mode 0600).

    Returns the file's path when a token was created, None when an admin token already exists.
    """
    existing = session.scalar(
        select(ApiToken.id).where(ApiToken.role == "admin", ApiToken.revoked_at.is_(None))
    )
    if existing is not None:
        return None
    _, secret = create_token(session, role="admin", label="first-start admin")
    path = data_dir / "admin.token"
    data_dir.mkdir(parents=True, exist_ok=True)
    # Created with 0600 from the start: never a moment when others could read it.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret + "\n")
    os.chmod(path, 0o600)
    return path
