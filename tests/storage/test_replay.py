"""Replays of the storage, access, withdrawal and token events (issue 17): an act done on
database A, A's leaves replayed in order into a fresh migrated database B, and B answers as A.

Until the rebuild's replay of ``ingest.*`` lands, the leaves ``ingest.accepted`` are replayed
here from the transfer's description on the offer (``transfers/<id>.zip``, as the rebuild
will); leaves of other owners' types (the referential…) are skipped, and the comparisons stay
on what the events replayed here decide.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from sae.catalog.models import ArchiveUnit, DataObject
from sae.catalog.records import rows_from_record
from sae.catalog.rows import write_catalogue
from sae.db import new_id, transaction, utcnow
from sae.ingest.models import Transfer
from sae.ingest.transfer_record import read_transfer_record, transfer_record_key
from sae.journal.models import Event
from sae.journal.service import encode_leaf
from sae.recovery.replay import (
    NO_STATE,
    REPLAYS,
    LeafEvent,
    ReplayContext,
    apply,
    load_all,
)
from sae.retention.models import UnitComputedRule
from sae.storage import audit as audit_module
from sae.storage.audit import (
    CHECKED_PER_LEAF,
    checked_events,
    create_audit,
    entry_copy,
    run_audit,
)
from sae.storage.filesystem import FilesystemOffer
from sae.storage.fill import fill_offers, plan_fill
from sae.storage.models import Audit, AuditProblem, MetadataCopy, ObjectCopy
from sae.storage.offers import OfferSet
from sae.storage.quarantine import end_quarantines
from tests.conftest import Api, Database, _open_database
from tests.sipfactory import build_zip, simple_sip
from tests.storage.conftest import deposit
from tests.storage.helpers import flip_byte, remove_copy

PAYLOAD = b"%PDF-1.4\n" + b"replayed" * 200 + b"\n%%EOF\n"
#: The event families whose replays this module tests (the others' are skipped here).
OURS = ("storage.", "integrity.", "access.", "auth.", "transfer.withdraw")


def _offer(api: Api, name: str) -> FilesystemOffer:
    offer = api.runtime.offer_set.offers[name]
    assert isinstance(offer, FilesystemOffer)
    return offer


def _replay_ingest(context: ReplayContext, event: LeafEvent, kept: dict[str, bytes]) -> None:
    """``ingest.accepted`` from ``transfers/<id>.zip``, as the rebuild does; the description of
    a withdrawn transfer is gone from the offers, and its rows come from its withdrawal —
    unless ``kept`` has it (transfer id -> the zip's bytes: what a restored backup would hold
    of it, rows and all)."""
    if event.type != "ingest.accepted" or event.transfer_id is None:
        return
    key = transfer_record_key(event.transfer_id)
    if context.offer.head(key) is not None:
        data = b"".join(context.offer.get(key))
    elif event.transfer_id in kept:
        data = kept[event.transfer_id]
    else:
        return
    files = read_transfer_record(data)
    transfer, rows, end_dates = rows_from_record(files.record, atr=files.atr)
    context.session.add(transfer)
    write_catalogue(context.session, rows)
    if end_dates:
        context.session.execute(insert(UnitComputedRule), end_dates)
    context.session.flush()


def _replayed(api: Api, database: Database, tmp_path: Path, kept: dict[str, bytes]) -> Database:
    """A fresh migrated database of the same kind, into which A's leaves were replayed."""
    load_all()
    (tmp_path / "rebuilt").mkdir(exist_ok=True)
    target = _open_database(database.kind, tmp_path / "rebuilt")
    with transaction(api.runtime.sessions) as session:
        leaves = list(session.scalars(select(Event.leaf).order_by(Event.leaf_index)))
    offer = _offer(api, "site-a")
    with Session(target.engine) as session:
        context = ReplayContext(session, offer)
        for leaf in leaves:
            event = LeafEvent.parse(leaf)
            if event.type.startswith("ingest."):
                _replay_ingest(context, event, kept)
            elif event.type in REPLAYS or event.type in NO_STATE:
                apply(context, event)
            else:
                assert not event.type.startswith(OURS), f"{event.type}: no replay"
        session.commit()
        assert context.notes == []
    return target


@pytest.fixture
def rebuilt(two_sites: Api, database: Database, tmp_path: Path) -> Iterator[Any]:
    """Call with no argument once A is as wanted: an Api on B (same offers, a new admin token
    written as on a first start)."""
    opened: list[tuple[Database, TestClient]] = []

    def make(kept: dict[str, bytes] | None = None) -> Api:
        from sae.app import create_app

        target = _replayed(two_sites, database, tmp_path, kept or {})
        settings = two_sites.settings.model_copy(
            update={"database_url": target.url, "data_dir": tmp_path / "rebuilt-data"}
        )
        client = TestClient(create_app(settings), raise_server_exceptions=False)
        client.__enter__()
        opened.append((target, client))
        return Api(client, settings)

    yield make
    for target, client in opened:
        client.__exit__(None, None, None)
        target.close()


def _rows(api: Api, model: type[Any], *skip: str) -> list[dict[str, Any]]:
    """Every row of ``model``, without the columns in ``skip``, in a stable order."""
    with transaction(api.runtime.sessions) as session:
        rows = [
            {k: v for k, v in vars(row).items() if not k.startswith("_") and k not in skip}
            for row in session.scalars(select(model))
        ]
    return sorted(rows, key=repr)


def _get(api: Api, path: str) -> Any:
    response = api.client.get(path, headers=api.auth())
    assert response.status_code in (200, 410), (path, response.text)
    return response.status_code, (
        response.json() if "json" in response.headers["content-type"] else response.content
    )


def _same(b: Api, a: Api, path: str, *journal: str) -> None:
    """B answers ``path`` as A does (but the ``journal`` keys: where the act sits in the
    journal is the rebuild's to restore, with the journal)."""
    status_b, body_b = _get(b, path)
    status_a, body_a = _get(a, path)
    assert status_b == status_a, path
    if isinstance(body_a, dict):
        differ = {k for k in body_a.keys() | body_b.keys() if body_a.get(k) != body_b.get(k)}
        assert differ <= set(journal), (path, {k: (body_a.get(k), body_b.get(k)) for k in differ})
    else:
        assert body_b == body_a, path


@pytest.mark.parametrize("rows_there", [False, True], ids=["from-the-leaf", "over-its-rows"])
def test_a_withdrawal_replayed_answers_as_before(
    two_sites: Api, rebuilt: Any, rows_there: bool
) -> None:
    """From the offers alone the withdrawn transfer's rows come from its leaf; over a catalogue
    that has them (a backup from before the withdrawal), the withdrawal is done to them."""
    kept = two_sites.deposit(build_zip(simple_sip("MSG-KEPT")))
    oops = two_sites.deposit(build_zip(simple_sip("MSG-OOPS")))
    assert kept.status_code == oops.status_code == 201
    kept_id, oops_id = kept.json()["transfer_id"], oops.json()["transfer_id"]
    site_a = _offer(two_sites, "site-a")
    saved = {oops_id: b"".join(site_a.get(transfer_record_key(oops_id)))} if rows_there else {}
    response = two_sites.client.post(
        f"/api/v1/transfers/{oops_id}/withdrawal",
        json={"reason": "versé par erreur"},
        headers=two_sites.auth(two_sites.token("archivist")),
    )
    assert response.status_code == 200, response.text
    # Its description is gone from the offers: the withdrawal's leaf carries what stays.
    assert _offer(two_sites, "site-a").head(transfer_record_key(oops_id)) is None

    b = rebuilt(saved)

    for model, skip in (
        (Transfer, ()),
        (ArchiveUnit, ()),
        (DataObject, ()),
        (ObjectCopy, ("id",)),
        (UnitComputedRule, ()),
    ):
        assert _rows(b, model, *skip) == _rows(two_sites, model, *skip), model.__name__
    with transaction(b.runtime.sessions) as session:
        described = session.scalars(select(MetadataCopy.transfer_id))
        assert oops_id not in set(described)
    paths = [f"/api/v1/transfers/{t}" for t in (kept_id, oops_id)]
    paths += [f"/api/v1/transfers/{t}/atr" for t in (kept_id, oops_id)]
    paths += [f"/api/v1/objects/{o['id']}" for r in (kept, oops) for o in r.json()["objects"]]
    paths += [
        f"/api/v1/objects/{o['id']}/content" for r in (kept, oops) for o in r.json()["objects"]
    ]
    with transaction(two_sites.runtime.sessions) as session:
        units = list(session.scalars(select(ArchiveUnit.id)))
    paths += [f"/api/v1/units/{u}" for u in units]
    for path in paths:
        _same(b, two_sites, path, "journal")
    statuses = {_get(b, f"/api/v1/transfers/{t}")[1]["status"] for t in (kept_id, oops_id)}
    assert statuses == {"OK", "WITHDRAWN"}


def test_audits_repairs_read_failures_and_quarantines_replayed(
    two_sites: Api, rebuilt: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = two_sites.runtime
    flipped = deposit(two_sites, "MSG-FLIP", PAYLOAD)
    lost = deposit(two_sites, "MSG-LOST", PAYLOAD + b"1")
    broken = deposit(two_sites, "MSG-BROKEN", PAYLOAD + b"2")
    sealed = deposit(two_sites, "MSG-SEALED", PAYLOAD + b"3")
    flip_byte(_offer(two_sites, "site-b"), f"objects/{flipped}", offset=50)
    remove_copy(_offer(two_sites, "site-a"), f"objects/{lost}")
    # An audit that repairs, one that only reports.
    with transaction(runtime.sessions) as session:
        repairing = create_audit(session, runtime.offer_set, requested_by="token:x").id
    assert run_audit(runtime.sessions, runtime.offer_set, repairing) == repairing
    flip_byte(_offer(two_sites, "site-b"), f"objects/{flipped}", offset=60)
    with transaction(runtime.sessions) as session:
        reporting = create_audit(session, runtime.offer_set, offers=["site-b"], repair=False).id
    assert run_audit(runtime.sessions, runtime.offer_set, reporting) == reporting
    # A read that finds both copies damaged: each copy flagged, the object too.
    for site in ("site-a", "site-b"):
        flip_byte(_offer(two_sites, site), f"objects/{broken}", offset=10)
    assert two_sites.client.get(
        f"/api/v1/objects/{broken}/content", headers=two_sites.auth()
    ).status_code in (500, 502, 503)
    # Quarantines that end: the copies of the last object sealed into COMPLIANCE.
    moment = utcnow() + timedelta(days=2)
    for name in ("site-a", "site-b"):
        monkeypatch.setattr(_offer(two_sites, name), "_clock", lambda: moment)
    assert end_quarantines(runtime.sessions, runtime.offer_set, now=moment) > 0

    b = rebuilt()

    assert _rows(b, Audit, "cursor", "heartbeat_at") == _rows(
        two_sites, Audit, "cursor", "heartbeat_at"
    )
    assert _rows(b, AuditProblem, "id", "copy_id") == _rows(
        two_sites, AuditProblem, "id", "copy_id"
    )
    assert _rows(b, DataObject) == _rows(two_sites, DataObject)
    # Every copy is as in A, column by column: those found damaged, repaired, flagged by a
    # read, and those the audits found healthy (``storage.copies_checked``).
    assert _rows(b, ObjectCopy, "id") == _rows(two_sites, ObjectCopy, "id")
    # The quarantines: every end sealed in A is sealed in B.
    ends_a = {
        (c["object_id"], c["offer"]): c["quarantine_ends_at"] for c in _rows(two_sites, ObjectCopy)
    }
    ends_b = {(c["object_id"], c["offer"]): c["quarantine_ends_at"] for c in _rows(b, ObjectCopy)}
    assert ends_b == ends_a
    assert ends_a[(sealed, "site-a")] is None
    # What the API shows of them.
    for path in (
        f"/api/v1/audits/{repairing}",
        f"/api/v1/audits/{reporting}",
        *(f"/api/v1/objects/{o}" for o in (flipped, lost, broken, sealed)),
    ):
        _same(b, two_sites, path)
    problems = _get(b, f"/api/v1/audits/{repairing}")[1]["problems"]
    assert sorted((p["offer"], p["kind"], p["repaired"]) for p in problems) == [
        ("site-a", "missing", True),
        ("site-b", "corrupt", True),
    ]
    # The problems point at the rebuilt copies.
    with transaction(b.runtime.sessions) as session:
        for problem in session.scalars(select(AuditProblem)):
            copy = session.get(ObjectCopy, problem.copy_id)
            assert copy is not None
            assert (copy.offer, copy.key) == (problem.offer, problem.key)


def _checked_leaves(api: Api) -> list[LeafEvent]:
    with transaction(api.runtime.sessions) as session:
        leaves = session.scalars(
            select(Event.leaf)
            .where(Event.type == "storage.copies_checked")
            .order_by(Event.leaf_index)
        )
        return [LeafEvent.parse(leaf) for leaf in leaves]


def test_healthy_copies_checked_replayed(
    two_sites: Api, rebuilt: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 17: after a rebuild, the copies an audit found healthy show its check, as before
    the loss. Batches of 4 copies, leaves of at most 3: a batch split over two leaves, two
    batches with their own dates."""
    runtime = two_sites.runtime
    objects = [deposit(two_sites, f"MSG-HEALTHY-{n}", PAYLOAD + bytes([n])) for n in range(3)]
    monkeypatch.setattr(audit_module, "CHECKED_PER_LEAF", 3)
    with transaction(runtime.sessions) as session:
        audit_id = create_audit(session, runtime.offer_set, requested_by="token:x").id
    assert run_audit(runtime.sessions, runtime.offer_set, audit_id, batch_size=4) == audit_id
    rows_a = _rows(two_sites, ObjectCopy, "id")
    assert len(rows_a) == 6
    assert all(row["last_check_ok"] is True for row in rows_a)
    assert all(row["last_checked_at"] is not None for row in rows_a)
    leaves = _checked_leaves(two_sites)
    assert [sum(map(len, e.payload["copies"].values())) for e in leaves] == [3, 1, 2]
    assert len({e.payload["checked_at"] for e in leaves}) == 2  # one date per batch
    named = {
        (offer, *entry_copy(entry))
        for e in leaves
        for offer, entries in e.payload["copies"].items()
        for entry in entries
    }
    assert named == {(r["offer"], r["object_id"], r["key"]) for r in rows_a}

    b = rebuilt()

    assert _rows(b, ObjectCopy, "id") == rows_a
    for object_id in objects:
        _same(b, two_sites, f"/api/v1/objects/{object_id}")
    _same(b, two_sites, f"/api/v1/audits/{audit_id}")


def test_a_checked_leaf_stays_small() -> None:
    """A batch of 1,234 healthy copies: leaves of at most CHECKED_PER_LEAF copies, ~40 bytes
    each (an object id; [id, key] only for a key that is not ``objects/<id>``)."""
    audit = Audit(id=new_id())
    object_ids = [new_id() for _ in range(617)]
    copies = [
        ObjectCopy(object_id=o, offer=offer, key=f"objects/{o}")
        for o in object_ids
        for offer in ("site-a", "site-b")
    ]
    copies[5].key = "elsewhere/odd-key"
    at = utcnow()
    events = checked_events(audit, copies, at)
    assert len(events) == 3
    named = []
    for event in events:
        copies_in = event["payload"]["copies"]
        count = sum(map(len, copies_in.values()))
        assert count <= CHECKED_PER_LEAF
        leaf = encode_leaf(
            leaf_index=10**9,
            type=event["type"],
            actor=event["actor"],
            occurred_at=at,
            payload=event["payload"],
            transfer_id=None,
            unit_id=None,
            object_id=None,
            object_digests={},
        )
        assert len(leaf) <= 300 + 45 * count, len(leaf)
        named += [(offer, *entry_copy(e)) for offer, es in copies_in.items() for e in es]
    assert sorted(named) == sorted((c.offer, c.object_id, c.key) for c in copies)
    assert len(events[0]["payload"]["copies"]["site-a"]) == 250


def test_every_type_of_these_owners_is_replayed_or_declared_stateless() -> None:
    load_all()
    journaled = {
        "transfer.withdrawal_started",
        "transfer.withdrawn",
        "storage.quarantine_ended",
        "storage.orphan_removed",
        "storage.copies_checked",
        "storage.copy_damaged",
        "storage.copy_repaired",
        "storage.audit_completed",
        "storage.audit_failed",
        "integrity.failed",
        "integrity.no_healthy_copy",
        "auth.token_created",
        "auth.token_revoked",
        "access.object_read",
        "access.dip_exported",
    }
    assert journaled <= set(REPLAYS) | set(NO_STATE)
    assert "tokens are not rebuilt" in NO_STATE["auth.token_created"].lower().replace("api ", "")


def test_copies_filled_on_a_new_site_replayed(two_sites: Api, rebuilt: Any, tmp_path: Path) -> None:
    for n in range(2):
        deposit(two_sites, f"MSG-FILLED-{n}", PAYLOAD + str(n).encode())
    runtime = two_sites.runtime
    site_c = FilesystemOffer("site-c", tmp_path / "site-c", quarantine_days=1)
    three = OfferSet(
        offers={**runtime.offer_set.offers, "site-c": site_c},
        strategy=[*runtime.offer_set.strategy, "site-c"],
    )
    outcomes = fill_offers(runtime.sessions, three, plan_fill(runtime.sessions, three))
    assert outcomes
    assert all(o.filled for o in outcomes)

    b = rebuilt()

    def on_c(api: Api, model: type[Any]) -> list[dict[str, Any]]:
        return [row for row in _rows(api, model, "id") if row["offer"] == "site-c"]

    assert on_c(b, ObjectCopy) == on_c(two_sites, ObjectCopy)
    assert len(on_c(b, ObjectCopy)) == 2
    assert on_c(b, MetadataCopy) == on_c(two_sites, MetadataCopy)
    # The transfers' descriptions (and the segments the background sealer published, if any).
    assert "transfer" in {row["kind"] for row in on_c(b, MetadataCopy)}
