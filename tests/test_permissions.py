"""Every API route, called with a token of every role, obeys the matrix of docs/api.md."""

from __future__ import annotations

import re

from tests.conftest import REPO, Api

ROLES = ("admin", "archivist", "auditor", "depositor", "reader")


def _matrix() -> dict[tuple[str, str], dict[str, str]]:
    text = (REPO / "docs" / "api.md").read_text(encoding="utf-8")
    rows: dict[tuple[str, str], dict[str, str]] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[0] in ("GET", "POST", "PUT", "DELETE", "PATCH"):
            rows[(cells[0], cells[1])] = dict(zip(ROLES, cells[2:], strict=True))
    return rows


def _api_routes(api: Api) -> list[tuple[str, str]]:
    """Every (method, path) of the API, from the OpenAPI document the app serves."""
    paths = api.client.get("/openapi.json").json()["paths"]
    return [
        (method.upper(), path.removeprefix("/api/v1"))
        for path, operations in paths.items()
        if path.startswith("/api/v1/")
        for method in operations
        if method.upper() in ("GET", "POST", "PUT", "DELETE", "PATCH")
    ]


def test_every_route_is_in_the_matrix(api: Api) -> None:
    matrix = _matrix()
    missing = [r for r in _api_routes(api) if r not in matrix]
    assert missing == [], f"document these routes in docs/api.md: {missing}"
    stale = [r for r in matrix if r not in _api_routes(api)]
    assert stale == [], f"docs/api.md lists routes the app does not have: {stale}"


def test_every_route_obeys_the_matrix(api: Api) -> None:
    tokens = {
        role: api.token(role, ["SOMEONE"] if role == "depositor" else None)
        for role in ROLES
        if role != "admin"
    }
    tokens["admin"] = api.admin
    matrix = _matrix()
    for method, path in _api_routes(api):
        url = "/api/v1" + re.sub(r"\{[^}]+\}", "00000000-0000-0000-0000-000000000000", path)
        anonymous = api.client.request(method, url)
        assert anonymous.status_code == 401, (method, path, anonymous.status_code)
        for role in ROLES:
            response = api.client.request(method, url, headers=api.auth(tokens[role]))
            expected = matrix[(method, path)][role]
            where = (method, path, role, response.status_code, response.text[:200])
            assert response.status_code != 401, where
            assert response.status_code < 500, where
            if expected == "no":
                assert response.status_code == 403, where
                assert response.json()["code"] == "auth.role_forbidden", where
            else:
                assert response.status_code != 403 or expected == "data", where


#: The console's pages for accounts and tokens, by role: the status of a GET.
CONSOLE_MATRIX = {
    "/console/comptes": {
        "admin": 200,
        "archivist": 403,
        "auditor": 403,
        "depositor": 403,
        "reader": 403,
    },
    "/console/jetons": {role: 200 for role in ROLES},
    # Dérogations: everyone sees a list (a reader, its own); readers and depositors ask.
    "/console/derogations": {role: 200 for role in ROLES},
    "/console/derogations/nouvelle": {
        "admin": 200,
        "archivist": 403,
        "auditor": 403,
        "depositor": 200,
        "reader": 200,
    },
    # The register of communications: the archivist and the auditor.
    "/console/communications": {
        "admin": 200,
        "archivist": 200,
        "auditor": 200,
        "depositor": 403,
        "reader": 403,
    },
    "/console/communications/export": {
        "admin": 200,
        "archivist": 200,
        "auditor": 200,
        "depositor": 403,
        "reader": 403,
    },
}
#: POSTs only an archivist (or an admin) may make.
CONSOLE_ARCHIVIST_POSTS = (
    "/console/derogations/00000000-0000-0000-0000-000000000000/accorder",
    "/console/derogations/00000000-0000-0000-0000-000000000000/refuser",
)
#: POSTs only an administrator may make (others: 403 before anything is read).
CONSOLE_ADMIN_POSTS = (
    "/console/comptes",
    "/console/comptes/00000000-0000-0000-0000-000000000000/etat",
    "/console/comptes/00000000-0000-0000-0000-000000000000/mot-de-passe",
)


def test_the_console_account_pages_obey_the_same_roles(api: Api) -> None:
    from tests.console.helpers import csrf_of, login

    for role in ROLES:
        token = (
            api.admin
            if role == "admin"
            else api.token(role, ["SOMEONE"] if role == "depositor" else None)
        )
        assert login(api.client, token).status_code == 303
        for path, expected in CONSOLE_MATRIX.items():
            response = api.client.get(path)
            assert response.status_code == expected[role], (path, role, response.status_code)
        csrf = csrf_of(api.client.get("/console/jetons").text)
        for path in CONSOLE_ADMIN_POSTS:
            response = api.client.post(path, data={"csrf": csrf})
            where = (path, role, response.status_code)
            assert (response.status_code == 403) == (role != "admin"), where
            assert response.status_code < 500, where
        for path in CONSOLE_ARCHIVIST_POSTS:
            response = api.client.post(path, data={"csrf": csrf})
            where = (path, role, response.status_code)
            # Allowed: the (missing) dérogation answers 404; refused: 403 before any read.
            assert response.status_code == (404 if role in ("admin", "archivist") else 403), where
        api.client.cookies.clear()
        # Signed out, every one of them sends to the sign-in page.
        for path in CONSOLE_MATRIX:
            response = api.client.get(path, follow_redirects=False)
            assert response.status_code == 303
            assert response.headers["location"].startswith("/console/connexion")


#: Every console route, with the roles it lets through besides admin (the API's, docs/api.md):
#: ``ALL`` for every signed-in role (what a role may see of the data is then checked by the
#: domain, as in the API); ``PUBLIC`` for what needs no sign-in (sign-in itself, the style
#: sheet, redirects, the OIDC round trip, the French 404). A new console route must be added.
ALL = ("archivist", "auditor", "depositor", "reader")
PUBLIC = None
ARCH = ("archivist",)
ARCH_AUD = ("archivist", "auditor")
CONSOLE_ROUTES: dict[tuple[str, str], tuple[str, ...] | None] = {
    ("GET", "/"): PUBLIC,
    ("GET", "/console"): PUBLIC,
    ("GET", "/console/static/{name}"): PUBLIC,
    ("GET", "/console/connexion"): PUBLIC,
    ("POST", "/console/connexion"): PUBLIC,
    ("GET", "/console/login/oidc"): PUBLIC,
    ("GET", "/console/login/oidc/callback"): PUBLIC,
    ("GET", "/console/{rest:path}"): PUBLIC,
    ("POST", "/console/{rest:path}"): PUBLIC,
    ("POST", "/console/deconnexion"): ALL,
    ("GET", "/console/"): ALL,
    ("GET", "/console/versements"): ("archivist", "depositor"),
    ("POST", "/console/versements"): ("depositor",),
    ("GET", "/console/versements/{transfer_id}"): ("archivist", "depositor"),
    ("POST", "/console/versements/{transfer_id}/retrait"): ARCH,
    ("GET", "/console/versements/{transfer_id}/accuse"): ("archivist", "depositor"),
    ("GET", "/console/recherche"): ALL,
    ("GET", "/console/unites/{unit_id}"): ALL,
    ("GET", "/console/unites/{unit_id}/dip"): ALL,
    ("GET", "/console/objets/{object_id}/contenu"): ALL,
    ("GET", "/console/objets/{object_id}/preuve"): ARCH_AUD,
    ("GET", "/console/referentiel"): ALL,
    ("GET", "/console/referentiel/import"): ARCH,
    ("POST", "/console/referentiel/apercu"): ARCH,
    ("POST", "/console/referentiel/appliquer"): ARCH,
    ("GET", "/console/gels"): ARCH_AUD,
    ("POST", "/console/gels"): ARCH,
    ("POST", "/console/gels/{hold_id}/levee"): ARCH,
    ("GET", "/console/audits"): ARCH_AUD,
    ("POST", "/console/audits"): ARCH_AUD,
    ("GET", "/console/audits/{audit_id}"): ARCH_AUD,
    ("GET", "/console/journal"): ARCH_AUD,
    ("GET", "/console/journal/tetes/{tree_size}/{name}"): ARCH_AUD,
    ("GET", "/console/journal/verifier"): ARCH_AUD,
    ("GET", "/console/eliminations"): ARCH_AUD,
    ("POST", "/console/eliminations"): ARCH,
    ("GET", "/console/eliminations/{list_id}"): ARCH_AUD,
    ("POST", "/console/eliminations/{list_id}/soumettre"): ARCH,
    ("POST", "/console/eliminations/{list_id}/approuver"): ARCH,
    ("POST", "/console/eliminations/{list_id}/rejeter"): ARCH,
    ("POST", "/console/eliminations/{list_id}/visa"): ARCH,
    ("POST", "/console/eliminations/{list_id}/executer"): ARCH,
    ("GET", "/console/eliminations/{list_id}/bordereau"): ARCH_AUD,
    ("GET", "/console/eliminations/{list_id}/certificat"): ARCH_AUD,
    ("GET", "/console/comptes"): (),
    ("POST", "/console/comptes"): (),
    ("POST", "/console/comptes/{user_id}/etat"): (),
    ("POST", "/console/comptes/{user_id}/mot-de-passe"): (),
    ("GET", "/console/jetons"): ALL,
    ("POST", "/console/jetons"): ALL,
    ("POST", "/console/jetons/{token_id}/revoquer"): ALL,
    ("POST", "/console/mot-de-passe"): ALL,
    ("GET", "/console/contrats"): ALL,
    ("GET", "/console/contrats/nouveau"): ARCH,
    ("POST", "/console/contrats"): ARCH,
    ("GET", "/console/contrats/{contract_id}"): ALL,
    ("GET", "/console/contrats/{contract_id}/modifier"): ARCH,
    ("POST", "/console/contrats/{contract_id}/statut"): ARCH,
    ("GET", "/console/profils"): ALL,
    ("POST", "/console/profils"): ARCH,
    ("GET", "/console/profils/{profile_id}/document"): ALL,
    ("GET", "/console/derogations"): ALL,
    ("GET", "/console/derogations/nouvelle"): ("depositor", "reader"),
    ("POST", "/console/derogations"): ("depositor", "reader"),
    ("GET", "/console/derogations/{derogation_id}"): ALL,
    ("POST", "/console/derogations/{derogation_id}/accorder"): ARCH,
    ("POST", "/console/derogations/{derogation_id}/refuser"): ARCH,
    ("GET", "/console/communications"): ARCH_AUD,
    ("GET", "/console/communications/export"): ARCH_AUD,
}


def _console_routes() -> list[tuple[str, str]]:
    from fastapi.routing import APIRoute

    from sae.console import console_router

    def walk(routes: list[object]) -> list[APIRoute]:
        found: list[APIRoute] = []
        for route in routes:
            included = getattr(route, "original_router", None)
            if included is not None:
                found += walk(included.routes)
            elif isinstance(route, APIRoute):
                found.append(route)
        return found

    return sorted(
        (method, r.path)
        for r in walk(list(console_router.routes))
        for method in r.methods
        if method in ("GET", "POST")
    )


def test_every_console_route_is_in_the_console_matrix() -> None:
    routes = _console_routes()
    missing = [r for r in routes if r not in CONSOLE_ROUTES]
    assert missing == [], f"add these console routes to CONSOLE_ROUTES: {missing}"
    stale = [r for r in CONSOLE_ROUTES if r not in routes]
    assert stale == [], f"CONSOLE_ROUTES lists routes the console does not have: {stale}"


def test_every_console_route_obeys_the_roles(api: Api) -> None:
    """Signed out, every signed-in route sends to the sign-in page; signed in, a role outside
    the route's answers the French 403 (before anything is read or done), others never 403
    for their role nor 500."""
    from tests.console.helpers import csrf_of, login

    zero = "00000000-0000-0000-0000-000000000000"
    checked = [
        (method, path, allowed)
        for (method, path), allowed in CONSOLE_ROUTES.items()
        if allowed is not PUBLIC and path != "/console/deconnexion"
    ]
    for role in ROLES:
        token = (
            api.admin
            if role == "admin"
            else api.token(role, ["SOMEONE"] if role == "depositor" else None)
        )
        api.client.cookies.clear()
        for method, path, _ in checked:
            url = re.sub(r"\{[^}]+\}", zero, path.replace("{tree_size}", "1"))
            response = api.client.request(method, url, follow_redirects=False)
            where = (method, path, "signed out", response.status_code)
            if method == "GET":
                assert response.status_code == 303, where
                assert response.headers["location"].startswith("/console/connexion"), where
            else:
                assert response.status_code in (303, 403), where
        assert login(api.client, token).status_code == 303
        csrf = csrf_of(api.client.get("/console/jetons").text)
        for method, path, allowed in checked:
            url = re.sub(r"\{[^}]+\}", zero, path.replace("{tree_size}", "1"))
            data = {"csrf": csrf} if method == "POST" else None
            response = api.client.request(method, url, data=data, follow_redirects=False)
            where = (method, path, role, response.status_code, response.text[:300])
            assert response.status_code < 500, where
            if role == "admin" or role in (allowed or ()):
                assert response.status_code != 403 or "Accès refusé" not in response.text, where
            else:
                assert response.status_code == 403, where
                assert "Accès refusé" in response.text, where
