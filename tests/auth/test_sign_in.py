"""Console sign-in with a login and a password: sessions, sign-out, the rate limit
(SQLite and PostgreSQL, through the real app)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from sae.auth import accounts
from sae.auth.models import ApiToken
from sae.auth.service import SYSTEM
from sae.console.security import SESSION_COOKIE, SESSION_LABEL
from sae.db import transaction
from sae.journal.models import Event
from tests.conftest import Api
from tests.console.helpers import csrf_of

PASSWORD = "cheval-agrafe-pile-42"


def add_user(api: Api, login: str = "jdupont", role: str = "archivist", **kw: Any) -> str:
    with transaction(api.runtime.sessions) as session:
        user = accounts.create_user(session, login=login, role=role, password=PASSWORD, **kw)
        return user.id


def password_login(client: Any, login: str, password: str) -> Any:
    client.cookies.clear()
    page = client.get("/console/connexion")
    assert page.status_code == 200
    return client.post(
        "/console/connexion",
        data={
            "identifiant": login,
            "mot_de_passe": password,
            "csrf": csrf_of(page.text),
            "suite": "/console/",
        },
        follow_redirects=False,
    )


def test_a_password_opens_a_session_that_sign_out_revokes(api: Api) -> None:
    user_id = add_user(api, display_name="Jean Dupont")
    answer = password_login(api.client, "JDupont", PASSWORD)
    assert answer.status_code == 303, answer.text
    cookie = answer.cookies.get(SESSION_COOKIE)
    assert cookie is not None
    assert cookie.startswith("sae_")
    assert "HttpOnly" in answer.headers["set-cookie"]
    page = api.client.get("/console/")
    assert page.status_code == 200
    assert "Archiviste" in page.text
    # The session is a token of the account, short-lived, and the journal says who signed in.
    with api.runtime.sessions() as session:
        (token,) = session.scalars(select(ApiToken).where(ApiToken.user_id == user_id)).all()
        assert token.label == SESSION_LABEL
        assert token.expires_at is not None
        assert abs(token.expires_at - token.created_at - timedelta(hours=8)) < timedelta(minutes=1)
        assert token.idle_minutes == 60
        signed = session.scalars(select(Event).where(Event.type == "auth.signed_in")).all()
        assert [e.payload["login"] for e in signed] == ["jdupont"]
        assert PASSWORD not in str(signed[0].payload)
    # The session token works on the API too (it is the account's), until sign-out.
    assert api.client.get("/api/v1/auth/me", headers=api.auth(cookie)).json()["user"]["id"] == (
        user_id
    )
    out = api.client.post(
        "/console/deconnexion", data={"csrf": csrf_of(page.text)}, follow_redirects=False
    )
    assert out.status_code == 303
    refused = api.client.get("/api/v1/auth/me", headers=api.auth(cookie))
    assert refused.status_code == 401
    assert refused.json()["code"] == "auth.invalid_token"


def test_a_wrong_password_is_refused_in_french(api: Api) -> None:
    add_user(api)
    for login, password in (("jdupont", PASSWORD + "!"), ("personne", PASSWORD)):
        answer = password_login(api.client, login, password)
        assert answer.status_code == 401
        assert "Identifiant ou mot de passe incorrect" in answer.text
        assert SESSION_COOKIE not in answer.cookies


def test_a_disabled_account_cannot_sign_in(api: Api) -> None:
    user_id = add_user(api)
    with transaction(api.runtime.sessions) as session:
        accounts.disable_user(session, accounts.get_user(session, user_id), actor=SYSTEM)
    assert password_login(api.client, "jdupont", PASSWORD).status_code == 401


def test_refused_sign_ins_are_rate_limited_per_account(api: Api) -> None:
    add_user(api)
    for _ in range(5):
        assert password_login(api.client, "jdupont", "mauvais-mot-de-passe").status_code == 401
    # Past the limit even the right password waits: guessing gains nothing.
    limited = password_login(api.client, "jdupont", PASSWORD)
    assert limited.status_code == 429
    assert "Trop de tentatives" in limited.text
    assert 0 < int(limited.headers["retry-after"]) <= 15 * 60
    # Another account from the same address is not blocked by this one's count.
    add_user(api, login="marie")
    assert password_login(api.client, "marie", PASSWORD).status_code == 303


def test_refused_sign_ins_are_rate_limited_per_address(api: Api) -> None:
    for n in range(20):
        assert password_login(api.client, f"inconnu{n}", "x" * 12).status_code == 401
    add_user(api)
    limited = password_login(api.client, "jdupont", PASSWORD)
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) > 0


def test_token_paste_still_signs_in(api: Api) -> None:
    from tests.console.helpers import login

    answer = login(api.client, api.token("auditor"))
    assert answer.status_code == 303
    assert api.client.get("/console/").status_code == 200
