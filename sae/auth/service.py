"""Bearer tokens: created, stored hashed, checked.

A token is ``sae_`` followed by 43 URL-safe characters (256 random bits). Only its SHA-256 is
stored: a stolen database yields no usable token, and a fast hash is enough for a secret that
long (no dictionary to attack).

Every token belongs to an account (:mod:`sae.auth.accounts`); a request made with it may do what
the account may do now (its role and producers), until the token expires, is revoked, or the
account is disabled.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from sae.auth.errors import AccountDisabled, InvalidToken, TokenExpired, UnknownToken
from sae.auth.models import ApiToken, User
from sae.db import transaction, utcnow
from sae.journal.service import append_event

ROLES = ("admin", "archivist", "auditor", "depositor", "reader")
TOKEN_PREFIX = "sae_"  # noqa: S105 - a prefix, not a secret
#: A token's last use is written at most this often (a read does not write each time).
LAST_USE_PRECISION = timedelta(minutes=1)
FIRST_START_LABEL = "first-start admin"

log = logging.getLogger("sae.auth")


@dataclass(frozen=True)
class Principal:
    """Who is calling: an account (when there is one), the token used, role and producers."""

    token_id: str
    role: str
    producers: tuple[str, ...] = field(default_factory=tuple)
    label: str = ""
    user_id: str | None = None
    login: str = ""

    @property
    def actor(self) -> str:
        """How the journal names this caller (never the secret).

        ``user:<login>:<token id>:<role>`` for an account (``-`` for the token when the account
        acts without one, e.g. at password sign-in), ``token:<id>:<role>`` otherwise (the
        system, the server's own CLI).
        """
        if self.user_id is not None:
            return f"user:{self.login}:{self.token_id or '-'}:{self.role}"
        return f"token:{self.token_id}:{self.role}"

    @property
    def submitter(self) -> str:
        """What a transfer records as its submitter: the account (so that every session and
        token of a person sees what they deposited), else the token."""
        return self.user_id or self.token_id

    @property
    def submitter_ids(self) -> tuple[str, ...]:
        """The submitters that are this caller: its account, and the token itself (transfers
        submitted before accounts; migration 0016 gave those tokens' accounts their ids)."""
        return tuple(dict.fromkeys(i for i in (self.user_id, self.token_id) if i))

    def may_act_for(self, producer: str | None) -> bool:
        """Whether this caller may deposit or read for ``producer``."""
        if self.role in ("admin", "archivist", "auditor"):
            return True
        return producer is not None and producer in self.producers


SYSTEM = Principal(token_id="system", role="admin", label="system")  # noqa: S106 - no secret


def hash_token(secret: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    """A new token secret (shown once, never stored)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def create_token(
    session: Session,
    *,
    role: str,
    producers: list[str] | None = None,
    label: str = "",
    actor: Principal = SYSTEM,
    expires_at: datetime | None = None,
) -> tuple[ApiToken, str]:
    """Create a token with a service account of its own; returns the row and the secret.

    For callers that think in tokens, not accounts (the first start, scripts, tests): the
    account's id is the token's, its login ``service-<8 first characters>``, as migration
    0016 gave every token that existed before accounts. To give a token to an existing account,
    use :func:`sae.auth.accounts.create_token`.
    """
    from sae.auth import accounts

    user = accounts.create_service_account_for_token(
        session, role=role, producers=producers or [], label=label, actor=actor
    )
    return accounts.create_token(
        session, user=user, label=label, actor=actor, expires_at=expires_at, token_id=user.id
    )


def authenticate(session: Session, secret: str, *, now: datetime | None = None) -> Principal:
    """The principal behind a bearer secret, or ``InvalidToken`` (or a subclass saying why).

    Reads only: :func:`authenticate_and_record` also records the token's last use.
    """
    return _authenticate(session, secret, now or utcnow())[0]


def authenticate_and_record(
    sessions: sessionmaker[Session], secret: str, *, reads: sessionmaker[Session]
) -> Principal:
    """:func:`authenticate` in a session of its own, then the token's last use recorded.

    ``reads``: sessions in autocommit for the check (``Runtime.reads``: it is one statement,
    run for every request; no ``BEGIN`` and ``ROLLBACK`` around it); ``sessions`` for the
    write.
    The use is written when the recorded one is a minute old or more (one conditional UPDATE,
    so several workers write it at most once a minute), in a transaction of its own after the
    check: a database busy with a long write delays no request for it — the write is skipped
    (logged) and made at the next use.
    """
    now = utcnow()
    with reads() as session:
        principal, due = _authenticate(session, secret, now)
    if due:
        try:
            with transaction(sessions) as session:
                record_use(session, principal.token_id, now)
        except OperationalError as exc:
            log.warning("auth: last use of token %s not recorded: %s", principal.token_id, exc)
    return principal


#: The token check's statement, built once: it runs for every request, and building a select
#: and its cache key each time cost as much as the query's own round trip.
_TOKEN_CHECK = (
    select(
        ApiToken.id,
        ApiToken.revoked_at,
        ApiToken.expires_at,
        ApiToken.idle_minutes,
        ApiToken.last_used_at,
        ApiToken.created_at,
        ApiToken.label,
        User.id.label("user_id"),
        User.role,
        User.producers,
        User.display_name,
        User.login,
        User.disabled_at,
    )
    .join(User, User.id == ApiToken.user_id)
    .where(ApiToken.token_hash == bindparam("token_hash"))
)


def _authenticate(session: Session, secret: str, now: datetime) -> tuple[Principal, bool]:
    if not secret.startswith(TOKEN_PREFIX):
        raise InvalidToken("the bearer token is not an SAE token")
    # The columns the check needs, not the two entities: this runs for every request, and
    # building a token's and an account's ORM objects cost more than the query itself.
    token = (
        session.connection().execute(_TOKEN_CHECK, {"token_hash": hash_token(secret)}).one_or_none()
    )
    if token is None or token.revoked_at is not None:
        raise InvalidToken("unknown or revoked token")
    if token.disabled_at is not None:
        raise AccountDisabled(f"the account {token.login!r} is disabled")
    if token.expires_at is not None and now >= token.expires_at:
        raise TokenExpired("the token has expired; ask for a new one")
    if token.idle_minutes is not None:
        last = token.last_used_at or token.created_at
        if now - last > timedelta(minutes=token.idle_minutes) + LAST_USE_PRECISION:
            raise TokenExpired("the session was left unused too long; sign in again")
    due = token.last_used_at is None or now - token.last_used_at >= LAST_USE_PRECISION
    from sae.auth.accounts import make_principal

    principal = make_principal(
        user_id=token.user_id,
        role=token.role,
        producers=token.producers,
        display_name=token.display_name,
        login=token.login,
        token_id=token.id,
        token_label=token.label,
        idle_minutes=token.idle_minutes,
    )
    return principal, due


def record_use(session: Session, token_id: str, now: datetime) -> None:
    """Write the token's last use, unless another worker wrote one less than a minute ago."""
    session.execute(
        update(ApiToken)
        .where(
            ApiToken.id == token_id,
            or_(ApiToken.last_used_at.is_(None), ApiToken.last_used_at <= now - LAST_USE_PRECISION),
        )
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )


def revoke_token(session: Session, token_id: str, *, actor: Principal = SYSTEM) -> ApiToken:
    """Revoke a token (journaled; revoking a revoked token changes nothing)."""
    token = session.get(ApiToken, token_id)
    if token is None:
        raise UnknownToken(f"no token {token_id}")
    if token.revoked_at is not None:
        return token
    token.revoked_at = utcnow()
    session.flush()
    append_event(
        session,
        type="auth.token_revoked",
        actor=actor.actor,
        payload={"token_id": token_id, "user_id": token.user_id},
    )
    return token


def ensure_admin_token(session: Session, data_dir: Path) -> Path | None:
    """On first start, create an admin token and write it to ``admin.token`` (mode 0600).

    The token belongs to the first-start account (login ``admin``). Returns the file's path
    when a token was created, None when an enabled admin account already has a usable token or
    a password.
    """
    from sae.auth import accounts

    now = utcnow()
    usable_token = (
        select(ApiToken.id)
        .join(User, User.id == ApiToken.user_id)
        .where(
            User.role == "admin",
            User.disabled_at.is_(None),
            ApiToken.revoked_at.is_(None),
            or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > now),
        )
        .limit(1)
    )
    password = (
        select(User.id)
        .where(User.role == "admin", User.disabled_at.is_(None), User.password_hash.is_not(None))
        .limit(1)
    )
    if session.scalar(usable_token) is not None or session.scalar(password) is not None:
        return None
    _, secret = accounts.first_start_token(session)
    return write_admin_token(data_dir, secret)


def write_admin_token(data_dir: Path, secret: str) -> Path:
    """Write ``admin.token`` (mode 0600 from its creation: never readable by others)."""
    path = data_dir / "admin.token"
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret + "\n")
    os.chmod(path, 0o600)
    return path
