"""The disposal circuit through the console: build, approve, visa, execute — and every refusal
the law requires, shown in French."""

from __future__ import annotations

import html
from typing import Any

from sae.catalog.models import ArchiveUnit
from sae.retention.models import DisposalList
from tests.conftest import Api
from tests.console.helpers import csrf_of, signed_in, sip

PDF = b"%PDF-1.4\n% visa des Archives departementales\n%%EOF\n"


def _deposit_due(api: Api) -> tuple[list[str], list[str]]:
    """Deposit a SIP already due for destruction; its unit ids and object ids."""
    response = api.deposit(sip("MSG-DUE"))
    assert response.status_code == 201, response.text
    body = response.json()
    return [u["id"] for u in body["units"]], [o["id"] for o in body["objects"]]


def _due_units(api: Api) -> list[str]:
    return _deposit_due(api)[0]


def _build(client: Any) -> str:
    token = csrf_of(client.get("/console/eliminations").text)
    answer = client.post(
        "/console/eliminations",
        data={"csrf": token, "sort_final": "Destroy", "producteur": "URBANISME"},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    list_id: str = answer.headers["location"].rsplit("/", 1)[1]
    return list_id


def _step(client: Any, list_id: str, step: str, **data: Any) -> Any:
    token = csrf_of(client.get(f"/console/eliminations/{list_id}").text)
    return client.post(
        f"/console/eliminations/{list_id}/{step}",
        data={"csrf": token, **data},
        follow_redirects=False,
    )


def _visa(client: Any, list_id: str, when: str = "2025-06-15") -> Any:
    token = csrf_of(client.get(f"/console/eliminations/{list_id}").text)
    return client.post(
        f"/console/eliminations/{list_id}/visa",
        data={"csrf": token, "reference": "AD93-2025-042", "date_decision": when},
        files={"document": ("visa signé.pdf", PDF, "application/pdf")},
        follow_redirects=False,
    )


def _state(api: Api, list_id: str) -> str:
    with api.runtime.sessions() as session:
        d = session.get(DisposalList, list_id)
        assert d is not None
        return d.state


def _unit_status(api: Api, unit_id: str) -> str:
    with api.runtime.sessions() as session:
        unit = session.get(ArchiveUnit, unit_id)
        assert unit is not None
        return unit.status


def test_destruction_circuit_in_the_console(api: Api) -> None:
    units, objects = _deposit_due(api)
    client = signed_in(api, "archivist")
    list_id = _build(client)
    page = client.get(f"/console/eliminations/{list_id}").text
    assert "Brouillon" in page
    assert "Arrêtés de voirie 2024" in page
    assert "Approuver la liste" in page
    assert client.get(f"/console/eliminations/{list_id}/bordereau?format=csv").status_code == 200
    pdf = client.get(f"/console/eliminations/{list_id}/bordereau")
    assert pdf.content.startswith(b"%PDF")

    # Four eyes: who built the list cannot approve it (in French); another archivist does.
    alone = _step(client, list_id, "approuver", commentaire="Vu, conforme")
    assert alone.status_code == 409
    assert "quatre yeux" in alone.text
    assert "un autre archiviste doit" in alone.text
    assert _state(api, list_id) == "draft"
    client = signed_in(api, "archivist")
    assert _step(client, list_id, "approuver", commentaire="Vu, conforme").status_code == 303
    assert _state(api, list_id) == "approved"

    # No visa, no destruction: refused, explained, nothing destroyed.
    refused = _step(client, list_id, "executer")
    assert refused.status_code == 409
    assert "Élimination refusée" in refused.text
    assert "visée par les Archives" in refused.text
    assert all(_unit_status(api, u) == "active" for u in units)

    # A visa dated in the future is refused in French; a real one is recorded.
    future = _visa(client, list_id, when="2999-01-01")
    assert future.status_code == 422
    assert "Visa incomplet" in future.text
    assert _visa(client, list_id).status_code == 303
    assert _state(api, list_id) == "visa_recorded"
    assert "Exécuter l'élimination" in html.unescape(
        client.get(f"/console/eliminations/{list_id}").text
    )

    assert _step(client, list_id, "executer").status_code == 303
    assert _state(api, list_id) == "executed"
    assert all(_unit_status(api, u) == "destroyed" for u in units)
    page = client.get(f"/console/eliminations/{list_id}").text
    assert "Exécutée" in page
    gone = client.get(f"/console/unites/{units[-1]}")
    assert gone.status_code == 200
    assert "Éliminée" in gone.text
    assert "Télécharger" not in gone.text
    for object_id in objects:
        content = client.get(f"/console/objets/{object_id}/contenu")
        assert content.status_code == 410
        assert "Document éliminé" in content.text
    certificate = client.get(f"/console/eliminations/{list_id}/certificat")
    assert certificate.status_code == 200
    assert certificate.content.startswith(b"%PDF")


def test_a_held_unit_is_never_destroyed(api: Api) -> None:
    units = _due_units(api)
    client = signed_in(api, "archivist")
    list_id = _build(client)
    client = signed_in(api, "archivist")  # four eyes: another archivist approves
    assert _step(client, list_id, "approuver", commentaire="ok").status_code == 303
    assert _visa(client, list_id).status_code == 303
    hold = api.client.post(
        "/api/v1/holds",
        headers=api.auth(),
        json={"unit_ids": [units[0]], "reason": "Contentieux"},
    )
    assert hold.status_code == 201, hold.text
    refused = _step(client, list_id, "executer")
    assert refused.status_code == 409
    assert "Élimination refusée" in refused.text
    assert "gelée" in refused.text
    assert all(_unit_status(api, u) == "active" for u in units)


def test_wrong_steps_and_missing_reasons_are_refused_in_french(api: Api) -> None:
    _due_units(api)
    client = signed_in(api, "archivist")
    list_id = _build(client)
    early_visa = _visa(client, list_id)
    assert early_visa.status_code == 409
    assert "Étape impossible" in early_visa.text
    no_reason = _step(client, list_id, "rejeter", commentaire="  ")
    assert no_reason.status_code == 400
    assert "Motif obligatoire" in no_reason.text
    assert _state(api, list_id) == "draft"
    assert _step(client, list_id, "rejeter", commentaire="Dossier encore utile").status_code == 303
    assert _state(api, list_id) == "rejected"
    assert "Rejetée" in client.get(f"/console/eliminations/{list_id}").text


def test_csrf_is_required_for_every_step(api: Api) -> None:
    _due_units(api)
    client = signed_in(api, "archivist")
    list_id = _build(client)
    for step in ("soumettre", "approuver", "rejeter", "executer"):
        answer = client.post(
            f"/console/eliminations/{list_id}/{step}",
            data={"csrf": "forged", "commentaire": "x"},
            follow_redirects=False,
        )
        assert answer.status_code == 403, step
    forged_create = client.post(
        "/console/eliminations", data={"csrf": "forged"}, follow_redirects=False
    )
    assert forged_create.status_code == 403
    assert _state(api, list_id) == "draft"


def test_the_auditor_reads_but_does_not_decide(api: Api) -> None:
    _due_units(api)
    list_id = _build(signed_in(api, "archivist"))
    client = signed_in(api, "auditor")
    page = client.get(f"/console/eliminations/{list_id}")
    assert page.status_code == 200
    assert "Approuver la liste" not in page.text
    assert "Préparer la liste" not in client.get("/console/eliminations").text
    answer = _step(client, list_id, "approuver", commentaire="non")
    assert answer.status_code == 403
    assert _state(api, list_id) == "draft"
    for role, producers in (("reader", None), ("depositor", ["URBANISME"])):
        other = signed_in(api, role, producers)
        assert other.get("/console/eliminations").status_code == 403
        assert other.get(f"/console/eliminations/{list_id}").status_code == 403
