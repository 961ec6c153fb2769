"""Tokens and accounts over the API: list, create, revoke, expiry, last use; /users for
administrators (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

from sae.auth import accounts
from sae.auth.service import SYSTEM
from sae.db import transaction, utcnow
from tests.conftest import Api

PASSWORD = "cheval-agrafe-pile-42"


def account_token(api: Api, login: str, role: str = "reader") -> tuple[str, str]:
    """A new account with one token: (user id, secret)."""
    with transaction(api.runtime.sessions) as session:
        user = accounts.create_user(session, login=login, role=role, password=PASSWORD)
        _, secret = accounts.create_token(session, user=user, label="test")
        return user.id, secret


def test_a_user_lists_creates_and_revokes_their_own_tokens(api: Api) -> None:
    user_id, secret = account_token(api, "marie")
    mine = api.client.get("/api/v1/auth/tokens", headers=api.auth(secret))
    assert mine.status_code == 200, mine.text
    assert [t["user_id"] for t in mine.json()] == [user_id]
    # Last use is shown (written at most once a minute).
    assert mine.json()[0]["last_used_at"] is not None
    assert "token_hash" not in mine.text
    made = api.client.post(
        "/api/v1/auth/tokens",
        json={"label": "script", "expires_in_days": 30},
        headers=api.auth(secret),
    )
    assert made.status_code == 201, made.text
    new = made.json()
    assert new["token"].startswith("sae_")
    assert new["user_id"] == user_id
    assert api.client.get("/api/v1/auth/me", headers=api.auth(new["token"])).status_code == 200
    # Another account's tokens are out of reach.
    other_id, other = account_token(api, "paul")
    listed = api.client.get(
        "/api/v1/auth/tokens", params={"user_id": other_id}, headers=api.auth(secret)
    )
    assert listed.status_code == 403
    other_token = api.client.get("/api/v1/auth/tokens", headers=api.auth(other)).json()[0]["id"]
    hidden = api.client.delete(f"/api/v1/auth/tokens/{other_token}", headers=api.auth(secret))
    assert hidden.status_code == 404
    assert hidden.json()["code"] == "auth.unknown_token"
    # Revoked: refused from now on, and listed as such to the administrator.
    gone = api.client.delete(f"/api/v1/auth/tokens/{new['id']}", headers=api.auth(secret))
    assert gone.status_code == 200
    assert gone.json()["revoked_at"] is not None
    refused = api.client.get("/api/v1/auth/me", headers=api.auth(new["token"]))
    assert refused.status_code == 401
    assert refused.json()["code"] == "auth.invalid_token"
    everything = api.client.get(
        "/api/v1/auth/tokens", params={"include_revoked": "true"}, headers=api.auth()
    ).json()
    assert {t["id"] for t in everything if t["revoked_at"]} == {new["id"]}


def test_an_expired_token_is_refused_with_its_own_code(api: Api) -> None:
    _, secret = account_token(api, "expire")
    made = api.client.post(
        "/api/v1/auth/tokens",
        json={"expires_at": (utcnow() + timedelta(seconds=2)).isoformat()},
        headers=api.auth(secret),
    ).json()
    assert api.client.get("/api/v1/auth/me", headers=api.auth(made["token"])).status_code == 200
    from sae.auth.models import ApiToken

    with transaction(api.runtime.sessions) as session:
        row = session.get(ApiToken, made["id"])
        assert row is not None
        row.expires_at = utcnow() - timedelta(seconds=1)
    refused = api.client.get("/api/v1/auth/me", headers=api.auth(made["token"]))
    assert refused.status_code == 401
    assert refused.json()["code"] == "auth.token_expired"
    past = api.client.post(
        "/api/v1/auth/tokens",
        json={"expires_at": (utcnow() - timedelta(days=1)).isoformat()},
        headers=api.auth(secret),
    )
    assert past.status_code == 400


def test_a_disabled_accounts_tokens_are_refused(api: Api) -> None:
    user_id, secret = account_token(api, "parti")
    patched = api.client.patch(
        f"/api/v1/users/{user_id}", json={"disabled": True}, headers=api.auth()
    )
    assert patched.status_code == 200, patched.text
    refused = api.client.get("/api/v1/auth/me", headers=api.auth(secret))
    assert refused.status_code == 401
    assert refused.json()["code"] == "auth.account_disabled"
    api.client.patch(f"/api/v1/users/{user_id}", json={"disabled": False}, headers=api.auth())
    assert api.client.get("/api/v1/auth/me", headers=api.auth(secret)).status_code == 200


def test_administrators_manage_accounts(api: Api) -> None:
    created = api.client.post(
        "/api/v1/users",
        json={
            "login": "Claire.Martin",
            "role": "depositor",
            "producers": ["URBANISME"],
            "display_name": "Claire Martin",
            "password": PASSWORD,
        },
        headers=api.auth(),
    )
    assert created.status_code == 201, created.text
    user = created.json()
    assert (user["login"], user["has_password"], user["source"]) == (
        "claire.martin",
        True,
        "local",
    )
    assert "password" not in {k for k in user if k != "has_password"}
    again = api.client.post(
        "/api/v1/users", json={"login": "claire.MARTIN", "role": "reader"}, headers=api.auth()
    )
    assert again.status_code == 409
    assert again.json()["code"] == "auth.user_exists"
    short = api.client.put(
        f"/api/v1/users/{user['id']}/password", json={"password": "court"}, headers=api.auth()
    )
    assert short.status_code == 400
    logins = [u["login"] for u in api.client.get("/api/v1/users", headers=api.auth()).json()]
    assert "claire.martin" in logins
    assert "admin" in logins  # the first-start account
    # The owner changes their own password, proving the current one.
    _, secret = account_token(api, "moi")
    wrong = api.client.put(
        "/api/v1/auth/password",
        json={"current_password": "pas-le-bon-mot", "new_password": "nouveau-mot-de-passe"},
        headers=api.auth(secret),
    )
    assert wrong.status_code == 400
    ok = api.client.put(
        "/api/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": "nouveau-mot-de-passe"},
        headers=api.auth(secret),
    )
    assert ok.status_code == 204
    with api.runtime.sessions() as session:
        assert accounts.verify_password(session, "moi", "nouveau-mot-de-passe").login == "moi"


def test_a_token_acts_with_its_accounts_current_role(api: Api) -> None:
    user_id, secret = account_token(api, "promu", role="reader")
    assert api.client.get("/api/v1/holds", headers=api.auth(secret)).status_code == 403
    with transaction(api.runtime.sessions) as session:
        user = accounts.get_user(session, user_id)
        accounts.update_user(session, user, role="archivist", actor=SYSTEM)
    assert api.client.get("/api/v1/holds", headers=api.auth(secret)).status_code == 200


def test_guessing_the_current_password_is_rate_limited(api: Api) -> None:
    _, secret = account_token(api, "vole")
    for _ in range(5):
        wrong = api.client.put(
            "/api/v1/auth/password",
            json={"current_password": "devinette-123", "new_password": "nouveau-mot-de-passe"},
            headers=api.auth(secret),
        )
        assert wrong.status_code == 400
    limited = api.client.put(
        "/api/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": "nouveau-mot-de-passe"},
        headers=api.auth(secret),
    )
    assert limited.status_code == 429
    assert limited.json()["code"] == "auth.too_many_attempts"
    assert int(limited.headers["retry-after"]) > 0
