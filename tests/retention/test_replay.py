"""Every retention change of state, replayed from the journal into an empty catalogue (issue 17).

On database A, through the API as an archivist would: deposits, a referential version that
changes a rule in use (units recomputed) and one refused below the minimum, holds placed and
lifted, a list rejected, a destruction list through approval, a refused execution, the visa
(one unit excluded), a hold that stops the execution and its lifting, the execution
(certificate), a permanent-keeping list executed and transferred (refused, acknowledged with
copies locked, then purged). A's leaves are then replayed in order into a fresh database B with
``sae.recovery.replay.apply`` — the transfers' catalogue rows come from their descriptions on
the offer (``transfers/<id>.zip``), standing in for the ingest's own replay — and B must equal A:
tables, API shapes, certificate bytes, 410 for destroyed objects.

The clock ticks at every reading, so a replay that used the leaf's time instead of the row's, or
that dropped a key, shows; ``test_each_needed_key`` drops each key a replay needs, one at a
time, and requires the replay to refuse or B to differ.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from sae.access.service import check_read_access
from sae.auth.service import SYSTEM
from sae.catalog.errors import ObjectDestroyed
from sae.catalog.models import ArchiveUnit, DataObject
from sae.catalog.records import rows_from_record
from sae.catalog.rows import write_catalogue
from sae.config import load_settings
from sae.ingest.transfer_record import (
    TransferRecordFiles,
    read_transfer_record,
    transfer_record_key,
)
from sae.journal.models import Event
from sae.recovery.replay import NO_STATE, REPLAYS, LeafEvent, ReplayContext, apply, load_all
from sae.retention import api as retention_api
from sae.retention import dates
from sae.retention.disposal import bordereau_document
from sae.retention.errors import ReplayMismatch
from sae.retention.models import (
    DisposalLine,
    DisposalList,
    Hold,
    HoldUnit,
    Rule,
    Tombstone,
    UnitComputedRule,
)
from sae.retention.schemas import OutgoingTransferOut
from sae.storage.base import StorageOffer
from sae.storage.models import ObjectCopy
from sae.storage.service import open_verified
from tests.conftest import TEST_RULES_CSV, XSD_DIR, Api, Database, _open_database
from tests.retention.helpers import Clock, dossier_sip
from tests.retention.test_outgoing import _reply

load_all()
#: The types this domain replays (or declares stateless): what the test replays of A's journal.
RETENTION = frozenset(
    {t for t, fn in REPLAYS.items() if fn.__module__ == "sae.retention.replay"}
    | {"rules.minimum_duration_alert"}
)

#: For each retention event, the keys of its payload its replay needs to be exact (digests and
#: counts it only checks are not listed: dropping one makes the replay say so in its notes).
NEEDED: dict[str, list[str]] = {
    "rules.imported": ["referential", "updated_at", "added", "changed", "removed"],
    "rules.end_dates_recomputed": ["rules", "computed_at", "units"],
    "hold.placed": ["hold_id", "reason", "owner", "until", "units", "created_at", "covered"],
    "hold.lifted": ["hold_id", "lifted_at"],
    "disposal.list_created": [
        "list_id",
        "reference",
        "final_action",
        "producer",
        "due_before",
        "units",
        "sampled",
        "created_at",
        "population",
    ],
    "disposal.submitted": ["list_id", "submitted_at"],
    "disposal.approved": ["list_id", "comment", "decided_at"],
    "disposal.rejected": ["list_id", "comment", "decided_at"],
    "disposal.visa_recorded": [
        "list_id",
        "visa_reference",
        "decision_date",
        "excluded",
        "visa_recorded_at",
    ],
    "disposal.execution_started": ["list_id"],
    "disposal.execution_refused": ["list_id"],
    "disposal.line_excluded": ["list_id", "reason", "done_at"],
    "disposal.object_destroyed": ["list_id", "destroyed_at"],
    "disposal.unit_destroyed": ["list_id", "destroyed_at"],
    "retention.permanent": ["list_id", "sampled", "done_at"],
    "disposal.executed": [
        "list_id",
        "destroyed_units",
        "kept_units",
        "excluded_units",
        "notifications",
        "executed_at",
    ],
    "disposal.certificate_archived": ["list_id"],
    "disposal.transfer_sent": [
        "list_id",
        "message_identifier",
        "archival_agency",
        "sip_sha512",
        "sip_size",
        "sent_at",
        "units",
    ],
    "disposal.transfer_refused": ["list_id", "reply_code"],
    "disposal.transfer_acknowledged": ["list_id", "reply_code", "reply_identifier"],
    "disposal.object_transferred": ["list_id", "destroyed_at"],
    "disposal.transfer_purged": [
        "list_id",
        "reply_code",
        "reply_identifier",
        "reply_object_id",
        "locked",
        "at",
        "destroyed_units",
    ],
}
VISA_PDF = b"%PDF-1.4\n% visa des Archives departementales\n%%EOF\n"


@dataclass
class TickingClock(Clock):
    """A clock that moves on by a millisecond at every reading: no two rows share a time, so
    a time taken from the wrong place shows."""

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


@dataclass
class Scene:
    """Database A after the acts, its journal's leaves, and the empty database B."""

    api: Api
    a: Database
    b: Database
    offer: StorageOffer
    leaves: list[bytes]
    records: dict[str, TransferRecordFiles]
    facts: dict[str, Any]


def _built(
    kind: str,
    tmp_path_factory: pytest.TempPathFactory,
    act: Callable[[Api, TickingClock], dict[str, Any]],
) -> Iterator[Scene]:
    """A database A where ``act`` did its acts through the API, A's leaves, and an empty B."""
    from fastapi.testclient import TestClient

    from sae.app import create_app

    a = _open_database(kind, tmp_path_factory.mktemp(f"replay-a-{kind}"))
    b = _open_database(kind, tmp_path_factory.mktemp(f"replay-b-{kind}"))
    patch = pytest.MonkeyPatch()
    clock = TickingClock(datetime(2015, 3, 1, 12, 0, tzinfo=UTC))
    patch.setattr("sae.db.utcnow", clock)
    data_dir: Path = tmp_path_factory.mktemp(f"replay-data-{kind}")
    settings = load_settings(
        data_dir=data_dir,
        database_url=a.url,
        seda_xsd_dir=XSD_DIR if (XSD_DIR / "2.2" / "seda-2.2-main.xsd").is_file() else None,
    )
    try:
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            api = Api(client, settings)
            facts = act(api, clock)
            with api.runtime.sessions() as session:
                leaves = [
                    bytes(leaf)
                    for leaf in session.scalars(select(Event.leaf).order_by(Event.leaf_index))
                ]
                transfers = list(
                    session.scalars(
                        select(Event.transfer_id).where(Event.type == "ingest.accepted")
                    )
                )
            offer = next(iter(api.runtime.offer_set.offers.values()))
            records = {
                tid: read_transfer_record(b"".join(offer.get(transfer_record_key(tid))))
                for tid in transfers
                if tid is not None
            }
            yield Scene(api, a, b, offer, leaves, records, facts)
    finally:
        patch.undo()
        a.close()
        b.close()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def scene(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Scene]:
    """Every retention act, once per database kind."""
    yield from _built(request.param, tmp_path_factory, _act)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def large_scene(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Scene]:
    """A file of 1,000 pieces recomputed and listed, and sampled social files destroyed."""
    yield from _built(request.param, tmp_path_factory, _act_large)


def _units(response: Any) -> dict[str, str]:
    assert response.status_code == 201, response.text
    return {u["title"]: u["id"] for u in response.json()["units"]}


def _ok(response: Any, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


def _act(api: Api, clock: TickingClock) -> dict[str, Any]:
    """Every retention act, through the API."""
    api.load_rules(TEST_RULES_CSV)
    h = api.auth(api.token("archivist"))
    second = api.auth(api.token("archivist"))  # four eyes: another archivist approves
    post = api.client.post
    clock.set(date(2015, 3, 1))
    due = _units(api.deposit(dossier_sip("MSG-DUE", title="Factures 2013", pieces=3)))
    later = _units(api.deposit(dossier_sip("MSG-LATER", rule="APP-10Y", title="Marchés 2013")))
    held = _units(api.deposit(dossier_sip("MSG-HELD", title="Factures auditées")))
    _units(api.deposit(dossier_sip("MSG-RH", producer="RH", title="Paies 2013")))
    kept = _units(
        api.deposit(dossier_sip("MSG-KEEP", final_action="Keep", title="Délibérations 2013"))
    )

    # A new version: APP-10Y becomes 6 years (the "Marchés" units recomputed); one below the
    # minimum is refused and journaled as an alert.
    six = TEST_RULES_CSV.replace(
        "APP-10Y,AppraisalRule,Dossiers 10 ans,,10,YEAR", "APP-10Y,AppraisalRule,Dossiers 6,,6,YEAR"
    )
    assert six != TEST_RULES_CSV
    api.load_rules(six)
    short = TEST_RULES_CSV.replace('5 ans",5,YEAR', '5 ans",1,DAY')
    assert short != TEST_RULES_CSV
    refused = api.client.put(
        "/api/v1/rules", content=short.encode(), headers={**h, "Content-Type": "text/csv"}
    )
    assert refused.status_code == 422, refused.text

    # Holds: one kept until 2030, one placed and lifted.
    hold = _ok(
        post(
            "/api/v1/holds",
            headers=h,
            json={
                "unit_ids": [held["Factures auditées"]],
                "reason": "Contrôle CRC",
                "until": "2030-01-01",
            },
        ),
        201,
    )["id"]
    brief = _ok(
        post(
            "/api/v1/holds",
            headers=h,
            json={"unit_ids": [later["Marchés 2013 — pièce 0"]], "reason": "Vérification"},
        ),
        201,
    )["id"]
    _ok(api.client.delete(f"/api/v1/holds/{brief}", headers=h))

    clock.set(date(2021, 6, 20))
    # A list rejected.
    rh = _ok(
        post(
            "/api/v1/disposal-lists", headers=h, json={"final_action": "Destroy", "producer": "RH"}
        ),
        201,
    )["id"]
    _ok(post(f"/api/v1/disposal-lists/{rh}/submit", headers=h, json={"comment": "à revoir"}))
    _ok(post(f"/api/v1/disposal-lists/{rh}/reject", headers=h, json={"comment": "trop tôt"}))

    # The destruction circuit.
    lst = _ok(
        post(
            "/api/v1/disposal-lists",
            headers=h,
            json={"final_action": "Destroy", "producer": "FINANCES"},
        ),
        201,
    )
    list_id = lst["id"]
    assert set(due.values()) | set(later.values()) == set(lst["units"])
    _ok(post(f"/api/v1/disposal-lists/{list_id}/submit", headers=h, json={"comment": ""}))
    _ok(post(f"/api/v1/disposal-lists/{list_id}/approve", headers=second, json={"comment": "Vu"}))
    early = post(f"/api/v1/disposal-lists/{list_id}/execute", headers=h)
    assert early.status_code == 409, early.text
    _ok(
        post(
            f"/api/v1/disposal-lists/{list_id}/visa",
            headers=h,
            files={"document": ("visa signé.pdf", VISA_PDF, "application/pdf")},
            data={
                "reference": "AD93-2021-042",
                "decision_date": "2021-06-15",
                "excluded": [due["Factures 2013 — pièce 2"]],
            },
        )
    )
    # A hold placed meanwhile stops the execution (the list goes back); lifted, it runs.
    stop = _ok(
        post(
            "/api/v1/holds",
            headers=h,
            json={"unit_ids": [later["Marchés 2013"]], "reason": "Recours"},
        ),
        201,
    )["id"]
    assert post(f"/api/v1/disposal-lists/{list_id}/execute", headers=h).status_code == 409
    _ok(api.client.delete(f"/api/v1/holds/{stop}", headers=h))
    executed = _ok(post(f"/api/v1/disposal-lists/{list_id}/execute", headers=h))
    assert executed["state"] == "executed"
    certificate = api.client.get(f"/api/v1/disposal-lists/{list_id}/certificate", headers=h)
    assert certificate.status_code == 200

    # Permanent keeping, transferred to the departmental archives.
    keep_id = _ok(post("/api/v1/disposal-lists", headers=h, json={"final_action": "Keep"}), 201)[
        "id"
    ]
    _ok(post(f"/api/v1/disposal-lists/{keep_id}/approve", headers=h, json={"comment": "AD"}))
    _ok(post(f"/api/v1/disposal-lists/{keep_id}/execute", headers=h))
    message = _ok(
        post(
            f"/api/v1/disposal-lists/{keep_id}/outgoing-transfer",
            headers=h,
            json={"archival_agency": "AD93"},
        ),
        201,
    )["message_identifier"]
    xml = {**h, "Content-Type": "application/xml"}
    reply = f"/api/v1/disposal-lists/{keep_id}/outgoing-transfer/reply"
    assert _ok(post(reply, headers=xml, content=_reply(message, "KO")))["state"] == "refused"
    offers = api.runtime.offer_set.offers.values()
    soon = datetime.now(UTC) + timedelta(days=2)
    for offer in offers:
        offer._clock = lambda: soon  # type: ignore[attr-defined]
    assert _ok(post(reply, headers=xml, content=_reply(message)))["locked"]
    for offer in offers:
        offer._clock = lambda: datetime(2106, 1, 1, tzinfo=UTC)  # type: ignore[attr-defined]
    assert len(_ok(post(reply, headers=xml, content=_reply(message)))["purged"]) == 2
    return {
        "lists": [rh, list_id, keep_id],
        "holds": [hold, brief, stop],
        "certificate": certificate.content,
        "kept": sorted(kept.values()),
    }


SAMPLED_RULES = """defaults: {type: AppraisalRule, measurement: YEAR}
rules:
  - {id: APP-SOCIAL, value: "Dossier d'aide sociale facultative", duration: 10,
     final_action: Sample, sampling: {first_year_kept: true, one_in: by_population},
     legal_reference: "AD Var CCAS 2015", confidence: secondary}
  - {id: APP-5Y, value: "5 ans", duration: 5}
  - {id: ACC-00001, type: AccessRule, value: libre, duration: 0}
"""
PIECES = 1_000


def _act_large(api: Api, clock: TickingClock) -> dict[str, Any]:
    """Large sets: a file of 1,000 pieces whose rule changes (1,001 units recomputed), listed
    and approved (1,001 lines fingerprinted); social files sampled at the commune's rate (1 in
    10 at 45,000 inhabitants) and the others destroyed."""
    h = {**api.auth(), "Content-Type": "application/yaml"}
    assert api.client.put("/api/v1/rules", content=SAMPLED_RULES.encode(), headers=h).is_success
    clock.set(date(2002, 1, 1))
    big = _units(api.deposit(dossier_sip("MSG-BIG", pieces=PIECES, title="Mandats 2013")))
    for n in range(12):
        api.deposit(
            dossier_sip(
                f"MSG-S{n}",
                rule="APP-SOCIAL",
                start=date(2001 + n % 3, 1 + n, 1),
                pieces=0,
                title=f"Dossier {n}",
                producer="CCAS",
            )
        )
    four = SAMPLED_RULES.replace('value: "5 ans", duration: 5', 'value: "4 ans", duration: 4')
    assert four != SAMPLED_RULES
    assert api.client.put("/api/v1/rules", content=four.encode(), headers=h).is_success
    clock.set(date(2020, 6, 1))
    h = api.auth()
    second = api.auth(api.token("archivist"))  # four eyes: another archivist approves
    post = api.client.post
    big_list = _ok(
        post(
            "/api/v1/disposal-lists",
            headers=h,
            json={"final_action": "Destroy", "producer": "FINANCES"},
        ),
        201,
    )
    assert len(big_list["units"]) == len(big) == PIECES + 1
    _ok(post(f"/api/v1/disposal-lists/{big_list['id']}/approve", headers=second, json={}))
    social = _ok(
        post(
            "/api/v1/disposal-lists",
            headers=h,
            json={"final_action": "Destroy", "producer": "CCAS"},
        ),
        201,
    )
    assert {ln["state"] for ln in social["lines"]} == {"proposed", "sampled"}
    _ok(post(f"/api/v1/disposal-lists/{social['id']}/approve", headers=second, json={}))
    _ok(
        post(
            f"/api/v1/disposal-lists/{social['id']}/visa",
            headers=h,
            files={"document": ("visa.pdf", VISA_PDF, "application/pdf")},
            data={"reference": "AD93-2020-007", "decision_date": "2020-05-15"},
        )
    )
    executed = _ok(post(f"/api/v1/disposal-lists/{social['id']}/execute", headers=h))
    states = {ln["state"] for ln in executed["lines"]}
    assert states == {"destroyed", "kept"}
    return {"lists": [big_list["id"], social["id"]]}


# --- replaying -----------------------------------------------------------------------------------


def _ingest(session: Session, files: TransferRecordFiles) -> None:
    """What the ingest's replay will do for an accepted transfer: its rows from its record."""
    transfer, rows, end_dates = rows_from_record(files.record, atr=files.atr)
    session.add(transfer)
    write_catalogue(session, rows)
    dates.store_computed(session, end_dates)


def _replay(
    scene: Scene,
    session: Session,
    alter: Callable[[LeafEvent], LeafEvent] | None = None,
) -> ReplayContext:
    """A's leaves in order into ``session`` (``alter``-ed first, for the tests of a leaf
    that lost a key or carries a wrong digest)."""
    ctx = ReplayContext(session=session, offer=scene.offer)
    for leaf in scene.leaves:
        event = LeafEvent.parse(leaf)
        if alter is not None:
            event = alter(event)
        if event.type == "ingest.accepted":
            assert event.transfer_id is not None
            _ingest(session, scene.records[event.transfer_id])
        elif event.type in RETENTION:
            apply(ctx, event)
    session.flush()
    return ctx


def _without(type_: str, key: str) -> Callable[[LeafEvent], LeafEvent]:
    def alter(event: LeafEvent) -> LeafEvent:
        if event.type != type_:
            return event
        return dataclasses.replace(
            event, payload={k: v for k, v in event.payload.items() if k != key}
        )

    return alter


def _rows(session: Session, model: type[Any], skip: tuple[str, ...] = ()) -> list[Any]:
    keys = [a.key for a in inspect(model).column_attrs if a.key not in skip]
    found = [tuple(getattr(row, key) for key in keys) for row in session.scalars(select(model))]
    return sorted(found, key=repr)


def _snapshot(session: Session) -> dict[str, Any]:
    """What a rebuild must give back: the retention tables, what they did to the catalogue,
    and the API's answers about rules, holds, lists and outgoing transfers."""
    lists = session.scalars(select(DisposalList).order_by(DisposalList.id)).all()
    return {
        "rules": _rows(session, Rule),
        "unit_computed_rules": _rows(session, UnitComputedRule),
        "holds": _rows(session, Hold),
        "hold_units": _rows(session, HoldUnit),
        # The execution's claim and lease are bookkeeping of a running executor.
        "disposal_lists": _rows(session, DisposalList, ("execution_started_at",)),
        "disposal_lines": _rows(session, DisposalLine, ("id",)),
        "tombstones": _rows(session, Tombstone, ("id",)),
        "units": sorted(
            session.execute(
                select(
                    ArchiveUnit.id,
                    ArchiveUnit.status,
                    ArchiveUnit.title,
                    ArchiveUnit.description,
                    ArchiveUnit.content_xml,
                    ArchiveUnit.search_text,
                )
            ).all()
        ),
        "objects": sorted(
            session.execute(select(DataObject.id, DataObject.status, DataObject.sha512)).all()
        ),
        "copies": sorted(
            session.execute(select(ObjectCopy.object_id, ObjectCopy.offer, ObjectCopy.key)).all()
        ),
        "api_holds": [
            retention_api._hold_out(session, h).model_dump(mode="json")
            for h in sorted(session.scalars(select(Hold.id)))
        ],
        "api_lists": [retention_api._list_out(session, d).model_dump(mode="json") for d in lists],
        "api_outgoing": [
            OutgoingTransferOut(list_id=d.id, **d.outgoing_transfer).model_dump(mode="json")
            for d in lists
            if d.outgoing_transfer
        ],
    }


def _snapshot_of_a(scene: Scene) -> dict[str, Any]:
    with scene.api.runtime.sessions() as session:
        return _snapshot(session)


# --- tests ---------------------------------------------------------------------------------------


def test_every_retention_event_is_in_the_scene(scene: Scene) -> None:
    """The scene journals every type this domain replays: the equality below covers them all."""
    journaled = {LeafEvent.parse(leaf).type for leaf in scene.leaves}
    assert sorted(RETENTION - journaled) == []
    assert set(NEEDED) == RETENTION - set(NO_STATE)


def test_rebuilt_catalogue_equals_the_original(scene: Scene) -> None:
    before = _snapshot_of_a(scene)
    with Session(scene.b.engine) as session:
        ctx = _replay(scene, session)
        after = _snapshot(session)
        assert ctx.notes == []
        for key in before:
            assert after[key] == before[key], key
        lists = {d["id"]: d for d in after["api_lists"]}
        assert {d["state"] for d in lists.values()} == {"rejected", "executed"}
        assert any(t[1] == "destroyed" for t in after["objects"])

        # The documents the API serves are the same bytes: the certificate and the visa are
        # records whose copies the rebuilt catalogue finds on the offer.
        destruction = session.get(DisposalList, scene.facts["lists"][1])
        assert destruction is not None
        assert destruction.certificate_object_id is not None
        for object_id, expected in (
            (destruction.certificate_object_id, scene.facts["certificate"]),
            (destruction.visa_object_id, VISA_PDF),
        ):
            obj = session.get(DataObject, object_id)
            assert obj is not None
            assert obj.sha512 is not None
            copies = session.scalars(
                select(ObjectCopy).where(ObjectCopy.object_id == object_id)
            ).all()
            offers = scene.api.runtime.offer_set.offers
            data = b"".join(
                open_verified(
                    [(offers[c.offer], c.key) for c in copies], obj.sha512, expected_size=obj.size
                )
            )
            assert data == expected

        # The bordereaux (made on request from the list) are the same bytes too.
        for list_id in scene.facts["lists"]:
            d = session.get(DisposalList, list_id)
            assert d is not None
            for fmt in ("pdf", "csv"):
                url = f"/api/v1/disposal-lists/{list_id}/bordereau?format={fmt}"
                served = scene.api.client.get(url, headers=scene.api.auth())
                assert served.status_code == 200
                again = scene.api.client.get(url, headers=scene.api.auth())
                assert again.content == served.content
                assert bordereau_document(session, d, fmt)[0] == served.content
                if fmt == "pdf":  # dated by the list, not by the clock of the request
                    assert d.created_at.strftime("D:%Y%m%d%H%M%S").encode() in served.content

        # Destroyed and transferred objects answer 410 after the rebuild.
        gone = session.scalars(select(DataObject).where(DataObject.status == "destroyed")).all()
        assert len(gone) >= 4
        for obj in gone:
            with pytest.raises(ObjectDestroyed):
                check_read_access(session, SYSTEM, obj)
        session.rollback()


@pytest.mark.parametrize("type_", sorted(NEEDED))
def test_each_needed_key(scene: Scene, type_: str) -> None:
    """Without any one of the keys its replay needs, the replay of ``type_`` refuses or the
    rebuilt catalogue differs from the original: no key is there for nothing, and a payload
    that lost one would be caught."""
    before = _snapshot_of_a(scene)
    unnoticed = []
    refusals = []
    for key in NEEDED[type_]:
        with Session(scene.b.engine) as session:
            try:
                _replay(scene, session, _without(type_, key))
            except ReplayMismatch as exc:
                refusals.append(exc.detail)
            else:
                if _snapshot(session) == before:
                    unnoticed.append(key)
            finally:
                session.rollback()
    assert unnoticed == []
    assert all(f"({type_})" in detail for detail in refusals), refusals


def test_a_digest_that_disagrees_stops_the_replay(scene: Scene) -> None:
    """A list whose lines would not come out the same (here: the journaled digest altered)
    stops the rebuild on its leaf."""

    def alter(event: LeafEvent) -> LeafEvent:
        if event.type != "disposal.list_created":
            return event
        return dataclasses.replace(event, payload={**event.payload, "lines_sha256": "0" * 64})

    with Session(scene.b.engine) as session:
        with pytest.raises(ReplayMismatch, match=r"\(disposal\.list_created\).*lines"):
            _replay(scene, session, alter)
        session.rollback()


def test_large_sets_replay_from_small_leaves(large_scene: Scene) -> None:
    """1,001 units recomputed and 1,001 lines fingerprinted come back equal from leaves that
    name the inputs, not the rows; sampling and the permanent keeping of the sampled files
    too."""
    events = [LeafEvent.parse(leaf) for leaf in large_scene.leaves]
    sizes = {e.type: len(e.leaf) for e in events if e.type in RETENTION}
    assert sizes["rules.end_dates_recomputed"] < 1_000
    assert sizes["disposal.approved"] < 1_000
    recomputed = [e for e in events if e.type == "rules.end_dates_recomputed"]
    assert recomputed[-1].payload["units"] >= PIECES + 1
    assert any(e.type == "retention.permanent" and e.payload["sampled"] for e in events)
    before = _snapshot_of_a(large_scene)
    with Session(large_scene.b.engine) as session:
        ctx = _replay(large_scene, session)
        after = _snapshot(session)
        session.rollback()
    assert ctx.notes == []
    for key in before:
        assert after[key] == before[key], key


def test_a_unit_the_rebuilt_catalogue_lacks_stops_the_replay(scene: Scene) -> None:
    """A transfer whose description was not replayed: the first leaf naming its units stops
    the replay, named, rather than writing rows about units that are not there."""
    first = next(
        e.transfer_id for e in map(LeafEvent.parse, scene.leaves) if e.type == "ingest.accepted"
    )

    def alter(event: LeafEvent) -> LeafEvent:
        if event.type == "ingest.accepted" and event.transfer_id == first:
            return dataclasses.replace(event, type="test.transfer_lost")
        return event

    with Session(scene.b.engine) as session:
        with pytest.raises(ReplayMismatch, match="not in the rebuilt catalogue"):
            _replay(scene, session, alter)
        session.rollback()
