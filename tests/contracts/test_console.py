"""Contracts and profiles in the console (French pages): list, detail, create/edit form, the
profile upload; the same roles and scope as the API."""

from __future__ import annotations

from tests.conftest import Api
from tests.console.helpers import csrf_of, signed_in
from tests.contracts.helpers import TEST_PROFILE, add_contract


def test_an_archivist_manages_contracts_and_profiles(api: Api) -> None:
    client = signed_in(api, "archivist")
    page = client.get("/console/contrats")
    assert page.status_code == 200
    assert "Aucun contrat" in page.text
    # A profile through the upload form; a broken one comes back with its problems.
    profiles = client.get("/console/profils")
    csrf = csrf_of(profiles.text)
    bad = client.post(
        "/console/profils",
        data={"csrf": csrf, "identifiant": "PROFIL-BAD"},
        files={"document": ("bad.rng", b"<pas-du-relaxng/>", "application/xml")},
    )
    assert bad.status_code == 422
    assert "Le profil n'a pas été enregistré" in bad.text
    done = client.post(
        "/console/profils",
        data={"csrf": csrf, "identifiant": "PROFIL-TEST", "nom": "Profil de test"},
        files={"document": ("profil.rng", TEST_PROFILE, "application/xml")},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text
    assert "PROFIL-TEST" in client.get("/console/profils").text
    document = client.get("/console/profils/PROFIL-TEST/document")
    assert document.content == TEST_PROFILE
    # A contract with problems: the form comes back filled in, every problem listed.
    form = client.get("/console/contrats/nouveau")
    assert form.status_code == 200
    assert "PROFIL-TEST" in form.text
    data = {
        "csrf": csrf_of(form.text),
        "identifiant": "CONV-URBA",
        "nom": "Urbanisme",
        "producteurs": "URBANISME\nVOIRIE",
        "profils": "PROFIL-TEST",
        "types": "APP-5Y",
        "formats": "application/pdf\npdf",
        "taille_objet": "1000000",
    }
    refused = client.post("/console/contrats", data=data)
    assert refused.status_code == 422
    assert "pas été enregistré" in refused.text
    assert "formats" in refused.text
    assert "VOIRIE" in refused.text  # the form keeps what was typed
    data["formats"] = "application/pdf\nfmt/18"
    saved = client.post("/console/contrats", data=data, follow_redirects=False)
    assert saved.status_code == 303, saved.text
    assert saved.headers["location"] == "/console/contrats/CONV-URBA"
    detail = client.get("/console/contrats/CONV-URBA")
    assert "Contrat CONV-URBA — Urbanisme" in detail.text
    assert "application/pdf, fmt/18" in detail.text
    assert "1000000 octets" in detail.text
    # Edit: the form is filled in; the saved clauses are the API's.
    edit = client.get("/console/contrats/CONV-URBA/modifier")
    assert "URBANISME\nVOIRIE" in edit.text
    data.update({"csrf": csrf_of(edit.text), "modification": "1", "nom": "Urbanisme et voirie"})
    assert client.post("/console/contrats", data=data, follow_redirects=False).status_code == 303
    body = api.client.get("/api/v1/contracts/CONV-URBA", headers=api.auth()).json()
    assert body["name"] == "Urbanisme et voirie"
    assert body["profiles"] == ["PROFIL-TEST"]
    # Disable from the detail page.
    detail = client.get("/console/contrats/CONV-URBA")
    off = client.post(
        "/console/contrats/CONV-URBA/statut",
        data={"csrf": csrf_of(detail.text), "statut": "inactive"},
        follow_redirects=False,
    )
    assert off.status_code == 303
    assert "Désactivé" in client.get("/console/contrats/CONV-URBA").text
    assert api.client.get("/api/v1/contracts/CONV-URBA", headers=api.auth()).json()["status"] == (
        "inactive"
    )


def test_a_depositor_reads_its_own_contracts_and_writes_none(api: Api) -> None:
    add_contract(api)
    add_contract(api, id="CONV-EC", name="État civil", producers=["ETAT-CIVIL"])
    client = signed_in(api, "depositor", ["URBANISME"])
    page = client.get("/console/contrats")
    assert "CONV-2026-01" in page.text
    assert "CONV-EC" not in page.text
    assert "Nouveau contrat" not in page.text
    assert client.get("/console/contrats/CONV-EC").status_code == 404
    assert client.get("/console/contrats/CONV-2026-01").status_code == 200
    assert client.get("/console/contrats/nouveau").status_code == 403
    refused = client.post(
        "/console/contrats/CONV-2026-01/statut",
        data={"csrf": csrf_of(page.text), "statut": "inactive"},
    )
    assert refused.status_code == 403
    assert "Accès refusé" in refused.text
