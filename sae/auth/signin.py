"""Password sign-in: local accounts, then the configured directories, with a rate limit.

Refused sign-ins are counted in the database (``sign_in_failures``), per login and per client
address, so that the limit holds across every worker and instance: past
``SAE_SIGN_IN_MAX_PER_ACCOUNT`` refusals of one login, or ``SAE_SIGN_IN_MAX_PER_ADDRESS`` from one
address, within ``SAE_SIGN_IN_WINDOW_MINUTES``, the next attempt is refused with
:class:`~sae.auth.errors.TooManyAttempts` (429, ``retry_after`` seconds) before any password is
checked — a right password too, so that guessing gains nothing. A success does not erase the
count: an attacker who knows one password cannot reset the counter of another account.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from math import ceil

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from sae.auth import accounts
from sae.auth.accounts import PasswordDirectory
from sae.auth.errors import InvalidCredentials, NoGroupAccess, TooManyAttempts
from sae.auth.groups import NoMappedGroup
from sae.auth.models import SignInFailure, User
from sae.config import Settings
from sae.db import transaction, utcnow

log = logging.getLogger("sae.auth")


@dataclass(frozen=True)
class Limits:
    """The rate limit of refused sign-ins."""

    window: timedelta = timedelta(minutes=15)
    per_account: int = 5
    per_address: int = 20

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(
            window=timedelta(minutes=settings.sign_in_window_minutes),
            per_account=settings.sign_in_max_per_account,
            per_address=settings.sign_in_max_per_address,
        )


def _keys(login: str, address: str) -> tuple[str, str]:
    return f"login:{login.strip().casefold()[:280]}", f"address:{address[:280]}"


def check_rate(
    session: Session, *, login: str, address: str, limits: Limits, now: datetime
) -> None:
    """:class:`TooManyAttempts` when this login or this address has been refused too often."""
    since = now - limits.window
    for key, most in zip(
        _keys(login, address), (limits.per_account, limits.per_address), strict=True
    ):
        count, oldest = session.execute(
            select(func.count(), func.min(SignInFailure.at)).where(
                SignInFailure.key == key, SignInFailure.at > since
            )
        ).one()
        if count >= most:
            # The oldest counted refusal leaves the window first: then one more try is allowed.
            retry = max(1, ceil((oldest + limits.window - now).total_seconds()))
            what = "this account" if key.startswith("login:") else "this address"
            raise TooManyAttempts(
                f"too many refused sign-ins for {what}; retry in {retry} s", retry_after=retry
            )


def record_failure(
    session: Session, *, login: str, address: str, limits: Limits, now: datetime
) -> None:
    """Count a refused sign-in (and forget the refusals older than the window)."""
    session.execute(delete(SignInFailure).where(SignInFailure.at <= now - limits.window))
    for key in _keys(login, address):
        session.add(SignInFailure(key=key, at=now))
    session.flush()


def sign_in_with_password(
    sessions: sessionmaker[Session],
    login: str,
    password: str,
    *,
    address: str,
    limits: Limits,
    directories: Sequence[PasswordDirectory] = (),
) -> User:
    """The account that ``login`` and ``password`` open, its sign-in journaled.

    A local account (``source`` local) is checked here (argon2id); any other login is asked of
    each directory in turn (LDAP), whose identity becomes or updates an account. Raises
    :class:`InvalidCredentials` (the refusal counted) or :class:`TooManyAttempts`.
    A unit of work: the refusal is committed even though the sign-in fails.
    """
    now = utcnow()
    with sessions() as session:
        check_rate(session, login=login, address=address, limits=limits, now=now)
        known = accounts.find_user(session, login)
        local = known is not None and known.source == "local"
    try:
        if local or not directories:
            with transaction(sessions) as session:
                user = accounts.verify_password(session, login, password)
                accounts.record_sign_in(session, user, method="password", address=address)
                return user
        for directory in directories:
            identity = directory.authenticate(login, password)
            if identity is None:
                continue
            access = directory.access(identity)
            if access is None:
                # The directory knows the person, but SAE does not let them in: say so, in
                # French (still counted as a refused sign-in).
                raise NoGroupAccess(str(NoMappedGroup(identity.login)), login=identity.login)
            role, producers = access
            with transaction(sessions) as session:
                user = accounts.upsert_external(session, identity, role=role, producers=producers)
                if user.disabled_at is not None:
                    raise InvalidCredentials("unknown login or wrong password")
                accounts.record_sign_in(session, user, method=identity.source, address=address)
                return user
        raise InvalidCredentials("unknown login or wrong password")
    except InvalidCredentials as exc:
        log.warning("auth.sign_in_refused from %s: %s", address or "?", exc.detail)
        with transaction(sessions) as session:
            record_failure(session, login=login, address=address, limits=limits, now=now)
        raise


def change_own_password(
    sessions: sessionmaker[Session],
    user_id: str,
    current: str,
    new: str,
    *,
    address: str,
    limits: Limits,
) -> None:
    """Change one's own password, proving the current one, under the sign-in's rate limit.

    A wrong current password counts as a refused sign-in (a stolen session must not become a
    way to guess the password, often used elsewhere too): :class:`InvalidCredentials` (counted)
    or :class:`TooManyAttempts`. A unit of work, as :func:`sign_in_with_password`.
    """
    now = utcnow()
    with sessions() as session:
        user = accounts.get_user(session, user_id)
        login = user.login
        check_rate(session, login=login, address=address, limits=limits, now=now)
    try:
        with transaction(sessions) as session:
            user = accounts.verify_password(session, login, current)
            accounts.set_password(session, user, new, actor=accounts.principal_of(user))
    except InvalidCredentials:
        with transaction(sessions) as session:
            record_failure(session, login=login, address=address, limits=limits, now=now)
        raise
