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
