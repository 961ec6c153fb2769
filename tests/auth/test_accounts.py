"""Accounts: creation, passwords, tokens of an account, expiry, disabling, external identities
(SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from sae.auth import accounts
from sae.auth.errors import (
    AccountDisabled,
    InvalidAccount,
    InvalidCredentials,
    InvalidToken,
    TokenExpired,
    UserExists,
)
from sae.auth.models import ApiToken
from sae.auth.service import SYSTEM, authenticate, create_token, record_use, revoke_token
from sae.db import utcnow
from sae.journal.models import Event

PASSWORD = "cheval-agrafe-pile-42"


def events(session: Session, type_: str) -> list[Event]:
    return list(session.scalars(select(Event).where(Event.type == type_)))


def test_a_local_account_signs_in_with_its_password_only(db_session: Session) -> None:
    user = accounts.create_user(
        db_session,
        login="Jean.Dupont",
        role="archivist",
        password=PASSWORD,
        display_name="Jean Dupont",
    )
    assert user.login == "jean.dupont"
    assert user.password_hash is not None
    assert user.password_hash.startswith("$argon2id$")
    assert accounts.verify_password(db_session, "JEAN.DUPONT", PASSWORD).id == user.id
    with pytest.raises(InvalidCredentials):
        accounts.verify_password(db_session, "jean.dupont", PASSWORD + "x")
    with pytest.raises(InvalidCredentials):
        accounts.verify_password(db_session, "personne", PASSWORD)
    with pytest.raises(UserExists):
        accounts.create_user(db_session, login="jean.DUPONT", role="reader")
    # The journal names the account, never the password nor its hash.
    (created,) = events(db_session, "auth.user_created")
    assert created.payload["login"] == "jean.dupont"
    assert PASSWORD not in str(created.payload)
    assert "argon2" not in str(created.payload)


def test_bad_accounts_are_refused(db_session: Session) -> None:
    with pytest.raises(InvalidAccount):
        accounts.create_user(db_session, login="a:b", role="reader")
    with pytest.raises(InvalidAccount):
        accounts.create_user(db_session, login="court", role="reader", password="court")
    with pytest.raises(InvalidAccount):
        accounts.create_user(db_session, login="x", role="reader", kind="robot")


def test_a_disabled_account_neither_signs_in_nor_uses_its_tokens(db_session: Session) -> None:
    user = accounts.create_user(db_session, login="marie", role="reader", password=PASSWORD)
    _, secret = accounts.create_token(db_session, user=user, label="script")
    assert authenticate(db_session, secret).user_id == user.id
    accounts.disable_user(db_session, user, actor=SYSTEM)
    with pytest.raises(InvalidCredentials):
        accounts.verify_password(db_session, "marie", PASSWORD)
    with pytest.raises(AccountDisabled):
        authenticate(db_session, secret)


def test_a_secret_verified_lately_skips_argon2_until_it_changes_or_the_account_is_disabled(
    db_session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pastell sends its credentials with every call: one argon2 (64 MiB, tens of ms) per
    call would cost a 2 MiB chunk more memory than the chunk itself."""
    user = accounts.create_user(db_session, login="pastell", role="depositor", password=PASSWORD)
    verifications: list[str] = []
    hasher = accounts._hasher

    class Counting:
        def verify(self, stored: str, password: str) -> bool:
            verifications.append(stored)
            return hasher.verify(stored, password)

        def __getattr__(self, name: str) -> object:
            return getattr(hasher, name)

    monkeypatch.setattr(accounts, "_hasher", Counting())
    recent = accounts.VerifiedSecrets(ttl_seconds=300)
    for _ in range(3):
        assert accounts.verify_password(db_session, "pastell", PASSWORD, recent=recent) is user
    assert len(verifications) == 1
    # A wrong secret costs the whole verification every time and is never remembered.
    for _ in range(2):
        with pytest.raises(InvalidCredentials):
            accounts.verify_password(db_session, "pastell", PASSWORD + "x", recent=recent)
    assert len(verifications) == 3
    # A new password: the old one no longer matches, remembered or not.
    accounts.set_password(db_session, user, PASSWORD + "-neuf", actor=SYSTEM)
    with pytest.raises(InvalidCredentials):
        accounts.verify_password(db_session, "pastell", PASSWORD, recent=recent)
    accounts.verify_password(db_session, "pastell", PASSWORD + "-neuf", recent=recent)
    # Disabled: refused at once, whatever was remembered.
    accounts.disable_user(db_session, user, actor=SYSTEM)
    with pytest.raises(InvalidCredentials):
        accounts.verify_password(db_session, "pastell", PASSWORD + "-neuf", recent=recent)
    # Remembered for a while only.
    accounts.enable_user(db_session, user, actor=SYSTEM)
    expired = accounts.VerifiedSecrets(ttl_seconds=0)
    before = len(verifications)
    for _ in range(2):
        accounts.verify_password(db_session, "pastell", PASSWORD + "-neuf", recent=expired)
    assert len(verifications) == before + 2


def test_a_token_acts_as_its_account_until_it_expires_or_is_revoked(db_session: Session) -> None:
    user = accounts.create_user(
        db_session, login="ged", role="depositor", producers=["URBA"], kind="service"
    )
    token, secret = accounts.create_token(
        db_session, user=user, expires_at=utcnow() + timedelta(hours=1), label="GED"
    )
    principal = authenticate(db_session, secret)
    assert (principal.role, principal.producers, principal.login) == ("depositor", ("URBA",), "ged")
    assert principal.actor == f"user:ged:{token.id}:depositor"
    # The account's role now, not the token's at creation.
    accounts.update_user(db_session, user, producers=["URBA", "ETATCIVIL"], actor=SYSTEM)
    assert authenticate(db_session, secret).producers == ("ETATCIVIL", "URBA")
    with pytest.raises(TokenExpired):
        authenticate(db_session, secret, now=utcnow() + timedelta(hours=2))
    revoke_token(db_session, token.id)
    with pytest.raises(InvalidToken):
        authenticate(db_session, secret)


def test_an_idle_session_token_expires(db_session: Session) -> None:
    user = accounts.create_user(db_session, login="agent", role="reader")
    token, secret = accounts.create_token(db_session, user=user, idle_minutes=30)
    now = utcnow()
    authenticate(db_session, secret, now=now + timedelta(minutes=20))
    record_use(db_session, token.id, now + timedelta(minutes=20))
    db_session.expire_all()
    authenticate(db_session, secret, now=now + timedelta(minutes=45))
    with pytest.raises(TokenExpired):
        authenticate(db_session, secret, now=now + timedelta(minutes=60))


def test_last_use_is_written_at_most_once_a_minute(db_session: Session) -> None:
    user = accounts.create_user(db_session, login="robot", role="reader", kind="service")
    token, _ = accounts.create_token(db_session, user=user)
    now = utcnow()
    record_use(db_session, token.id, now)
    record_use(db_session, token.id, now + timedelta(seconds=30))
    db_session.expire_all()
    assert db_session.get(ApiToken, token.id).last_used_at == now  # type: ignore[union-attr]
    record_use(db_session, token.id, now + timedelta(seconds=61))
    db_session.expire_all()
    used = db_session.get(ApiToken, token.id)
    assert used is not None
    assert used.last_used_at == now + timedelta(seconds=61)


def test_a_token_created_without_an_account_gets_a_service_account(db_session: Session) -> None:
    token, secret = create_token(db_session, role="reader", producers=["URBA"], label="lecteur")
    user = accounts.get_user(db_session, token.user_id)
    assert (user.id, user.kind, user.role, user.login) == (
        token.id,
        "service",
        "reader",
        f"service-{token.id[:8]}",
    )
    assert authenticate(db_session, secret).user_id == user.id


def test_an_external_identity_is_created_then_kept_up_to_date(db_session: Session) -> None:
    identity = accounts.ExternalIdentity(
        login="JDupont", display_name="Jean Dupont", email="j@x.fr", groups=("g",), source="ldap"
    )
    user = accounts.upsert_external(db_session, identity, role="reader", producers=["URBA"])
    assert (user.login, user.source, user.password_hash) == ("jdupont", "ldap", None)
    again = accounts.upsert_external(db_session, identity, role="archivist", producers=[])
    assert again.id == user.id
    assert again.role == "archivist"
    # An LDAP login never takes over a local account of the same login.
    accounts.create_user(db_session, login="local", role="admin", password=PASSWORD)
    other = accounts.ExternalIdentity("local", "", "", (), "oidc")
    with pytest.raises(InvalidCredentials):
        accounts.upsert_external(db_session, other, role="reader", producers=[])
    # And an external account has no password in SAE.
    with pytest.raises(InvalidCredentials):
        accounts.verify_password(db_session, "jdupont", PASSWORD)
