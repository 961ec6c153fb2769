"""Console pages of dérogations and of the register of communications, by role: a reader asks
and follows its requests, the archivist grants or refuses, the reader's reads (console unit
page, object) land in the register with their basis, the register filters and exports."""

from __future__ import annotations

import csv
import io
import re
from datetime import date, timedelta
from typing import Any

from pypdf import PdfReader

from sae.auth.service import authenticate
from tests.conftest import Api
from tests.console.helpers import csrf_of, login
from tests.sipfactory import FileSpec, RuleSpec, UnitSpec, build_zip, simple_sip


def _deposit(api: Api) -> dict[str, str]:
    spec = simple_sip("MSG-CONSOLE-DEROG")
    spec.files.append(FileSpec(uri="Content/a.pdf", data=b"%PDF-1.4 dossier A"))
    spec.units[0].children.append(
        UnitSpec(
            id="AU-A",
            title="Dossier CCAS de M. A",
            files=[1],
            rules=[RuleSpec("AccessRule", "ACC-50Y", date(2020, 1, 1))],
        )
    )
    response = api.deposit(build_zip(spec))
    assert response.status_code == 201, response.text
    return {u["sip_id"]: u["id"] for u in response.json()["units"]}


def _sign_in(api: Api, token: str) -> Any:
    assert login(api.client, token).status_code == 303
    return api.client


def _derogation_id(location: str) -> str:
    match = re.fullmatch(r"/console/derogations/([0-9a-f-]{36})", location)
    assert match is not None, location
    return match.group(1)


def test_a_reader_asks_the_archivist_grants_and_the_register_records(api: Api) -> None:
    units = _deposit(api)
    a = units["AU-A"]
    reader = api.token("reader")
    with api.runtime.sessions() as session:
        reader_login = authenticate(session, reader).login
    client = _sign_in(api, reader)
    # Closed: the unit's page is « Introuvable ».
    assert client.get(f"/console/unites/{a}").status_code == 404
    form = client.get("/console/derogations/nouvelle")
    assert form.status_code == 200
    assert "Demander une dérogation" in form.text
    csrf = csrf_of(form.text)
    # An empty purpose: the form comes back filled in, the problem said in French.
    refused = client.post("/console/derogations", data={"csrf": csrf, "unites": a, "objet": ""})
    assert refused.status_code == 422
    assert "objet de la consultation" in refused.text
    assert a in refused.text
    asked = client.post(
        "/console/derogations",
        data={"csrf": csrf, "unites": a, "objet": "Mémoire de master"},
        follow_redirects=False,
    )
    assert asked.status_code == 303, asked.text
    derogation = _derogation_id(asked.headers["location"])
    mine = client.get("/console/derogations")
    assert "Mes demandes (1)" in mine.text
    assert "En attente" in mine.text
    page = client.get(f"/console/derogations/{derogation}")
    assert "Mémoire de master" in page.text
    assert "Accorder" not in page.text  # a reader does not decide
    # A reader may neither decide nor read the register.
    assert (
        client.post(
            f"/console/derogations/{derogation}/accorder",
            data={"csrf": csrf, "jusqu_au": "2099-01-01", "reference": "X"},
        ).status_code
        == 403
    )
    assert client.get("/console/communications").status_code == 403

    # The archivist: the list, the request with its unit's title, the grant.
    archivist = _sign_in(api, api.token("archivist"))
    listed = archivist.get("/console/derogations?etat=requested")
    assert reader_login in listed.text
    page = archivist.get(f"/console/derogations/{derogation}")
    assert "Dossier CCAS de M. A" in page.text
    csrf = csrf_of(page.text)
    past = archivist.post(
        f"/console/derogations/{derogation}/accorder",
        data={"csrf": csrf, "jusqu_au": "2020-01-01", "reference": "SIAF-1"},
    )
    assert past.status_code == 422
    assert "déjà passée" in past.text
    until = (date.today() + timedelta(days=10)).isoformat()
    granted = archivist.post(
        f"/console/derogations/{derogation}/accorder",
        data={"csrf": csrf, "jusqu_au": until, "reference": "SIAF-2026-300"},
        follow_redirects=False,
    )
    assert granted.status_code == 303, granted.text
    assert "SIAF-2026-300" in archivist.get(f"/console/derogations/{derogation}").text

    # The reader reads the unit's page and its object, in the console.
    client = _sign_in(api, reader)
    assert "Accordée" in client.get("/console/derogations").text
    unit_page = client.get(f"/console/unites/{a}")
    assert unit_page.status_code == 200
    assert "Dossier CCAS de M. A" in unit_page.text
    content = re.search(r'href="(/console/objets/[^"]+/contenu)"', unit_page.text)
    assert content is not None
    assert client.get(content.group(1)).status_code == 200

    # The register, in the console: both reads, under the dérogation, by the console.
    archivist = _sign_in(api, api.token("archivist"))
    register = archivist.get("/console/communications", params={"fondement": "derogation"})
    assert register.status_code == 200
    assert register.text.count(f"/console/derogations/{derogation}") == 2
    assert "Notice" in register.text
    assert "Document" in register.text
    assert reader_login in register.text
    # An archivist's own views are not communications.
    archivist.get(f"/console/unites/{a}")
    exported = archivist.get("/console/communications/export", params={"format": "csv"})
    assert exported.status_code == 200
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [(r["kind"], r["basis"], r["via"]) for r in rows] == [
        ("metadata", "derogation", "console"),
        ("content", "derogation", "console"),
    ]
    pdf = archivist.get(
        "/console/communications/export", params={"format": "pdf", "lecteur": reader_login}
    )
    assert pdf.headers["content-type"] == "application/pdf"
    text = " ".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.content)).pages)
    assert "Registre des communications" in " ".join(text.split())
    assert "2 communication(s)" in text
    bad = archivist.get("/console/communications", params={"du": "2026-12-31", "au": "2026-01-01"})
    assert bad.status_code == 400
    assert "Filtre invalide" in bad.text


def test_a_refusal_in_the_console(api: Api) -> None:
    units = _deposit(api)
    reader = api.token("reader")
    client = _sign_in(api, reader)
    csrf = csrf_of(client.get("/console/derogations/nouvelle").text)
    asked = client.post(
        "/console/derogations",
        data={"csrf": csrf, "unites": units["AU-A"], "objet": "Curiosité"},
        follow_redirects=False,
    )
    derogation = _derogation_id(asked.headers["location"])
    archivist = _sign_in(api, api.token("archivist"))
    csrf = csrf_of(archivist.get(f"/console/derogations/{derogation}").text)
    empty = archivist.post(
        f"/console/derogations/{derogation}/refuser", data={"csrf": csrf, "motif": " "}
    )
    assert empty.status_code == 422
    assert "motif du refus" in empty.text
    refused = archivist.post(
        f"/console/derogations/{derogation}/refuser",
        data={"csrf": csrf, "motif": "Atteinte à la vie privée"},
        follow_redirects=False,
    )
    assert refused.status_code == 303
    client = _sign_in(api, reader)
    page = client.get(f"/console/derogations/{derogation}")
    assert "Refusée" in page.text
    assert "Atteinte à la vie privée" in page.text
    assert client.get(f"/console/unites/{units['AU-A']}").status_code == 404
    # Another reader does not see it.
    _sign_in(api, api.token("reader"))
    assert api.client.get(f"/console/derogations/{derogation}").status_code == 404
