"""Managing contracts through the API: every problem listed, scope by producer, journaled."""

from __future__ import annotations

from tests.conftest import Api
from tests.contracts.helpers import add_contract


def test_a_contract_with_problems_lists_each(api: Api) -> None:
    body = {
        "id": "conv 1",
        "name": "",
        "producers": [],
        "status": "peut-être",
        "valid_from": "2027-01-01",
        "valid_until": "2026-01-01",
        "profiles": ["PROFIL-ABSENT"],
        "record_types": ["Factures"],
        "rules": ["APP-ABSENTE"],
        "formats": ["pdf"],
        "max_object_bytes": 0,
    }
    response = api.client.post("/api/v1/contracts", json=body, headers=api.auth())
    assert response.status_code == 422
    problem = response.json()
    assert problem["code"] == "contracts.invalid"
    fields = [p.split(" ", 1)[0].rstrip(":") for p in problem["problems"]]
    assert fields == [
        "id",
        "name",
        "producers",
        "status",
        "valid_until",
        "max_object_bytes",
        "formats",
        "profiles",
        "rules",
        "record_types",
    ]
    assert api.client.get("/api/v1/contracts", headers=api.auth()).json() == []


def test_create_replace_disable_and_the_journal(api: Api) -> None:
    created = add_contract(api, formats=["FMT/18", "application/pdf", "fmt/18"])
    assert created["formats"] == ["fmt/18", "application/pdf"]
    again = api.client.post(
        "/api/v1/contracts",
        json={"id": "CONV-2026-01", "name": "x", "producers": ["URBANISME"]},
        headers=api.auth(),
    )
    assert again.status_code == 409
    assert again.json()["code"] == "contracts.exists"
    body = {"id": "CONV-2026-01", "name": "Nouvelle", "producers": ["URBANISME", "VOIRIE"]}
    replaced = api.client.put("/api/v1/contracts/CONV-2026-01", json=body, headers=api.auth())
    assert replaced.status_code == 200
    assert replaced.json()["producers"] == ["URBANISME", "VOIRIE"]
    assert replaced.json()["created_at"] == created["created_at"]
    wrong = api.client.put("/api/v1/contracts/AUTRE", json=body, headers=api.auth())
    assert wrong.status_code == 400
    missing = api.client.post("/api/v1/contracts/ABSENT/disable", headers=api.auth())
    assert missing.status_code == 404
    assert missing.json()["code"] == "contracts.not_found"
    api.client.post("/api/v1/contracts/CONV-2026-01/disable", headers=api.auth())
    events = api.client.get(
        "/api/v1/journal/events", params={"type": "contracts.saved"}, headers=api.auth()
    ).json()
    items = events["events"]
    acts = [e["payload"]["act"] for e in items]
    assert acts == ["created", "replaced", "disabled"]
    assert items[-1]["payload"]["contract"]["status"] == "inactive"


def test_depositors_read_their_producers_contracts_only(api: Api) -> None:
    add_contract(api)
    add_contract(api, id="CONV-EC", name="État civil", producers=["ETAT-CIVIL"])
    depositor = api.token("depositor", ["URBANISME"])
    mine = api.client.get("/api/v1/contracts", headers=api.auth(depositor)).json()
    assert [c["id"] for c in mine] == ["CONV-2026-01"]
    other = api.client.get("/api/v1/contracts/CONV-EC", headers=api.auth(depositor))
    assert other.status_code == 404
    auditor = api.token("auditor")
    everything = api.client.get("/api/v1/contracts", headers=api.auth(auditor)).json()
    assert [c["id"] for c in everything] == ["CONV-2026-01", "CONV-EC"]
    refused = api.client.post(
        "/api/v1/contracts",
        json={"id": "X", "name": "x", "producers": ["URBANISME"]},
        headers=api.auth(depositor),
    )
    assert refused.status_code == 403
