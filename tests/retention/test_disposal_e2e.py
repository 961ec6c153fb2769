"""End to end, on SQLite and PostgreSQL, with the clock in the test's hands: ingest units with
rules → advance the clock → a list of exactly the due, unheld units → approve → execute refused
before the visa → visa → execute → objects gone from every offer, tombstones, certificate,
journal events in order, destruction notification valid against the official XSD."""

from __future__ import annotations

import threading
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

import seda
from sae.auth.service import Principal
from sae.catalog.models import ArchiveUnit, DataObject
from sae.ingest.transfer_record import transfer_record_key
from sae.retention import execution
from sae.retention.api import _context
from sae.retention.errors import ExecutionInProgress
from sae.retention.models import DisposalList, Tombstone
from sae.storage.base import PERMANENT_RETAIN_UNTIL
from sae.storage.service import open_verified
from tests.conftest import XSD_DIR, Api, require
from tests.retention.helpers import Clock, dossier_sip, event_types, events
from tests.sipfactory import RuleSpec

PDF = b"%PDF-1.4\n% visa des Archives departementales\n%%EOF\n"


def _units(api: Api, response: Any) -> dict[str, str]:
    assert response.status_code == 201, response.text
    return {u["title"]: u["id"] for u in response.json()["units"]}


def _visa(api: Api, list_id: str, token: str, excluded: list[str] | None = None,
          when: str = "2021-06-15") -> Any:
    return api.client.post(
        f"/api/v1/disposal-lists/{list_id}/visa",
        headers=api.auth(token),
        files={"document": ("visa signé.pdf", PDF, "application/pdf")},
        data={"reference": "AD93-2021-042", "decision_date": when,
              **({"excluded": excluded} if excluded else {})},
    )


def _offer_keys(api: Api, object_ids: list[str]) -> list[tuple[str, bool]]:
    out = []
    for offer in api.runtime.offer_set.offers.values():
        for oid in object_ids:
            out.append((f"{offer.name}:{oid}", offer.head(f"objects/{oid}") is not None))
    return out


def test_destruction_circuit(api: Api, clock: Clock) -> None:
    archivist = api.token("archivist")
    clock.set(date(2015, 3, 1))
    due = _units(api, api.deposit(dossier_sip("MSG-DUE", title="Factures 2013")))
    later = _units(api, api.deposit(dossier_sip("MSG-LATER", rule="APP-10Y",
                                                title="Marchés 2013")))
    sealed = _units(api, api.deposit(dossier_sip(
        "MSG-HOLDRULE", title="Factures contentieuses",
        extra_rules=[RuleSpec("HoldRule", "HOL-1")],
    )))
    api_held = _units(api, api.deposit(dossier_sip("MSG-APIHOLD", title="Factures auditées")))
    kept = _units(api, api.deposit(dossier_sip("MSG-KEEP", final_action="Keep",
                                               title="Budgets 2013")))
    response = api.client.post(
        "/api/v1/holds", headers=api.auth(archivist),
        json={"unit_ids": [api_held["Factures auditées"]], "reason": "Contrôle CRC"},
    )
    assert response.status_code == 201, response.text
    hold_id = response.json()["id"]

    # Not yet due: an empty list is still a list.
    clock.set(date(2018, 6, 1))
    response = api.client.post("/api/v1/disposal-lists", headers=api.auth(archivist),
                               json={"final_action": "Destroy"})
    assert response.status_code == 201, response.text
    assert response.json()["units"] == []
    assert response.json()["state"] == "draft"

    # Five years later: exactly the due, unheld units (the file and its pieces).
    clock.set(date(2021, 6, 20))
    response = api.client.post("/api/v1/disposal-lists", headers=api.auth(archivist),
                               json={"final_action": "Destroy", "producer": "FINANCES"})
    assert response.status_code == 201, response.text
    body = response.json()
    list_id = body["id"]
    assert body["final_action"] == "Destroy"
    assert sorted(body["units"]) == sorted(due.values())
    for excluded in (later, sealed, api_held, kept):
        assert not set(excluded.values()) & set(body["units"])

    csv_text = api.client.get(f"/api/v1/disposal-lists/{list_id}/bordereau?format=csv",
                              headers=api.auth(archivist)).text
    assert "Service producteur" in csv_text
    assert "FINANCES" in csv_text
    assert "APP-5Y" in csv_text
    pdf = api.client.get(f"/api/v1/disposal-lists/{list_id}/bordereau",
                         headers=api.auth(archivist))
    assert pdf.status_code == 200
    assert pdf.content.startswith(b"%PDF")

    # Four eyes: the archivist who built the list cannot approve it; another one does.
    response = api.client.post(f"/api/v1/disposal-lists/{list_id}/approve",
                               headers=api.auth(archivist), json={"comment": "Vu, conforme"})
    assert response.status_code == 409, response.text
    assert response.json()["code"] == "disposal.four_eyes"
    second = api.token("archivist")
    response = api.client.post(f"/api/v1/disposal-lists/{list_id}/approve",
                               headers=api.auth(second), json={"comment": "Vu, conforme"})
    assert response.json()["state"] == "approved", response.text

    # No visa, no destruction.
    response = api.client.post(f"/api/v1/disposal-lists/{list_id}/execute",
                               headers=api.auth(archivist))
    assert response.status_code == 409, response.text
    assert response.json()["code"] == "disposal.execution_refused"

    # A visa dated in the future is refused; a real one is recorded.
    assert _visa(api, list_id, archivist, when="2030-01-01").status_code == 422
    response = _visa(api, list_id, archivist)
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "visa_recorded"

    with api.runtime.sessions() as session:
        object_ids = list(session.scalars(
            select(DataObject.id).join(ArchiveUnit, ArchiveUnit.data_object_group_id
                                       == DataObject.group_id)
            .where(ArchiveUnit.id.in_(list(due.values())))
        ))
    assert len(object_ids) == 2
    assert all(present for _, present in _offer_keys(api, object_ids))

    response = api.client.post(f"/api/v1/disposal-lists/{list_id}/execute",
                               headers=api.auth(archivist))
    assert response.status_code == 200, response.text
    executed = response.json()
    assert executed["state"] == "executed"
    assert executed["certificate_url"]

    # Gone from every offer; 410 for the content; units destroyed; tombstones kept.
    assert not any(present for _, present in _offer_keys(api, object_ids))
    for oid in object_ids:
        gone = api.client.get(f"/api/v1/objects/{oid}/content", headers=api.auth(archivist))
        assert gone.status_code == 410
        # The 410 names the certificate that attests the destruction.
        assert gone.json()["code"] == "catalog.object_destroyed"
        assert gone.json()["disposal_list"] == list_id
        assert gone.json()["disposal_list_reference"] == executed["reference"]
        assert gone.json()["certificate"] == f"/api/v1/disposal-lists/{list_id}/certificate"
    with api.runtime.sessions() as session:
        statuses = set(session.scalars(
            select(ArchiveUnit.status).where(ArchiveUnit.id.in_(list(due.values())))))
        assert statuses == {"destroyed"}
        stones = session.scalars(select(Tombstone).where(Tombstone.list_id == list_id)).all()
        assert {t.object_id for t in stones if t.kind == "object"} == set(object_ids)
        assert {t.unit_id for t in stones if t.kind == "unit"} == set(due.values())
        assert all(t.sha512 and t.list_reference for t in stones if t.kind == "object")
        others = set(session.scalars(select(ArchiveUnit.status).where(
            ArchiveUnit.id.in_([*later.values(), *sealed.values(), *api_held.values()]))))
        assert others == {"active"}

    certificate = api.client.get(f"/api/v1/disposal-lists/{list_id}/certificate",
                                 headers=api.auth(archivist))
    assert certificate.status_code == 200
    assert certificate.headers["content-type"] == "application/pdf"
    assert certificate.content.startswith(b"%PDF")
    # The certificate is an archived record: reading it is journaled like any read.
    assert any(
        (e.payload or {}).get("via") == "certificate"
        for e in events(api, "access.object_read")
    )

    # The journal tells the story in order, each destruction with its object's SHA-512.
    story = [t for t in event_types(api, "disposal.") if t not in (
        "disposal.execution_refused", "disposal.execution_started", "disposal.unit_destroyed")]
    assert story == [
        "disposal.list_created", "disposal.list_created", "disposal.approved",
        "disposal.visa_recorded", "disposal.object_destroyed", "disposal.object_destroyed",
        "disposal.executed", "disposal.certificate_archived",
    ]
    destroyed = events(api, "disposal.object_destroyed")
    assert {e.object_id for e in destroyed} == set(object_ids)
    assert all(len(bytes(e.leaf)) > 0 and b"sha512" in bytes(e.leaf) for e in destroyed)
    assert events(api, "hold.placed")

    # The SEDA ArchiveDestructionNotification is archived and valid against the official XSD.
    require((XSD_DIR / "2.2" / "seda-2.2-main.xsd").is_file(), "official SEDA XSDs not found")
    assert len(executed["notification_object_ids"]) == 1
    xml = _read_object(api, executed["notification_object_ids"][0])
    root = seda.safe_parse(xml)
    assert seda.XsdValidator(XSD_DIR).validate(root, "2.2") == []
    assert b"AD93-2021-042" in xml
    for uid in due.values():
        assert uid.encode() in xml

    # Executing again changes nothing; the API hold can be lifted.
    again = api.client.post(f"/api/v1/disposal-lists/{list_id}/execute",
                            headers=api.auth(archivist))
    assert again.status_code == 200
    assert again.json()["state"] == "executed"
    assert len(events(api, "disposal.object_destroyed")) == 2
    lifted = api.client.delete(f"/api/v1/holds/{hold_id}", headers=api.auth(archivist))
    assert lifted.status_code == 200
    assert lifted.json()["active"] is False


def _read_object(api: Api, object_id: str) -> bytes:
    from sae.storage.models import ObjectCopy

    with api.runtime.sessions() as session:
        obj = session.get(DataObject, object_id)
        assert obj is not None
        assert obj.sha512 is not None
        copies = [(api.runtime.offer_set.offers[c.offer], c.key) for c in session.scalars(
            select(ObjectCopy).where(ObjectCopy.object_id == object_id))]
        return b"".join(open_verified(copies, obj.sha512, expected_size=obj.size))


def _approved_and_visaed(api: Api, token: str, clock: Clock) -> str:
    clock.set(date(2021, 6, 20))
    response = api.client.post("/api/v1/disposal-lists", headers=api.auth(token),
                               json={"final_action": "Destroy"})
    list_id = str(response.json()["id"])
    approved = api.client.post(f"/api/v1/disposal-lists/{list_id}/approve",
                               headers=api.auth(api.token("archivist")), json={"comment": "ok"})
    assert approved.status_code == 200, approved.text
    assert _visa(api, list_id, token).status_code == 200
    return list_id


def test_execution_refused_when_a_unit_changed_or_became_held(api: Api, clock: Clock) -> None:
    archivist = api.token("archivist")
    clock.set(date(2015, 3, 1))
    units = _units(api, api.deposit(dossier_sip("MSG-A", pieces=1)))
    list_id = _approved_and_visaed(api, archivist, clock)
    response = api.client.post("/api/v1/holds", headers=api.auth(archivist),
                               json={"unit_ids": [units["Factures 2013"]],
                                     "reason": "Contentieux", "until": "2030-01-01"})
    assert response.status_code == 201
    refused = api.client.post(f"/api/v1/disposal-lists/{list_id}/execute",
                              headers=api.auth(archivist))
    assert refused.status_code == 409
    assert refused.json()["code"] == "disposal.execution_refused"
    assert {p["reason"] for p in refused.json()["problems"]} == {"held"}
    with api.runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(ArchiveUnit).where(
            ArchiveUnit.status == "destroyed")) == 0
        state = session.get(DisposalList, list_id)
        assert state is not None
        assert state.state == "visa_recorded"

    # Lifting the hold is not enough: a rule changed since approval also refuses.
    api.client.delete(f"/api/v1/holds/{response.json()['id']}", headers=api.auth(archivist))
    api.load_rules(
        "RuleId,RuleType,RuleValue,RuleDescription,RuleDuration,RuleMeasurement\n"
        "APP-5Y,AppraisalRule,Dossiers 5 ans,,6,YEAR\n"
        "APP-10Y,AppraisalRule,Dossiers 10 ans,,10,YEAR\n"
        "ACC-00001,AccessRule,Libre,,0,YEAR\nACC-25Y,AccessRule,25,,25,YEAR\n"
        "ACC-50Y,AccessRule,50,,50,YEAR\nHOL-1,HoldRule,Gel,,,\n"
    )
    refused = api.client.post(f"/api/v1/disposal-lists/{list_id}/execute",
                              headers=api.auth(archivist))
    assert refused.status_code == 409
    assert {p["reason"] for p in refused.json()["problems"]} == {"changed"}


def test_two_concurrent_executions_destroy_once(api: Api, clock: Clock) -> None:
    archivist = api.token("archivist")
    clock.set(date(2015, 3, 1))
    for n in range(3):
        _units(api, api.deposit(dossier_sip(f"MSG-C{n}", pieces=2, title=f"Lot {n}")))
    list_id = _approved_and_visaed(api, archivist, clock)
    principal = Principal(token_id="t", role="archivist", label="test")
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def run() -> None:
        barrier.wait()
        try:
            d = execution.execute_list(_context(api.runtime), list_id, principal)
            outcomes.append(d.state)
        except ExecutionInProgress:
            outcomes.append("in_progress")

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert "executed" in outcomes
    assert len(outcomes) == 2
    assert len(events(api, "disposal.object_destroyed")) == 6
    assert len(events(api, "disposal.executed")) == 1
    with api.runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Tombstone).where(
            Tombstone.kind == "object")) == 6


def test_permanent_keeping(api: Api, clock: Clock) -> None:
    archivist = api.token("archivist")
    clock.set(date(2015, 3, 1))
    kept = _units(api, api.deposit(dossier_sip("MSG-K", final_action="Keep", pieces=1,
                                               title="Budgets 2013")))
    clock.set(date(2021, 6, 20))
    response = api.client.post("/api/v1/disposal-lists", headers=api.auth(archivist),
                               json={"final_action": "Keep"})
    list_id = response.json()["id"]
    assert sorted(response.json()["units"]) == sorted(kept.values())
    # A Keep list needs approval only, no visa.
    api.client.post(f"/api/v1/disposal-lists/{list_id}/approve", headers=api.auth(archivist),
                    json={"comment": "Conservation définitive"})
    response = api.client.post(f"/api/v1/disposal-lists/{list_id}/execute",
                               headers=api.auth(archivist))
    assert response.status_code == 200, response.text
    with api.runtime.sessions() as session:
        assert set(session.scalars(select(ArchiveUnit.status).where(
            ArchiveUnit.id.in_(list(kept.values()))))) == {"permanent"}
        object_id = session.scalar(
            select(DataObject.id).join(ArchiveUnit, ArchiveUnit.data_object_group_id
                                       == DataObject.group_id)
            .where(ArchiveUnit.id.in_(list(kept.values()))))
    for offer in api.runtime.offer_set.offers.values():
        head = offer.head(f"objects/{object_id}")
        assert head is not None
        assert head.retain_until == PERMANENT_RETAIN_UNTIL
        # The description of its transfer is kept as long.
        with api.runtime.sessions() as session:
            transfer_id = session.scalar(
                select(DataObject.transfer_id).where(DataObject.id == object_id))
        record = offer.head(transfer_record_key(str(transfer_id)))
        assert record is not None
        assert record.retain_until == PERMANENT_RETAIN_UNTIL
    assert events(api, "retention.permanent")
    # Nothing permanent is ever proposed again.
    again = api.client.post("/api/v1/disposal-lists", headers=api.auth(archivist),
                            json={"final_action": "Destroy"})
    assert again.json()["units"] == []


def test_roles_and_unknown_list(api: Api, clock: Clock, tmp_path: Path) -> None:
    auditor = api.token("auditor")
    depositor = api.token("depositor", ["FINANCES"])
    assert api.client.post("/api/v1/disposal-lists", headers=api.auth(depositor),
                           json={"final_action": "Destroy"}).status_code == 403
    assert api.client.post("/api/v1/disposal-lists", headers=api.auth(auditor),
                           json={"final_action": "Destroy"}).status_code == 403
    assert api.client.get("/api/v1/disposal-lists/nope",
                          headers=api.auth(auditor)).status_code == 404
    assert api.client.post("/api/v1/holds", headers=api.auth(auditor),
                           json={"unit_ids": ["x"], "reason": "r"}).status_code == 403
    assert api.client.post("/api/v1/holds", headers=api.auth(),
                           json={"unit_ids": ["x"], "reason": "r"}).status_code == 404


@pytest.mark.parametrize("final_action", ["Remove"])
def test_bad_final_action(api: Api, final_action: str) -> None:
    response = api.client.post("/api/v1/disposal-lists", headers=api.auth(),
                               json={"final_action": final_action})
    assert response.status_code == 422


def test_a_unit_held_during_the_execution_is_not_destroyed(
    api: Api, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The per-unit guard, behind the up-front re-check (a hold placed while executing)."""
    archivist = api.token("archivist")
    clock.set(date(2015, 3, 1))
    units = _units(api, api.deposit(dossier_sip("MSG-RACE", pieces=1)))
    list_id = _approved_and_visaed(api, archivist, clock)
    piece = units["Factures 2013 — pièce 0"]
    assert api.client.post("/api/v1/holds", headers=api.auth(archivist),
                           json={"unit_ids": [piece], "reason": "Contentieux"}).status_code == 201
    # As if the hold had landed after the up-front check.
    monkeypatch.setattr(execution, "recheck", lambda session, d: [])
    response = api.client.post(f"/api/v1/disposal-lists/{list_id}/execute",
                               headers=api.auth(archivist))
    assert response.status_code == 200, response.text
    lines = {ln["unit_id"]: ln for ln in response.json()["lines"]}
    assert lines[piece]["state"] == "excluded"
    # Its file stays too: a file whose piece stays is not destroyed.
    assert lines[units["Factures 2013"]]["state"] == "excluded"
    with api.runtime.sessions() as session:
        for uid in units.values():
            unit = session.get(ArchiveUnit, uid)
            assert unit is not None
            assert unit.status == "active"
    assert len(events(api, "disposal.line_excluded")) == 2


def test_interrupted_execution_resumes_and_destroys_each_object_once(
    api: Api, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    archivist = api.token("archivist")
    clock.set(date(2015, 3, 1))
    for n in range(2):
        _units(api, api.deposit(dossier_sip(f"MSG-R{n}", pieces=1, title=f"Lot {n}")))
    list_id = _approved_and_visaed(api, archivist, clock)
    offer = next(iter(api.runtime.offer_set.offers.values()))
    real_delete = offer.delete
    calls = {"n": 0}

    def flaky(key: str) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            from sae.storage.errors import OfferUnavailable

            raise OfferUnavailable(offer.name, "disk went away")
        real_delete(key)

    monkeypatch.setattr(offer, "delete", flaky)
    stopped = api.client.post(f"/api/v1/disposal-lists/{list_id}/execute",
                              headers=api.auth(archivist))
    assert stopped.status_code == 409, stopped.text
    assert stopped.json()["code"] == "disposal.storage_refused"
    assert len(events(api, "disposal.object_destroyed")) == 1
    with api.runtime.sessions() as session:
        state = session.get(DisposalList, list_id)
        assert state is not None
        assert state.state == "executing"
        assert state.execution_token is None  # released: resumable at once
    resumed = api.client.post(f"/api/v1/disposal-lists/{list_id}/execute",
                              headers=api.auth(archivist))
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["state"] == "executed"
    assert len(events(api, "disposal.object_destroyed")) == 2
    assert len(events(api, "disposal.executed")) == 1


def test_two_lists_built_at_once_never_share_a_unit(api: Api, clock: Clock) -> None:
    archivist = api.token("archivist")
    clock.set(date(2015, 3, 1))
    due = _units(api, api.deposit(dossier_sip("MSG-BUILD", pieces=3)))
    clock.set(date(2021, 6, 20))
    barrier = threading.Barrier(2)
    bodies: list[dict[str, Any]] = []

    def build() -> None:
        barrier.wait()
        response = api.client.post("/api/v1/disposal-lists", headers=api.auth(archivist),
                                   json={"final_action": "Destroy"})
        assert response.status_code == 201, response.text
        bodies.append(response.json())

    threads = [threading.Thread(target=build) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(bodies) == 2
    assert bodies[0]["reference"] != bodies[1]["reference"]
    assert sorted(bodies[0]["units"] + bodies[1]["units"]) == sorted(due.values())
