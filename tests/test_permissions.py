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
