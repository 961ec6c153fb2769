"""Each accepted transfer's description on every offer, before its 201 (issue 17):
``transfers/<id>.zip`` holds the manifest as received, the ATR and the record of what SAE
assigned, which gives back the catalogue's rows column by column."""

from __future__ import annotations

import hashlib
import io
import zipfile
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from sae.auth.service import SYSTEM
from sae.catalog.models import ArchiveUnit, DataObject, DataObjectGroup, UnitLink, UnitRule
from sae.catalog.records import TABLES, rows_from_record
from sae.db import Base
from sae.ingest import service
from sae.ingest.models import Transfer
from sae.ingest.transfer_record import (
    PREFIX,
    read_transfer_record,
    transfer_record_key,
)
from sae.retention.models import UnitComputedRule
from sae.storage.base import StorageOffer
from sae.storage.errors import OfferUnavailable
from sae.storage.fsck import reconcile
from sae.storage.models import MetadataCopy, ObjectCopy
from tests.conftest import SAMPLES, Api
from tests.ingest.test_samples import ACCEPTED, SAMPLE_RULES_CSV
from tests.s3_server import ceph_rgw_fixture  # noqa: F401  (the ceph_rgw fixture)
from tests.sipfactory import FileSpec, RuleSpec, SipSpec, UnitSpec, build_zip, simple_sip
from tests.storage.conftest import (  # noqa: F401  (fixtures)
    OfferFactory,
    s3_factory,
    two_sites,
)

#: Columns a record leaves out on purpose: surrogate keys the database numbers (nothing refers
#: to them), and the ATR, which is ``atr.xml`` beside the record.
NOT_IN_RECORD = {("unit_rules", "id"), ("object_copies", "id"), ("transfers", "atr")}


def factory_sip(message_id: str) -> bytes:
    """Several units in a graph, files in groups, declared rules, one unit without a file."""
    files = [
        FileSpec(uri=f"Content/pièce {i}.pdf", data=b"%PDF-1.4\n" + bytes([i]) * (100 + i))
        for i in range(3)
    ]
    spec = SipSpec(
        message_id=message_id,
        files=files,
        units=[
            UnitSpec(
                id="AU-root",
                title="Dossier de voirie",
                level="File",
                rules=[RuleSpec("AppraisalRule", "APP-5Y", date(2020, 1, 1), "Destroy")],
                children=[
                    UnitSpec(id="AU-0", title="Arrêté", files=[0]),
                    UnitSpec(
                        id="AU-1",
                        title="Plans",
                        files=[1, 2],
                        rules=[RuleSpec("AccessRule", "ACC-25Y", date(2021, 6, 1))],
                    ),
                    UnitSpec(id="AU-2", title="Sans fichier"),
                ],
            )
        ],
    )
    return build_zip(spec)


def _compare(written: list[Base], rebuilt: list[Base], model: type[Base]) -> None:
    """Every mapped column of every row, but the surrogate keys (checked to be only those)."""
    assert len(written) == len(rebuilt), model.__tablename__
    table = model.__tablename__
    columns = [attr for attr in inspect(model).column_attrs]
    skipped = {(table, attr.key) for attr in columns if (table, attr.key) in NOT_IN_RECORD}
    for attr in columns:
        if (table, attr.key) in skipped - {("transfers", "atr")}:
            assert attr.columns[0].primary_key
            assert attr.columns[0].autoincrement is True
    compared = [attr.key for attr in columns if (table, attr.key) not in skipped]

    def values(row: Base) -> tuple[Any, ...]:
        return tuple(getattr(row, key) for key in compared)

    pairs = zip(
        sorted(map(values, written), key=repr), sorted(map(values, rebuilt), key=repr), strict=True
    )
    differences = [
        (table, key, a, b)
        for left, right in pairs
        for key, a, b in zip(compared, left, right, strict=True)
        if a != b
    ]
    assert differences == []


def _database_rows(session: Session, transfer_id: str) -> dict[str, list[Any]]:
    units = select(ArchiveUnit.id).where(ArchiveUnit.transfer_id == transfer_id)
    objects = select(DataObject.id).where(DataObject.transfer_id == transfer_id)
    queries: dict[str, Any] = {
        "groups": select(DataObjectGroup).where(DataObjectGroup.transfer_id == transfer_id),
        "objects": select(DataObject).where(DataObject.transfer_id == transfer_id),
        "copies": select(ObjectCopy).where(ObjectCopy.object_id.in_(objects)),
        "units": select(ArchiveUnit).where(ArchiveUnit.transfer_id == transfer_id),
        "links": select(UnitLink).where(UnitLink.parent_id.in_(units)),
        "rules": select(UnitRule).where(UnitRule.unit_id.in_(units)),
        "end_dates": select(UnitComputedRule).where(UnitComputedRule.unit_id.in_(units)),
    }
    return {name: list(session.scalars(query)) for name, query in queries.items()}


def check_records(api: Api, transfer_id: str, sip: bytes) -> None:
    """On every strategy offer: manifest, ATR and record, equal to what SAE holds."""
    with zipfile.ZipFile(io.BytesIO(sip)) as zf:
        manifest = zf.read("manifest.xml")
    atr = api.client.get(f"/api/v1/transfers/{transfer_id}/atr", headers=api.auth())
    assert atr.status_code == 200
    offers: list[StorageOffer] = api.runtime.strategy_offers
    key = transfer_record_key(transfer_id)
    for offer in offers:
        files = read_transfer_record(b"".join(offer.get(key)))
        assert files.manifest == manifest
        assert files.atr == atr.content
        assert files.record["manifest"] == "manifest.xml"
        transfer, rows, end_dates = rows_from_record(files.record, atr=files.atr)
        with api.runtime.sessions() as session:
            written = _database_rows(session, transfer_id)
            _compare([session.get(Transfer, transfer_id)], [transfer], Transfer)  # type: ignore[list-item]
            assert transfer.atr == session.get(Transfer, transfer_id).atr  # type: ignore[union-attr]
            for name, model in TABLES:
                _compare(written[name], getattr(rows, name), model)
            rebuilt_dates = [UnitComputedRule(**values) for values in end_dates]
            _compare(written["end_dates"], rebuilt_dates, UnitComputedRule)  # type: ignore[arg-type]
            copies = session.scalars(
                select(MetadataCopy).where(MetadataCopy.transfer_id == transfer_id)
            ).all()
        assert sorted((c.offer, c.key, c.kind) for c in copies) == sorted(
            (o.name, key, "transfer") for o in offers
        )


@pytest.mark.parametrize("name", ACCEPTED)
def test_real_samples_round_trip_through_their_record(api: Api, name: str) -> None:
    api.load_rules(SAMPLE_RULES_CSV)
    sip = (SAMPLES / name).read_bytes()
    response = api.deposit(sip)
    assert response.status_code == 201, response.text
    check_records(api, response.json()["transfer_id"], sip)


def test_every_offer_holds_the_description_before_the_201(two_sites: Api) -> None:  # noqa: F811
    sip = factory_sip("MSG-REC-1")
    response = two_sites.deposit(sip)
    assert response.status_code == 201, response.text
    transfer_id = response.json()["transfer_id"]
    check_records(two_sites, transfer_id, sip)
    # The description's bytes are a function of the transfer: stored members, fixed times.
    data = b"".join(two_sites.runtime.strategy_offers[0].get(transfer_record_key(transfer_id)))
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}
        assert len({i.date_time for i in zf.infolist()}) == 1
    with two_sites.runtime.sessions() as session:
        findings = reconcile(session, two_sites.runtime.offer_set)
    # The background publisher may be between a segment's write and its record: not ours.
    assert [f for f in findings if not f.key.startswith("journal/")] == []


def test_the_record_is_locked_like_the_longest_kept_object(two_sites: Api) -> None:  # noqa: F811
    response = two_sites.deposit(factory_sip("MSG-REC-LOCK"))
    assert response.status_code == 201, response.text
    body = response.json()
    key = transfer_record_key(body["transfer_id"])
    for offer in two_sites.runtime.strategy_offers:
        record = offer.head(key)
        locks = [offer.head(f"objects/{o['id']}").retain_until for o in body["objects"]]
        assert record is not None
        assert record.retain_until == max(locks)
        assert record.quarantine_ends_at is not None


def test_a_transfer_without_files_gets_a_permanent_description(two_sites: Api) -> None:  # noqa: F811
    spec = SipSpec(message_id="MSG-REC-NOFILE", units=[UnitSpec(id="AU-1", title="Vide")])
    response = two_sites.deposit(build_zip(spec))
    assert response.status_code == 201, response.text
    key = transfer_record_key(response.json()["transfer_id"])
    for offer in two_sites.runtime.strategy_offers:
        head = offer.head(key)
        assert head is not None
        assert head.retain_until is not None
        assert head.retain_until.year == 2105


def _keys(api: Api, prefix: str = "") -> set[tuple[str, str]]:
    return {(o.name, k) for o in api.runtime.strategy_offers for k in o.list_keys(prefix)}


def test_a_refused_deposit_leaves_no_description(two_sites: Api) -> None:  # noqa: F811
    spec = simple_sip("MSG-REC-KO")
    spec.files[0] = FileSpec(uri=spec.files[0].uri, data=spec.files[0].data, digest="0" * 128)
    response = two_sites.deposit(build_zip(spec))
    assert response.status_code == 422
    assert _keys(two_sites, PREFIX) == set()
    assert _keys(two_sites, "objects/") == set()


def test_an_offer_failing_on_the_description_refuses_with_nothing_left(
    two_sites: Api,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    second = two_sites.runtime.strategy_offers[1]
    real_put = second.put

    def put(key: str, source: Any, *args: Any, **kwargs: Any) -> Any:
        if key.startswith(PREFIX):
            source.read()  # the connection drops once the bytes are sent
            raise OfferUnavailable(second.name, "the site went dark")
        return real_put(key, source, *args, **kwargs)

    monkeypatch.setattr(second, "put", put)
    response = two_sites.deposit(factory_sip("MSG-REC-503"))
    assert response.status_code == 503, response.text
    assert response.json()["errors"][0]["code"] == "storage.write_failed"
    assert _keys(two_sites) - _keys(two_sites, "journal/") == set()
    with two_sites.runtime.sessions() as session:
        assert (
            session.scalars(select(MetadataCopy).where(MetadataCopy.kind == "transfer")).all() == []
        )
    monkeypatch.undo()
    # Sent again once the offer is back: accepted, described everywhere.
    sip = factory_sip("MSG-REC-503")
    response = two_sites.deposit(sip)
    assert response.status_code == 201, response.text
    check_records(two_sites, response.json()["transfer_id"], sip)


def test_a_description_left_by_a_crash_is_reported_by_fsck(two_sites: Api) -> None:  # noqa: F811
    offer = two_sites.runtime.strategy_offers[0]
    offer.put(transfer_record_key("0" * 8), io.BytesIO(b"PK"), retain_until=None)
    with two_sites.runtime.sessions() as session:
        findings = reconcile(session, two_sites.runtime.offer_set)
    assert [(f.offer, f.key, f.kind) for f in findings] == [
        (offer.name, transfer_record_key("0" * 8), "unrecorded_metadata")
    ]


@pytest.mark.s3
def test_the_description_on_ceph(api: Api, s3_factory: OfferFactory, tmp_path: Path) -> None:  # noqa: F811
    """The same description on the real Ceph RGW (Object Lock bucket), read back from it."""
    s3 = s3_factory()
    sip = factory_sip("MSG-REC-S3")
    path = tmp_path / "sip.zip"
    path.write_bytes(sip)
    env = service.IngestEnv(settings=api.runtime.settings, offers=[s3])
    with api.runtime.sessions() as session:
        outcome = service.ingest(session, env, SYSTEM, path)
        session.commit()
    assert outcome.accepted, outcome.transfer.errors
    key = transfer_record_key(outcome.transfer.id)
    data = b"".join(s3.get(key))
    files = read_transfer_record(data)
    with zipfile.ZipFile(path) as zf:
        assert files.manifest == zf.read("manifest.xml")
    assert files.atr == outcome.atr
    transfer, rows, _ = rows_from_record(files.record, atr=files.atr)
    assert transfer.id == outcome.transfer.id
    assert sorted(o.id for o in rows.objects) == sorted(o.id for o in outcome.objects)
    head = s3.head(key)
    assert head is not None
    assert head.lock_mode is not None
    with api.runtime.sessions() as session:
        row = session.scalars(select(MetadataCopy).where(MetadataCopy.key == key)).one()
    assert row.offer == s3.name
    assert row.sha512 == hashlib.sha512(data).hexdigest()
