"""The console's « Comptes » and « Jetons d'accès » pages (SQLite and PostgreSQL)."""

from __future__ import annotations

import re

from sae.auth import accounts
from sae.db import transaction
from tests.auth.test_sign_in import PASSWORD, add_user, password_login
from tests.conftest import Api
from tests.console.helpers import csrf_of, signed_in


def test_an_administrator_creates_disables_and_resets_an_account(api: Api) -> None:
    client = signed_in(api, "admin")
    page = client.get("/console/comptes")
    assert page.status_code == 200
    assert "Créer un compte local" in page.text
    made = client.post(
        "/console/comptes",
        data={
            "csrf": csrf_of(page.text),
            "identifiant": "Claire.Martin",
            "nom": "Claire Martin",
            "role": "depositor",
            "services": "URBANISME, ETAT-CIVIL",
            "nature": "person",
            "mot_de_passe": PASSWORD,
        },
        follow_redirects=False,
    )
    assert made.status_code == 303, made.text
    page = client.get("/console/comptes")
    assert "claire.martin" in page.text
    assert "Service versant" in page.text
    with api.runtime.sessions() as session:
        user = accounts.find_user(session, "claire.martin")
        assert user is not None
        assert user.producers == ["ETAT-CIVIL", "URBANISME"]
        user_id = user.id
    taken = client.post(
        "/console/comptes",
        data={"csrf": csrf_of(page.text), "identifiant": "CLAIRE.martin", "role": "reader"},
    )
    assert taken.status_code == 409
    assert "Identifiant déjà pris" in taken.text
    new_password = "nouveau-mot-de-passe"
    reset = client.post(
        f"/console/comptes/{user_id}/mot-de-passe",
        data={"csrf": csrf_of(page.text), "mot_de_passe": new_password},
        follow_redirects=False,
    )
    assert reset.status_code == 303
    off = client.post(
        f"/console/comptes/{user_id}/etat",
        data={"csrf": csrf_of(page.text), "action": "desactiver"},
        follow_redirects=False,
    )
    assert off.status_code == 303
    assert "Désactivé" in client.get("/console/comptes").text
    assert password_login(api.client, "claire.martin", new_password).status_code == 401


def test_a_user_manages_their_own_tokens_and_password(api: Api) -> None:
    add_user(api, login="lecteur", role="reader")
    other_id = add_user(api, login="autre", role="reader")
    with transaction(api.runtime.sessions) as session:
        other, _ = accounts.create_token(
            session, user=accounts.get_user(session, other_id), label="autre"
        )
        other_token = other.id
    assert password_login(api.client, "lecteur", PASSWORD).status_code == 303
    client = api.client
    assert client.get("/console/comptes").status_code == 403
    page = client.get("/console/jetons")
    assert page.status_code == 200
    assert "Session de la console" in page.text
    assert "(celle-ci)" in page.text
    assert "autre" not in page.text  # another account's tokens are not shown
    made = client.post(
        "/console/jetons",
        data={"csrf": csrf_of(page.text), "libelle": "Script d'export", "duree": "30"},
    )
    assert made.status_code == 201
    secret = re.search(r'value="(sae_[^"]+)"', made.text)
    assert secret is not None
    me = api.client.get("/api/v1/auth/me", headers=api.auth(secret.group(1))).json()
    assert me["user"]["login"] == "lecteur"
    assert "ne sera plus jamais affiché" in made.text
    # Someone else's token cannot be revoked from here (as if it did not exist).
    refused = client.post(
        f"/console/jetons/{other_token}/revoquer", data={"csrf": csrf_of(page.text)}
    )
    assert refused.status_code == 404
    gone = client.post(
        f"/console/jetons/{me['token_id']}/revoquer",
        data={"csrf": csrf_of(page.text)},
        follow_redirects=False,
    )
    assert gone.status_code == 303
    assert api.client.get("/api/v1/auth/me", headers=api.auth(secret.group(1))).status_code == 401
    wrong = client.post(
        "/console/mot-de-passe",
        data={"csrf": csrf_of(page.text), "actuel": "faux-mot-de-passe", "nouveau": "x" * 12},
    )
    assert wrong.status_code == 400
    assert "actuel est incorrect" in wrong.text
    changed = client.post(
        "/console/mot-de-passe",
        data={"csrf": csrf_of(page.text), "actuel": PASSWORD, "nouveau": "x" * 12},
    )
    assert changed.status_code == 200
    assert "a été changé" in changed.text
    with api.runtime.sessions() as session:
        assert accounts.verify_password(session, "lecteur", "x" * 12).login == "lecteur"
