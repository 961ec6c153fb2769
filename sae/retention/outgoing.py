"""Outgoing transfer of permanently kept units to another archive (e.g. the departmental
archives), and purge only after that archive's acknowledgement.

1. ``build_outgoing_sip``: for an executed Keep list, a SEDA 2.2 ArchiveTransfer (written by
   ``seda``) with every kept unit's ``Content`` verbatim, its place in the graph, and its objects
   read back from the offers with their SHA-512 checked. The zip is kept under the data
   directory until acknowledged; ``disposal.transfer_sent`` journals its SHA-512.
2. ``acknowledge``: the receiving archive's ArchiveTransferReply (ATR). A KO, or a reply to
   another message, purges nothing. An OK reply is itself archived as a record (proof that the
   records live on elsewhere), then every copy is deleted where the offer's lock allows it;
   purged objects get a tombstone and a ``disposal.object_transferred`` event. Copies still
   locked are listed and the call can be repeated when their lock ends.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

import seda
from sae import db
from sae.auth.service import SYSTEM
from sae.catalog.models import GONE, ArchiveUnit, DataObject, UnitLink
from sae.catalog.rows import digitization
from sae.config import Settings
from sae.errors import UnprocessableEntity
from sae.journal.service import append_event
from sae.retention import disposal, records
from sae.retention.config import RetentionSettings
from sae.retention.errors import WrongState
from sae.retention.execution import destroy_object
from sae.retention.models import DisposalList, unit_tombstone
from sae.storage.base import StorageOffer
from sae.storage.repository import copies_of_objects
from sae.storage.service import delete_copies, open_verified


class InvalidReply(UnprocessableEntity):
    """The acknowledgement is not the receiving archive's reply to our transfer."""

    code = "disposal.invalid_transfer_reply"


def _sip_path(settings: Settings, d: DisposalList) -> Path:
    return Path(settings.data_dir) / "outgoing" / f"{d.reference}.zip"


def build_outgoing_sip(
    session: Session,
    d: DisposalList,
    *,
    settings: Settings,
    offers: Mapping[str, StorageOffer],
    archival_agency: str,
    config: RetentionSettings,
    actor: str,
) -> Path:
    """Write the outgoing SIP of an executed Keep list (flush, no commit); returns its path."""
    if d.final_action != "Keep" or d.state != "executed":
        raise WrongState(
            "only an executed permanent-keeping list can be transferred", state=d.state
        )
    if d.outgoing_transfer and d.outgoing_transfer.get("state") == "acknowledged":
        raise WrongState(f"list {d.reference} was already transferred and acknowledged")
    sent_at = db.utcnow()
    data, message_id = outgoing_sip_bytes(
        session, d, offers=offers, archival_agency=archival_agency, config=config, at=sent_at
    )
    path = _sip_path(settings, d)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    digest = hashlib.sha512(data).hexdigest()
    d.outgoing_transfer = sent_transfer(
        session,
        d,
        message_identifier=message_id,
        archival_agency=archival_agency,
        sent_at=sent_at.isoformat(),
        sip_sha512=digest,
        sip_size=len(data),
    )
    session.flush()
    append_event(
        session,
        type="disposal.transfer_sent",
        actor=actor,
        payload={
            "list_id": d.id,
            "reference": d.reference,
            "archival_agency": archival_agency,
            "message_identifier": message_id,
            "sip_sha512": digest,
            "units": len(d.outgoing_transfer["units"]),
            # With the list's kept lines, the whole state the transfer left (sent_transfer).
            "sent_at": d.outgoing_transfer["sent_at"],
            "sip_size": len(data),
        },
    )
    return path


def outgoing_sip_bytes(
    session: Session,
    d: DisposalList,
    *,
    offers: Mapping[str, StorageOffer],
    archival_agency: str,
    config: RetentionSettings,
    at: datetime,
) -> tuple[bytes, str]:
    """The outgoing SIP of ``d`` sent at ``at`` and its MessageIdentifier: a function of the
    catalogue, the objects' bytes and ``at`` (objects in id order, every zip member dated
    ``at``), so that the same SIP can be made again, e.g. after a rebuild of the catalogue."""
    stamp = at.astimezone(UTC).timetuple()[:6]

    def member(name: str) -> zipfile.ZipInfo:
        info = zipfile.ZipInfo(name, date_time=stamp)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.create_system = 3  # Unix, whatever machine wrote it
        info.external_attr = 0o100644 << 16
        return info

    kept = [ln.unit_id for ln in disposal.lines_of(session, d.id) if ln.state == "kept"]
    units = {u.id: u for u in session.scalars(select(ArchiveUnit).where(ArchiveUnit.id.in_(kept)))}
    children: dict[str, list[str]] = {}
    has_parent: set[str] = set()
    for parent, child in session.execute(
        select(UnitLink.parent_id, UnitLink.child_id)
        .where(UnitLink.parent_id.in_(kept), UnitLink.child_id.in_(kept))
        .order_by(UnitLink.parent_id, UnitLink.position)
    ):
        children.setdefault(parent, []).append(child)
        has_parent.add(child)
    sip_ids = {uid: f"AU-{n}" for n, uid in enumerate(kept, start=1)}
    buffer = io.BytesIO()
    binaries: list[seda.BinaryDataObject] = []
    groups: list[seda.DataObjectGroup] = []
    seda_units: list[seda.ArchiveUnit] = []
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for uid in kept:
            unit = units[uid]
            group_id: str | None = None
            if unit.data_object_group_id is not None:
                objects = list(
                    session.scalars(
                        select(DataObject)
                        .where(
                            DataObject.group_id == unit.data_object_group_id,
                            DataObject.kind == "binary",
                            DataObject.status == "active",
                        )
                        .order_by(DataObject.id)
                    )
                )
                if objects:
                    group_id = f"GOT-{sip_ids[uid]}"
                    ids = []
                    for obj in objects:
                        data = _read(session, offers, obj)
                        uri = f"Content/{obj.id}-{obj.filename or 'objet'}"
                        archive.writestr(member(uri), data)
                        bdo_id = f"BDO-{obj.id}"
                        ids.append(bdo_id)
                        binaries.append(
                            seda.BinaryDataObject(
                                id=bdo_id,
                                group_id=group_id,
                                uri=uri,
                                message_digest=obj.sha512,
                                digest_algorithm="SHA-512",
                                size=obj.size,
                                format=seda.FormatIdentification(mime_type=obj.mime_type)
                                if obj.mime_type
                                else None,
                                file_info=seda.FileInfo(filename=obj.filename or obj.id),
                                data_object_version=obj.data_object_version or "BinaryMaster_1",
                                digitization=digitization(obj.scan_chain),
                            )
                        )
                    groups.append(seda.DataObjectGroup(id=group_id, object_ids=ids))
            seda_units.append(
                seda.ArchiveUnit(
                    id=sip_ids[uid],
                    title=unit.title,
                    description=unit.description,
                    description_level=unit.description_level,
                    content_xml=unit.content_xml,
                    management=seda.Management(
                        rules={
                            "AppraisalRule": seda.RuleCategory(
                                category="AppraisalRule", final_action="Keep"
                            )
                        }
                    ),
                    data_object_group_id=group_id,
                    child_unit_ids=[sip_ids[c] for c in children.get(uid, [])],
                    parent_id=None,
                )
            )
        message_id = f"{d.reference}-TRANSFERT"
        transfer = seda.ArchiveTransfer(
            version=seda.SedaVersion("2.2"),
            message_identifier=message_id,
            date=at.replace(microsecond=0),
            comments=[f"Versement des archives définitives du bordereau {d.reference}"],
            archival_agency_identifier=archival_agency,
            transferring_agency_identifier=config.archives_service,
            code_list_versions=dict(records.CODE_LISTS),
            package=seda.DataObjectPackage(
                binary_data_objects=binaries,
                data_object_groups=groups,
                archive_units=seda_units,
                root_unit_ids=[sip_ids[u] for u in kept if u not in has_parent],
                management_metadata=seda.ManagementMetadata(
                    originating_agency_identifier=config.archives_service
                ),
            ),
        )
        archive.writestr(member("manifest.xml"), seda.write_archive_transfer(transfer))
    return buffer.getvalue(), message_id


def sent_transfer(
    session: Session,
    d: DisposalList,
    *,
    message_identifier: str,
    archival_agency: str,
    sent_at: str,
    sip_sha512: str,
    sip_size: int,
) -> dict[str, Any]:
    """The ``outgoing_transfer`` of a list whose SIP was just sent: its kept units, in line
    order (the live act, and its replay)."""
    return {
        "state": "sent",
        "message_identifier": message_identifier,
        "archival_agency": archival_agency,
        "sent_at": sent_at,
        "sip_sha512": sip_sha512,
        "sip_size": sip_size,
        "units": [ln.unit_id for ln in disposal.lines_of(session, d.id) if ln.state == "kept"],
    }


def outgoing_sip(
    session: Session,
    d: DisposalList,
    *,
    settings: Settings,
    offers: Mapping[str, StorageOffer],
    config: RetentionSettings,
) -> Path:
    """The path of the outgoing SIP of ``d`` (WrongState when none was built).

    The zip lives in the data directory, not on the offers: when it is not there (a catalogue
    rebuilt on another machine), it is made again from the catalogue and the offers and kept
    only if its SHA-512 is the one sent; once its objects are purged it cannot be."""
    sent = d.outgoing_transfer
    if not sent:
        raise WrongState(f"list {d.reference} has no outgoing transfer")
    path = _sip_path(settings, d)
    if path.is_file():
        return path
    data, _ = outgoing_sip_bytes(
        session,
        d,
        offers=offers,
        archival_agency=sent["archival_agency"],
        config=config,
        at=datetime.fromisoformat(sent["sent_at"]),
    )
    if hashlib.sha512(data).hexdigest() != sent["sip_sha512"]:
        raise WrongState(
            f"the outgoing SIP of list {d.reference} is not in the data directory and cannot "
            "be made again as it was sent (its objects were purged, or changed)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _read(session: Session, offers: Mapping[str, StorageOffer], obj: DataObject) -> bytes:
    copies = [
        (offers[c.offer], c.key) for c in copies_of_objects(session, [obj.id]) if c.offer in offers
    ]
    assert obj.sha512 is not None
    return b"".join(open_verified(copies, obj.sha512, expected_size=obj.size))


def acknowledge(
    session: Session,
    d: DisposalList,
    reply_xml: bytes,
    *,
    settings: Settings,
    offers: Mapping[str, StorageOffer],
    strategy: Sequence[StorageOffer],
    config: RetentionSettings,
    actor: str,
) -> dict[str, Any]:
    """Record the receiving archive's ATR and purge what the offers' locks allow."""
    sent = d.outgoing_transfer or {}
    # A KO ("refused") may be followed by an OK once the other archive has fixed its side.
    if sent.get("state") not in ("sent", "refused", "acknowledged"):
        raise WrongState(f"list {d.reference} has no outgoing transfer to acknowledge")
    try:
        reply = seda.read_transfer_reply(reply_xml)
    except seda.SedaError as exc:
        raise InvalidReply(f"the reply is not an ArchiveTransferReply: {exc}") from None
    if reply.message_request_identifier != sent["message_identifier"]:
        raise InvalidReply(
            f"the reply answers {reply.message_request_identifier!r}, "
            f"not our transfer {sent['message_identifier']!r}"
        )
    if reply.reply_code not in ("OK", "WARNING"):
        append_event(
            session,
            type="disposal.transfer_refused",
            actor=actor,
            payload={"list_id": d.id, "reference": d.reference, "reply_code": reply.reply_code},
        )
        d.outgoing_transfer = {**sent, "state": "refused", "reply_code": reply.reply_code}
        session.flush()
        return {"purged": [], "locked": [], "reply_code": reply.reply_code}
    record = records.archive_record(
        session,
        settings=settings,
        offers=strategy,
        principal=SYSTEM,
        archives_service=config.archives_service,
        message_id=f"{d.reference}-ATR-{sent['archival_agency']}",
        title=f"Accusé de réception du versement {d.reference} ({sent['archival_agency']})",
        description=f"ArchiveTransferReply {reply.message_identifier} du {reply.date.isoformat()}",
        filename=f"atr-{d.reference}.xml",
        data=reply_xml,
        mime="application/xml",
    )
    if sent.get("state") != "acknowledged":
        append_event(
            session,
            type="disposal.transfer_acknowledged",
            actor=actor,
            unit_id=record.unit_id,
            object_id=record.object_id,
            object_digests={record.object_id: record.sha512},
            payload={
                "list_id": d.id,
                "reference": d.reference,
                "reply_identifier": reply.message_identifier,
                "reply_code": reply.reply_code,
            },
        )
    now = db.utcnow()
    purged, locked = _purge(session, d, offers, sent, actor, now)
    gone = mark_transferred_units(session, d, sent, at=now)
    d.outgoing_transfer = {
        **sent,
        "state": "acknowledged",
        "reply_code": reply.reply_code,
        "reply_identifier": reply.message_identifier,
        "reply_object_id": record.object_id,
        "locked": locked,
    }
    session.flush()
    # Every acknowledgement (the first and each repeat) ends with what it left: the units now
    # gone, the copies still locked. A rebuild replays the purged objects from their own
    # leaves, then this one: the same units go (mark_transferred_units), the state is this.
    append_event(
        session,
        type="disposal.transfer_purged",
        actor=actor,
        payload={
            "list_id": d.id,
            "reference": d.reference,
            "reply_code": reply.reply_code,
            "reply_identifier": reply.message_identifier,
            "reply_object_id": record.object_id,
            "purged": len(purged),
            "locked": locked,
            "destroyed_units": len(gone),
            "destroyed_units_sha256": units_digest(gone),
            "at": now.isoformat(),
        },
    )
    return {"purged": purged, "locked": locked, "reply_code": reply.reply_code}


def _purge(
    session: Session,
    d: DisposalList,
    offers: Mapping[str, StorageOffer],
    sent: dict[str, Any],
    actor: str,
    now: datetime,
) -> tuple[list[str], list[str]]:
    purged: list[str] = []
    locked: list[str] = []
    for unit in session.scalars(
        select(ArchiveUnit).where(ArchiveUnit.id.in_(sent.get("units", [])))
    ):
        if unit.status in GONE:
            continue
        objects = (
            list(
                session.scalars(
                    select(DataObject).where(
                        DataObject.group_id == unit.data_object_group_id,
                        DataObject.status == "active",
                    )
                )
            )
            if unit.data_object_group_id
            else []
        )
        for obj in objects:
            # Every copy is tried; one that stays keeps the object here (left behind, locked).
            left_behind = [
                f"{obj.id}@{o.offer}: offer not configured"
                if o.error is None
                else f"{obj.id}@{o.offer}: {o.error.detail}"
                for o in delete_copies(copies_of_objects(session, [obj.id]), offers)
                if not o.ok
            ]
            if left_behind:
                locked.extend(left_behind)
                continue
            event = append_event(
                session,
                type="disposal.object_transferred",
                actor=actor,
                unit_id=unit.id,
                object_id=obj.id,
                object_digests={obj.id: obj.sha512} if obj.sha512 else {},
                payload={
                    "list_id": d.id,
                    "reference": d.reference,
                    "archival_agency": sent["archival_agency"],
                    "destroyed_at": now.isoformat(),
                },
            )
            destroy_object(session, unit, obj, d, at=now, leaf_index=event.leaf_index)
            purged.append(obj.id)
    session.flush()
    return purged, locked


def mark_transferred_units(
    session: Session, d: DisposalList, sent: dict[str, Any], *, at: datetime
) -> list[str]:
    """The transferred units with no object left here (every copy purged, or none to purge)
    become tombstones (the live act and its replay); returns them, in id order. A unit whose
    objects are still locked here stays until a later acknowledgement purges them."""
    gone: list[str] = []
    for unit in session.scalars(
        select(ArchiveUnit)
        .where(ArchiveUnit.id.in_(sent.get("units", [])))
        .order_by(ArchiveUnit.id)
    ):
        if unit.status in GONE:
            continue
        if unit.data_object_group_id is not None and session.scalar(
            select(DataObject.id)
            .where(
                DataObject.group_id == unit.data_object_group_id,
                DataObject.status == "active",
            )
            .limit(1)
        ):
            continue
        # The record now lives at the receiving archive; here only its tombstone remains.
        unit.status = "destroyed"
        session.add(
            unit_tombstone(
                unit, d, at=at, title=f"{unit.title} (versé à {sent['archival_agency']})"
            )
        )
        gone.append(unit.id)
    session.flush()
    return gone


def units_digest(unit_ids: Sequence[str]) -> str:
    """SHA-256 of unit ids, one per line, in the order given."""
    return hashlib.sha256("".join(f"{u}\n" for u in unit_ids).encode()).hexdigest()
