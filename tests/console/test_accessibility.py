"""Every console page passes axe-core in Chromium: no serious or critical violation.

axe-core comes from npm at the version of ``tests/a11y/package-lock.json`` (``npm ci`` there,
as ``.ci/run`` does); it is injected by Playwright before any page script would run (an init
script, which the console's CSP — no script at all — does not apply to), then ``axe.run`` checks
the rendered page. Each page is opened signed in with the role that sees the most of it.

The pages are read from the console's router: a new GET route must be added to ``PAGES`` (an
HTML page, checked) or to ``NOT_PAGES`` (a download or a redirect), or
:func:`test_every_console_route_is_listed` fails.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from tests.conftest import REPO, require
from tests.console.helpers import sip
from tests.console.test_browser import (  # noqa: F401 (the fixtures are used by name)
    SHOTS,
    Served,
    _login,
    _new_token,
    browser,
    served,
)
from tests.sipfactory import FileSpec, build_zip, simple_sip

AXE = REPO / "tests" / "a11y" / "node_modules" / "axe-core" / "axe.min.js"
#: What fails the check (axe's impacts are minor, moderate, serious, critical).
FAILING = ("serious", "critical")


@dataclass
class Fixture:
    """The ids the pages are opened with."""

    transfer: str
    refused_transfer: str
    parent_unit: str
    child_unit: str
    audit: str
    disposal_list: str
    contract: str
    derogation: str


#: Each console page (a GET route answering HTML): the role it is opened with and its address.
PAGES: dict[str, tuple[str, Callable[[Fixture], str]]] = {
    "/console/connexion": ("anonymous", lambda f: "/console/connexion"),
    "/console/": ("admin", lambda f: "/console/"),
    "/console/versements": ("depositor", lambda f: "/console/versements"),
    "/console/versements/{transfer_id}": (
        "archivist",
        lambda f: f"/console/versements/{f.transfer}",
    ),
    "/console/recherche": ("archivist", lambda f: "/console/recherche?q=voirie"),
    "/console/unites/{unit_id}": ("archivist", lambda f: f"/console/unites/{f.child_unit}"),
    "/console/referentiel": ("archivist", lambda f: "/console/referentiel"),
    "/console/audits": ("archivist", lambda f: "/console/audits"),
    "/console/audits/{audit_id}": ("auditor", lambda f: f"/console/audits/{f.audit}"),
    "/console/journal": ("auditor", lambda f: "/console/journal"),
    "/console/journal/verifier": ("auditor", lambda f: "/console/journal/verifier"),
    "/console/eliminations": ("archivist", lambda f: "/console/eliminations"),
    "/console/eliminations/{list_id}": (
        "archivist",
        lambda f: f"/console/eliminations/{f.disposal_list}",
    ),
    "/console/comptes": ("admin", lambda f: "/console/comptes"),
    "/console/jetons": ("archivist", lambda f: "/console/jetons"),
    "/console/contrats": ("archivist", lambda f: "/console/contrats"),
    "/console/contrats/nouveau": ("archivist", lambda f: "/console/contrats/nouveau"),
    "/console/contrats/{contract_id}": ("archivist", lambda f: f"/console/contrats/{f.contract}"),
    "/console/derogations": ("archivist", lambda f: "/console/derogations"),
    "/console/derogations/nouvelle": ("reader", lambda f: "/console/derogations/nouvelle"),
    "/console/derogations/{derogation_id}": (
        "archivist",
        lambda f: f"/console/derogations/{f.derogation}",
    ),
    "/console/communications": ("archivist", lambda f: "/console/communications"),
    "/console/contrats/{contract_id}/modifier": (
        "archivist",
        lambda f: f"/console/contrats/{f.contract}/modifier",
    ),
    "/console/profils": ("archivist", lambda f: "/console/profils"),
    "/console/gels": ("archivist", lambda f: "/console/gels?tous=1"),
    "/console/referentiel/import": ("archivist", lambda f: "/console/referentiel/import"),
    "/console/{rest:path}": ("archivist", lambda f: "/console/nulle-part"),
}
#: More states of the same pages, and what some roles see differently.
MORE_PAGES: list[tuple[str, Callable[[Fixture], str]]] = [
    ("reader", lambda f: "/console/"),
    ("reader", lambda f: "/console/versements"),  # the French 403 page
    ("archivist", lambda f: f"/console/versements/{f.refused_transfer}"),
    ("archivist", lambda f: f"/console/unites/{f.parent_unit}"),
    ("archivist", lambda f: "/console/recherche"),
    ("auditor", lambda f: "/console/gels"),
]
#: GET routes that are not pages: downloads, redirects, the style sheet, the OIDC round trip.
NOT_PAGES = {
    "/",
    "/console",
    "/console/static/{name}",
    "/console/versements/{transfer_id}/accuse",
    "/console/objets/{object_id}/contenu",
    "/console/objets/{object_id}/preuve",
    "/console/journal/tetes/{tree_size}/{name}",
    "/console/eliminations/{list_id}/bordereau",
    "/console/eliminations/{list_id}/certificat",
    "/console/login/oidc",
    "/console/login/oidc/callback",
    "/console/profils/{profile_id}/document",
    "/console/unites/{unit_id}/dip",
    "/console/communications/export",
}


def _routes(routes: list[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if hasattr(route, "original_router"):  # an included router (FastAPI ≥ 0.16x)
            yield from _routes(route.original_router.routes)
        elif hasattr(route, "routes"):
            yield from _routes(route.routes)
        elif isinstance(route, APIRoute):
            yield route


def console_get_routes() -> set[str]:
    from sae.console import console_router

    return {r.path for r in _routes(console_router.routes) if "GET" in r.methods}


def test_every_console_route_is_listed() -> None:
    routes = console_get_routes()
    unlisted = sorted(routes - set(PAGES) - NOT_PAGES)
    assert unlisted == [], f"add these console routes to PAGES or NOT_PAGES: {unlisted}"
    stale = sorted((set(PAGES) | NOT_PAGES) - routes)
    assert stale == [], f"PAGES/NOT_PAGES list routes the console does not have: {stale}"


def _api(app: Served, method: str, path: str, **kwargs: Any) -> Any:
    answer = httpx.request(
        method,
        f"{app.url}/api/v1{path}",
        headers={"Authorization": f"Bearer {app.admin}", **kwargs.pop("headers", {})},
        timeout=60,
        **kwargs,
    )
    assert answer.status_code < 300, answer.text
    return answer.json()


def _prepare(app: Served) -> Fixture:
    """One accepted and one refused transfer, an audit, a disposal list, a contract, a hold."""
    zipped = {"Content-Type": "application/zip"}
    body = _api(app, "POST", "/transfers", content=sip("MSG-A11Y-1"), headers=zipped)
    bad = simple_sip("MSG-A11Y-BAD")
    bad.files = [FileSpec(uri=bad.files[0].uri, data=b"%PDF-1.4 x", digest="0" * 128)]
    refused = httpx.post(
        f"{app.url}/api/v1/transfers",
        content=build_zip(bad),
        headers={"Authorization": f"Bearer {app.admin}", **zipped},
        timeout=60,
    )
    assert refused.status_code == 422, refused.text
    units = {u["sip_id"]: u["id"] for u in body["units"]}
    child = units.pop("AU-1")
    parent = next(iter(units.values()))
    audit = _api(app, "POST", "/audits", json={})
    listed = _api(
        app,
        "POST",
        "/disposal-lists",
        json={"final_action": "Destroy", "producer": "URBANISME"},
    )
    _api(
        app,
        "POST",
        "/contracts",
        json={"id": "CONTRAT-A11Y", "name": "Contrat de l'urbanisme", "producers": ["URBANISME"]},
    )
    _api(
        app,
        "POST",
        "/holds",
        json={"unit_ids": [parent], "reason": "Contentieux TA 2027-0042"},
    )
    derogation = _api(
        app,
        "POST",
        "/derogations",
        json={"units": [child], "purpose": "Recherche généalogique"},
    )
    return Fixture(
        transfer=body["transfer_id"],
        refused_transfer=refused.json()["transfer_id"],
        parent_unit=parent,
        child_unit=child,
        audit=audit["id"],
        disposal_list=listed["id"],
        contract="CONTRAT-A11Y",
        derogation=derogation["id"],
    )


def _violations(page: Any) -> list[str]:
    result = page.evaluate(
        "() => axe.run(document, {resultTypes: ['violations']}).then(r => r.violations.map("
        "v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)})))"
    )
    return [
        f"{v['impact']} {v['id']} ({v['help']}): {', '.join(v['nodes'])}"
        for v in result
        if v["impact"] in FAILING
    ]


@pytest.mark.browser
@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_every_console_page_passes_axe(served: Served, browser: Any) -> None:  # noqa: F811
    require(AXE.is_file(), f"{AXE} missing: run `npm ci` in tests/a11y")
    fixture = _prepare(served)
    tokens = {
        "admin": served.admin,
        "archivist": _new_token(served, "archivist", []),
        "auditor": _new_token(served, "auditor", []),
        "depositor": _new_token(served, "depositor", ["URBANISME"]),
        "reader": _new_token(served, "reader", []),
    }
    visits = [(role, build(fixture)) for role, build in PAGES.values()] + [
        (role, build(fixture)) for role, build in MORE_PAGES
    ]
    contexts: dict[str, Any] = {}
    found: dict[str, list[str]] = {}
    try:
        for role, url in visits:
            if role not in contexts:
                context = browser.new_context(locale="fr-FR")
                context.add_init_script(path=str(AXE))
                page = context.new_page()
                if role != "anonymous":
                    _login(page, served, tokens[role])
                contexts[role] = page
            page = contexts[role]
            answer = page.goto(served.url + url)
            assert answer is not None
            assert answer.status < 500, (role, url, answer.status)
            assert page.evaluate("typeof axe") == "object", "axe-core was not injected"
            problems = _violations(page)
            if problems:
                found[f"{role} {url}"] = problems
                name = url.strip("/").replace("/", "-").replace("?", "-")[:60]
                page.screenshot(path=str(SHOTS / f"sae-a11y-{name}.png"), full_page=True)
        # Pages a POST renders: the referential import's preview and its outcome.
        page = contexts["archivist"]
        page.goto(served.url + "/console/referentiel/import")
        csv_path = SHOTS / "sae-a11y-referentiel.csv"
        from tests.conftest import TEST_RULES_CSV

        csv_path.write_text(TEST_RULES_CSV.replace(",10,YEAR", ",12,YEAR"), encoding="utf-8")
        page.get_by_label("Fichier du référentiel").set_input_files(str(csv_path))
        page.get_by_role("button", name="Voir l'aperçu").click()
        page.get_by_role("heading", name="Aperçu de l'import du référentiel").wait_for()
        for where in ("aperçu", "import appliqué"):
            problems = _violations(page)
            if problems:
                found[f"archivist {where}"] = problems
            if where == "aperçu":
                page.get_by_role("button", name="Appliquer").click()
                page.get_by_role("heading", name="Référentiel importé").wait_for()
    finally:
        for page in contexts.values():
            page.context.close()
    assert found == {}, "axe-core found serious or critical violations:\n" + "\n".join(
        f"{where}:\n  " + "\n  ".join(problems) for where, problems in found.items()
    )
