"""Named accounts: people and services, their passwords, their tokens, external identities.

An account (:class:`~sae.auth.models.User`) has one role and, for depositors and readers,
producing services. A person signs in to the console with a password (local accounts,
argon2id) or through the commune's directory (LDAP, OpenID Connect: ``source`` says which); a
service holds API tokens. Every token belongs to an account and may do what the account may do.

Journal: ``auth.user_created``, ``auth.user_updated``, ``auth.user_disabled``,
``auth.user_enabled``, ``auth.password_set``, ``auth.token_created``, ``auth.token_revoked``,
``auth.signed_in``. Payloads name the account (id, login, role, producers) and never carry a
password, a hash or a token's secret. Accounts are not rebuilt from the offers, as tokens are
not (:mod:`sae.auth.replay`): a rebuilt catalogue starts with the first-start account only.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sae.auth.errors import (
    InvalidAccount,
    InvalidCredentials,
    UnknownRole,
    UnknownUser,
    UserExists,
)
from sae.auth.models import ApiToken, User
from sae.auth.service import (
    FIRST_START_LABEL,
    ROLES,
    SYSTEM,
    Principal,
    hash_token,
    new_secret,
)
from sae.db import new_id, utcnow
from sae.journal.service import append_event

KINDS = ("person", "service")
SOURCES = ("local", "ldap", "oidc")
FIRST_START_LOGIN = "admin"
FIRST_START_NAME = "Administrateur (premier démarrage)"
#: Shortest password a local account accepts (a passphrase is better: no other rule).
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024
#: A login: letters, digits and ``. _ @ + ' -`` (an e-mail address, ``DOMAINE\\jdupont``'s
#: second half, ``jean.dupont``), never ``:`` (actors are ``user:<login>:…``) nor spaces.
_LOGIN = re.compile(r"^[\w.@+'-]{1,255}$")

# argon2id with the library's defaults (RFC 9106's second recommended option).
_hasher = PasswordHasher()
#: Verified against when the login is unknown, so that an unknown login costs the same time
#: as a wrong password (no way to learn which logins exist by timing).
_DUMMY_HASH = _hasher.hash("sae: no such account, the same work as for a real one")


@dataclass(frozen=True)
class ExternalIdentity:
    """A person as a directory (LDAP) or an identity provider (OIDC) vouches for them."""

    login: str
    display_name: str
    email: str
    groups: tuple[str, ...]
    source: str  # "ldap" or "oidc"


class PasswordDirectory(Protocol):
    """A directory the password sign-in asks after the local accounts (LDAP: ``sae.auth.ldap``).

    ``authenticate`` returns the identity when the directory accepts the password, None when it
    refuses it (unknown login, wrong password); it raises only when the directory cannot be
    reached. ``access`` maps the identity's groups to a role and producers, None when no group
    gives access (the sign-in is then refused).
    """

    def authenticate(self, login: str, password: str) -> ExternalIdentity | None: ...

    def access(self, identity: ExternalIdentity) -> tuple[str, tuple[str, ...]] | None: ...


def fold_login(login: str) -> str:
    """The stored form of a login: trimmed and case-folded (``Jean.Dupont`` is ``jean.dupont``)."""
    folded = login.strip().casefold()
    if not _LOGIN.fullmatch(folded):
        raise InvalidAccount(
            f"invalid login {login!r}: 1 to 255 letters, digits or . _ @ + ' - (no space, no ':')"
        )
    return folded


def _check(role: str, kind: str, source: str) -> None:
    if role not in ROLES:
        raise UnknownRole(f"unknown role {role!r}; roles are: {', '.join(ROLES)}")
    if kind not in KINDS:
        raise InvalidAccount(f"unknown kind {kind!r}; kinds are: {', '.join(KINDS)}")
    if source not in SOURCES:
        raise InvalidAccount(f"unknown source {source!r}; sources are: {', '.join(SOURCES)}")


def _producers(producers: Sequence[str]) -> list[str]:
    cleaned = sorted({p.strip() for p in producers if p.strip()})
    if len(cleaned) != len({p for p in producers if p.strip()}) or any(
        len(p) > 255 for p in cleaned
    ):
        raise InvalidAccount("a producer identifier is 1 to 255 characters, without edge spaces")
    return cleaned


def hash_password(password: str) -> str:
    """The argon2id hash of a password that meets the rules (:class:`InvalidAccount` if not)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidAccount(f"a password has at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidAccount(f"a password has at most {MAX_PASSWORD_LENGTH} characters")
    return _hasher.hash(password)


def find_user(session: Session, login: str) -> User | None:
    """The account of ``login`` (case-insensitive), None when there is none."""
    try:
        folded = fold_login(login)
    except InvalidAccount:
        return None
    return session.scalar(select(User).where(User.login == folded))


def get_user(session: Session, user_id: str) -> User:
    """The account ``user_id`` (:class:`UnknownUser` otherwise)."""
    user = session.get(User, user_id)
    if user is None:
        raise UnknownUser(f"no account {user_id}")
    return user


def user_by_id_or_login(session: Session, ref: str) -> User:
    """The account whose id or login is ``ref`` (for the CLI)."""
    user = session.get(User, ref) or find_user(session, ref)
    if user is None:
        raise UnknownUser(f"no account {ref!r}")
    return user


def list_users(session: Session, *, include_disabled: bool = True) -> list[User]:
    """Every account, by login."""
    query = select(User).order_by(User.login)
    if not include_disabled:
        query = query.where(User.disabled_at.is_(None))
    return list(session.scalars(query))


def _user_payload(user: User) -> dict[str, object]:
    return {
        "user_id": user.id,
        "login": user.login,
        "kind": user.kind,
        "role": user.role,
        "producers": list(user.producers),
        "source": user.source,
    }


def create_user(
    session: Session,
    *,
    login: str,
    role: str,
    producers: Sequence[str] = (),
    kind: str = "person",
    source: str = "local",
    password: str | None = None,
    display_name: str = "",
    email: str = "",
    actor: Principal = SYSTEM,
    user_id: str | None = None,
) -> User:
    """Create an account (journaled ``auth.user_created``); :class:`UserExists` if taken."""
    _check(role, kind, source)
    folded = fold_login(login)
    if password is not None and source != "local":
        raise InvalidAccount("only a local account has a password in SAE")
    if session.scalar(select(User.id).where(User.login == folded)) is not None:
        raise UserExists(f"the login {folded!r} is taken")
    user = User(
        id=user_id or new_id(),
        login=folded,
        display_name=display_name.strip()[:255],
        email=email.strip()[:255],
        kind=kind,
        role=role,
        producers=_producers(producers),
        source=source,
        password_hash=hash_password(password) if password is not None else None,
        created_at=utcnow(),
    )
    session.add(user)
    session.flush()
    append_event(session, type="auth.user_created", actor=actor.actor, payload=_user_payload(user))
    return user


def update_user(
    session: Session,
    user: User,
    *,
    role: str | None = None,
    producers: Sequence[str] | None = None,
    display_name: str | None = None,
    email: str | None = None,
    actor: Principal = SYSTEM,
) -> User:
    """Change an account's role, producers or names (journaled ``auth.user_updated``)."""
    if role is not None:
        _check(role, user.kind, user.source)
        user.role = role
    if producers is not None:
        user.producers = _producers(producers)
    if display_name is not None:
        user.display_name = display_name.strip()[:255]
    if email is not None:
        user.email = email.strip()[:255]
    session.flush()
    append_event(session, type="auth.user_updated", actor=actor.actor, payload=_user_payload(user))
    return user


def set_password(session: Session, user: User, password: str, *, actor: Principal) -> None:
    """Set a local account's password (journaled ``auth.password_set``, without the password)."""
    if user.source != "local":
        raise InvalidAccount(
            f"the account {user.login!r} signs in through {user.source}: its password is there"
        )
    user.password_hash = hash_password(password)
    session.flush()
    append_event(
        session,
        type="auth.password_set",
        actor=actor.actor,
        payload={"user_id": user.id, "login": user.login},
    )


def disable_user(session: Session, user: User, *, actor: Principal) -> User:
    """Disable an account: no sign-in, none of its tokens accepted (journaled)."""
    if user.disabled_at is None:
        user.disabled_at = utcnow()
        session.flush()
        append_event(
            session,
            type="auth.user_disabled",
            actor=actor.actor,
            payload={"user_id": user.id, "login": user.login},
        )
    return user


def enable_user(session: Session, user: User, *, actor: Principal) -> User:
    """Enable a disabled account again (its tokens not revoked meanwhile work again)."""
    if user.disabled_at is not None:
        user.disabled_at = None
        session.flush()
        append_event(
            session,
            type="auth.user_enabled",
            actor=actor.actor,
            payload={"user_id": user.id, "login": user.login},
        )
    return user


class VerifiedSecrets:
    """The secrets a process verified recently, so that a client sending the same credentials
    with every request (Pastell's HTTP Basic) costs one argon2 verification per few minutes
    instead of one per request: argon2id takes 64 MiB and tens of milliseconds each time, so
    a 100 MiB transfer in 2 MiB chunks would otherwise pay it fifty times, often concurrently.

    Only successes are remembered, as a BLAKE2b under a key drawn at start and never stored of
    (account id, stored hash, secret): no secret is kept, a changed password (a new stored
    hash) no longer matches, and whether the account is still enabled is read from the
    database at every request. A wrong secret always costs the full verification.
    """

    def __init__(self, ttl_seconds: float = 300.0, max_entries: int = 4096) -> None:
        self._key = secrets.token_bytes(32)
        self._ttl = ttl_seconds
        self._max = max_entries
        self._until: dict[bytes, float] = {}
        self._lock = threading.Lock()

    def _digest(self, user: User, password: str) -> bytes:
        material = "\0".join((user.id, user.password_hash or "", password))
        return hashlib.blake2b(material.encode("utf-8"), key=self._key, digest_size=32).digest()

    def knows(self, user: User, password: str) -> bool:
        digest = self._digest(user, password)
        with self._lock:
            until = self._until.get(digest)
            if until is None:
                return False
            if until < time.monotonic():
                del self._until[digest]
                return False
            return True

    def remember(self, user: User, password: str) -> None:
        digest = self._digest(user, password)
        now = time.monotonic()
        with self._lock:
            if len(self._until) >= self._max:
                self._until = {d: u for d, u in self._until.items() if u >= now}
                if len(self._until) >= self._max:
                    self._until.clear()
            self._until[digest] = now + self._ttl


def verify_password(
    session: Session, login: str, password: str, *, recent: VerifiedSecrets | None = None
) -> User:
    """The enabled local account whose password this is; :class:`InvalidCredentials` otherwise.

    An unknown login costs an argon2 verification too (against a dummy hash). A hash made
    with weaker parameters than today's is replaced (the caller commits). With ``recent``, a
    secret verified there lately is accepted without a new argon2 verification (and a
    verified one is remembered there).
    """
    user = find_user(session, login)
    stored = user.password_hash if user is not None else None
    if (
        recent is not None
        and user is not None
        and stored is not None
        and user.source == "local"
        and user.disabled_at is None
        and recent.knows(user, password[:MAX_PASSWORD_LENGTH])
    ):
        return user
    try:
        _hasher.verify(stored or _DUMMY_HASH, password[:MAX_PASSWORD_LENGTH])
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        raise InvalidCredentials("unknown login or wrong password") from None
    if user is None or stored is None or user.source != "local" or user.disabled_at is not None:
        raise InvalidCredentials("unknown login or wrong password")
    if recent is not None:  # before a rehash: the hash the database still holds
        recent.remember(user, password[:MAX_PASSWORD_LENGTH])
    if _hasher.check_needs_rehash(stored):
        user.password_hash = _hasher.hash(password)
    return user


def principal_of(user: User, token: ApiToken | None = None) -> Principal:
    """The principal of ``user`` acting with ``token`` (or without one: at sign-in)."""
    return make_principal(
        user_id=user.id,
        role=user.role,
        producers=user.producers,
        display_name=user.display_name,
        login=user.login,
        token_id=token.id if token is not None else "",
        token_label=token.label if token is not None else None,
        idle_minutes=token.idle_minutes if token is not None else None,
    )


def make_principal(
    *,
    user_id: str,
    role: str,
    producers: Sequence[str],
    display_name: str | None,
    login: str,
    token_id: str = "",
    token_label: str | None = None,
    idle_minutes: int | None = None,
) -> Principal:
    """:func:`principal_of` from the columns themselves (the token check reads those, not
    the ORM objects: ``sae.auth.service``)."""
    return Principal(
        token_id=token_id,
        role=role,
        producers=tuple(producers),
        # A session (idle limit) is the person; an API token is named by its label.
        label=((token_label or "") if idle_minutes is None else "") or display_name or login,
        user_id=user_id,
        login=login,
    )


def upsert_external(
    session: Session, identity: ExternalIdentity, *, role: str, producers: Sequence[str]
) -> User:
    """The account of a person a directory vouched for, created or brought up to date.

    Role and producers come from the directory's groups at each sign-in (the mapping in the
    configuration), so a change in the directory applies at the next sign-in. A local account
    with the same login is never taken over (:class:`InvalidCredentials`); a disabled account
    stays disabled.
    """
    if identity.source not in ("ldap", "oidc"):
        raise InvalidAccount(f"an external identity comes from ldap or oidc, not {identity.source}")
    user = find_user(session, identity.login)
    if user is None:
        return create_user(
            session,
            login=identity.login,
            role=role,
            producers=producers,
            kind="person",
            source=identity.source,
            display_name=identity.display_name,
            email=identity.email,
        )
    if user.source != identity.source:
        raise InvalidCredentials(
            f"the login {user.login!r} belongs to a {user.source} account, not {identity.source}"
        )
    if user.disabled_at is not None:
        raise InvalidCredentials("unknown login or wrong password")
    wanted = (role, sorted(set(producers)), identity.display_name.strip(), identity.email.strip())
    if (user.role, list(user.producers), user.display_name, user.email) != wanted:
        update_user(
            session,
            user,
            role=role,
            producers=producers,
            display_name=identity.display_name,
            email=identity.email,
            actor=principal_of(user),
        )
    return user


def record_sign_in(session: Session, user: User, *, method: str, address: str = "") -> None:
    """Note a successful sign-in: ``last_login_at`` and ``auth.signed_in`` (method, no secret)."""
    user.last_login_at = utcnow()
    session.flush()
    append_event(
        session,
        type="auth.signed_in",
        actor=principal_of(user).actor,
        payload={"user_id": user.id, "login": user.login, "method": method, "address": address},
    )


def create_token(
    session: Session,
    *,
    user: User,
    expires_at: datetime | None = None,
    label: str = "",
    actor: Principal = SYSTEM,
    idle_minutes: int | None = None,
    token_id: str | None = None,
) -> tuple[ApiToken, str]:
    """A new token of ``user``: the row and the secret (shown once, never stored)."""
    if user.disabled_at is not None:
        raise InvalidAccount(f"the account {user.login!r} is disabled")
    if expires_at is not None and expires_at <= utcnow():
        raise InvalidAccount("the expiry of a new token must be in the future")
    secret = new_secret()
    token = ApiToken(
        id=token_id or new_id(),
        token_hash=hash_token(secret),
        role=user.role,
        producers=list(user.producers),
        label=label.strip()[:255],
        user_id=user.id,
        expires_at=expires_at,
        idle_minutes=idle_minutes,
        created_at=utcnow(),
    )
    session.add(token)
    session.flush()
    append_event(
        session,
        type="auth.token_created",
        actor=actor.actor,
        payload={
            "token_id": token.id,
            "user_id": user.id,
            "login": user.login,
            "role": token.role,
            "producers": list(token.producers),
            "label": token.label,
            "expires_at": expires_at.isoformat() if expires_at is not None else None,
        },
    )
    return token, secret


def list_tokens(
    session: Session, *, user_id: str | None = None, include_revoked: bool = False
) -> list[tuple[ApiToken, User]]:
    """Tokens (of one account, or all), newest first, with their accounts."""
    query = (
        select(ApiToken, User)
        .join(User, User.id == ApiToken.user_id)
        .order_by(ApiToken.created_at.desc(), ApiToken.id)
    )
    if user_id is not None:
        query = query.where(ApiToken.user_id == user_id)
    if not include_revoked:
        query = query.where(ApiToken.revoked_at.is_(None))
    return [(row[0], row[1]) for row in session.execute(query)]


def create_service_account_for_token(
    session: Session,
    *,
    role: str,
    producers: Sequence[str],
    label: str,
    actor: Principal = SYSTEM,
) -> User:
    """A service account for one token (the id the token will have), as migration 0016 does."""
    user_id = new_id()
    login = f"service-{user_id[:8]}"
    if session.scalar(select(User.id).where(User.login == login)) is not None:
        login = f"service-{user_id}"
    return create_user(
        session,
        login=login,
        role=role,
        producers=producers,
        kind="service",
        display_name=label,
        actor=actor,
        user_id=user_id,
    )


def first_start_account(session: Session, *, user_id: str | None = None) -> User:
    """The account ``admin`` that first start and ``sae token reset-admin`` give tokens to.

    Created when missing, with ``user_id`` (its first token's id, as migration 0016 does).
    """
    user = session.scalar(select(User).where(User.login == FIRST_START_LOGIN))
    if user is None:
        user = create_user(
            session,
            login=FIRST_START_LOGIN,
            role="admin",
            kind="service",
            display_name=FIRST_START_NAME,
            user_id=user_id,
        )
    return user


def first_start_token(session: Session) -> tuple[ApiToken, str]:
    """A new admin token of the first-start account (enabled again, admin again if changed)."""
    token_id = new_id()
    user = first_start_account(session, user_id=token_id)
    if user.disabled_at is not None:
        enable_user(session, user, actor=SYSTEM)
    if user.role != "admin":
        update_user(session, user, role="admin", actor=SYSTEM)
    return create_token(session, user=user, label=FIRST_START_LABEL, token_id=token_id)


def reset_first_start_tokens(session: Session, *, actor: Principal) -> int:
    """Revoke every live token of the first-start account (``sae token reset-admin``)."""
    from sae.auth.service import revoke_token

    user = session.scalar(select(User).where(User.login == FIRST_START_LOGIN))
    if user is None:
        return 0
    live = session.scalars(
        select(ApiToken.id).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
    ).all()
    for token_id in live:
        revoke_token(session, token_id, actor=actor)
    return len(live)


def count_users(session: Session) -> int:
    """How many accounts there are."""
    return int(session.scalar(select(func.count()).select_from(User)) or 0)
