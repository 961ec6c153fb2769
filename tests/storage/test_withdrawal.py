"""A transfer deposited by mistake is withdrawn within its quarantine: every copy, journaled."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import select

from sae.catalog.models import ArchiveUnit, DataObject
from sae.db import transaction, utcnow
from sae.ingest.models import Transfer
from sae.ingest.transfer_record import transfer_record_key
from sae.journal.models import Event
from sae.storage.errors import OfferUnavailable
from sae.storage.fsck import reconcile
from sae.storage.models import MetadataCopy, ObjectCopy
from tests.conftest import Api
from tests.sipfactory import build_zip, simple_sip

REASON = "Dossier d'un autre service versé par erreur"


def _deposit(api: Api, message_id: str = "MSG-OOPS") -> dict[str, Any]:
    response = api.deposit(build_zip(simple_sip(message_id)))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _withdraw(api: Api, transfer_id: str, token: str | None = None) -> Any:
    return api.client.post(
        f"/api/v1/transfers/{transfer_id}/withdrawal",
        json={"reason": REASON},
        headers=api.auth(token or api.token("archivist")),
    )


def _present(api: Api, object_id: str) -> list[bool]:
    offers = api.runtime.offer_set.offers
    return [offers[name].head(f"objects/{object_id}") is not None for name in ("site-a", "site-b")]


def _hold(api: Api, unit_id: str, token: str) -> Any:
    hold = api.client.post(
        "/api/v1/holds",
        json={"unit_ids": [unit_id], "reason": "contentieux"},
        headers=api.auth(token),
    )
    assert hold.status_code == 201, hold.text
    return hold


def _events(api: Api, type_: str) -> list[Event]:
    with transaction(api.runtime.sessions) as session:
        return list(session.scalars(select(Event).where(Event.type == type_)))


def test_an_archivist_withdraws_a_transfer_within_its_quarantine(two_sites: Api) -> None:
    reply = _deposit(two_sites)
    transfer_id, object_id = reply["transfer_id"], reply["objects"][0]["id"]
    assert _present(two_sites, object_id) == [True, True]

    response = _withdraw(two_sites, transfer_id)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "WITHDRAWN"
    assert (body["units"], body["objects"]) == (2, 1)
    record = transfer_record_key(transfer_id)
    # The object's copies, then those of the transfer's description, on both sites.
    assert [(c["offer"], c["key"]) for c in body["copies_deleted"]] == [
        ("site-a", f"objects/{object_id}"),
        ("site-b", f"objects/{object_id}"),
        ("site-a", record),
        ("site-b", record),
    ]

    # Gone from every offer and from the catalogue's copies; the bytes are 410.
    assert _present(two_sites, object_id) == [False, False]
    assert [o.head(record) for o in two_sites.runtime.strategy_offers] == [None, None]
    with transaction(two_sites.runtime.sessions) as session:
        assert session.scalar(sa.select(sa.func.count(ObjectCopy.id))) == 0
        records = sa.select(sa.func.count(MetadataCopy.id)).where(MetadataCopy.kind == "transfer")
        assert session.scalar(records) == 0
        assert session.get(Transfer, transfer_id).status == "WITHDRAWN"  # type: ignore[union-attr]
        units = list(
            session.scalars(select(ArchiveUnit).where(ArchiveUnit.transfer_id == transfer_id))
        )
        assert {u.status for u in units} == {"withdrawn"}
        assert all(u.content_xml == b"" for u in units)
        assert session.get(DataObject, object_id).status == "withdrawn"  # type: ignore[union-attr]
    content = two_sites.client.get(f"/api/v1/objects/{object_id}/content", headers=two_sites.auth())
    assert content.status_code == 410

    # Journaled: who, why, which copies, with the object's SHA-512.
    (started,) = _events(two_sites, "transfer.withdrawal_started")
    (done,) = _events(two_sites, "transfer.withdrawn")
    assert started.payload["reason"] == REASON
    assert done.transfer_id == transfer_id
    assert done.payload["reason"] == REASON
    assert done.actor.startswith("user:")  # the account behind the token (0016_accounts)
    assert done.digests == {object_id: reply["objects"][0]["sha512"]}
    assert len(done.payload["copies_deleted"]) == 4

    # The corrected transfer may be sent again under the same MessageIdentifier.
    assert two_sites.deposit(build_zip(simple_sip("MSG-OOPS"))).status_code == 201
    # Nothing left for reconciliation to find.
    with transaction(two_sites.runtime.sessions) as session:
        assert reconcile(session, two_sites.runtime.offer_set) == []
    # Withdrawn once: not twice.
    again = _withdraw(two_sites, transfer_id)
    assert again.status_code == 409
    assert again.json()["code"] == "transfer.withdrawal_refused"


def test_past_the_quarantine_only_a_disposal_can_remove_it(two_sites: Api) -> None:
    reply = _deposit(two_sites)
    with transaction(two_sites.runtime.sessions) as session:
        session.execute(
            sa.update(ObjectCopy).values(quarantine_ends_at=utcnow() - timedelta(seconds=1))
        )
    response = _withdraw(two_sites, reply["transfer_id"])
    assert response.status_code == 409, response.text
    assert response.json()["code"] == "transfer.withdrawal_refused"
    assert "past the quarantine window" in response.json()["detail"]
    assert _present(two_sites, reply["objects"][0]["id"]) == [True, True]
    assert _events(two_sites, "transfer.withdrawal_started") == []


def test_an_offer_whose_window_is_shorter_refuses_before_anything_is_deleted(
    two_sites: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The catalogue recorded a day of quarantine; the offer has been set to none since."""
    reply = _deposit(two_sites)
    monkeypatch.setattr(two_sites.runtime.offer_set.offers["site-b"], "quarantine_days", 0)
    response = _withdraw(two_sites, reply["transfer_id"])
    assert response.status_code == 409, response.text
    assert "site-b" in response.json()["detail"]
    assert _present(two_sites, reply["objects"][0]["id"]) == [True, True]
    with transaction(two_sites.runtime.sessions) as session:
        assert session.get(Transfer, reply["transfer_id"]).status == "OK"  # type: ignore[union-attr]


def test_a_held_unit_is_not_withdrawn(two_sites: Api) -> None:
    reply = _deposit(two_sites)
    archivist = two_sites.token("archivist")
    _hold(two_sites, reply["units"][0]["id"], archivist)
    response = _withdraw(two_sites, reply["transfer_id"], archivist)
    assert response.status_code == 409
    assert "legal hold" in response.json()["detail"]
    assert _present(two_sites, reply["objects"][0]["id"]) == [True, True]


def test_a_lifted_hold_no_longer_keeps_it(two_sites: Api) -> None:
    reply = _deposit(two_sites)
    archivist = two_sites.token("archivist")
    hold = _hold(two_sites, reply["units"][0]["id"], archivist)
    lifted = two_sites.client.delete(
        f"/api/v1/holds/{hold.json()['id']}", headers=two_sites.auth(archivist)
    )
    assert lifted.status_code in (200, 204), lifted.text
    assert _withdraw(two_sites, reply["transfer_id"], archivist).status_code == 200


def test_only_archivists_withdraw_and_a_refused_transfer_has_nothing_to_withdraw(
    two_sites: Api,
) -> None:
    reply = _deposit(two_sites)
    for role in ("depositor", "auditor", "reader"):
        token = two_sites.token(role, ["URBANISME"] if role == "depositor" else None)
        assert _withdraw(two_sites, reply["transfer_id"], token).status_code == 403
    assert _present(two_sites, reply["objects"][0]["id"]) == [True, True]
    refused = two_sites.deposit(b"not a zip at all")
    assert refused.status_code in (400, 415, 422)
    missing = _withdraw(two_sites, "00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404
    short = two_sites.client.post(
        f"/api/v1/transfers/{reply['transfer_id']}/withdrawal",
        json={"reason": ""},
        headers=two_sites.auth(two_sites.token("archivist")),
    )
    assert short.status_code == 422


def test_an_offer_failing_half_way_is_finished_by_asking_again(
    two_sites: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    reply = _deposit(two_sites)
    transfer_id, object_id = reply["transfer_id"], reply["objects"][0]["id"]
    site_b = two_sites.runtime.offer_set.offers["site-b"]

    def down(key: str) -> None:
        raise OfferUnavailable("site-b", "connection refused (simulated)")

    monkeypatch.setattr(site_b, "delete", down)
    response = _withdraw(two_sites, transfer_id)
    assert response.status_code == 503, response.text
    assert response.json()["code"] == "transfer.withdrawal_incomplete"
    assert _present(two_sites, object_id) == [False, True]
    with transaction(two_sites.runtime.sessions) as session:
        assert session.get(Transfer, transfer_id).status == "WITHDRAWING"  # type: ignore[union-attr]
    monkeypatch.undo()
    response = _withdraw(two_sites, transfer_id)
    assert response.status_code == 200, response.text
    assert _present(two_sites, object_id) == [False, False]
    record = transfer_record_key(transfer_id)
    assert [o.head(record) for o in two_sites.runtime.strategy_offers] == [None, None]
    assert len(_events(two_sites, "transfer.withdrawal_started")) == 1
    assert len(_events(two_sites, "transfer.withdrawn")) == 1


def test_a_transfer_with_nothing_stored_has_the_same_window_from_its_reception(
    two_sites: Api,
) -> None:
    from tests.sipfactory import SipSpec, UnitSpec

    def metadata_only(message_id: str) -> str:
        spec = SipSpec(
            message_id=message_id,
            producer="URBANISME",
            transferring="URBANISME",
            files=[],
            units=[UnitSpec(id="AU-paper", title="Registre papier (description seule)")],
        )
        response = two_sites.deposit(build_zip(spec))
        assert response.status_code == 201, response.text
        transfer_id: str = response.json()["transfer_id"]
        return transfer_id

    recent = metadata_only("MSG-META-1")
    assert _withdraw(two_sites, recent).status_code == 200
    old = metadata_only("MSG-META-2")
    with transaction(two_sites.runtime.sessions) as session:
        session.execute(
            sa.update(Transfer)
            .where(Transfer.id == old)
            .values(received_at=utcnow() - timedelta(days=2))
        )
    refused = _withdraw(two_sites, old)
    assert refused.status_code == 409
    assert "after reception is over" in refused.json()["detail"]
