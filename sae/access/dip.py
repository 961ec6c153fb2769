"""DIP export: a unit and its descendants, their objects, and a proof bundle for each object.

The zip holds ``manifest.xml`` (a SEDA ArchiveDeliveryRequestReply in the unit's SEDA version,
each unit's ``Content`` returned exactly as the producer sent it), ``Content/…`` (the objects,
each streamed from a healthy copy with its SHA-512 checked) and ``proofs/<object id>.zip`` (the
proof bundle an auditor checks offline). Every export is journaled with the digests it carried.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

import seda
from sae.access import register
from sae.access.service import check_read_access, open_content
from sae.auth.service import Principal
from sae.catalog import service as catalog
from sae.catalog.errors import ObjectNotFound, UnitNotFound
from sae.catalog.models import GONE, ArchiveUnit, DataObject, UnitLink
from sae.catalog.rows import digitization
from sae.config import Settings
from sae.db import new_id, utcnow
from sae.fileio import spool_file
from sae.ingest.models import Transfer
from sae.journal import proofs
from sae.journal.sealing import seal_now
from sae.journal.service import append_event
from sae.storage.base import StorageOffer

_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")


@dataclass
class Dip:
    """A DIP written to a temporary file (the caller streams then deletes it)."""

    path: Path
    unit_ids: list[str]
    object_ids: list[str]
    size: int


def descendants(session: Session, unit_id: str) -> tuple[list[str], dict[str, list[str]]]:
    """``unit_id`` and every unit below it, each once, parents before children; and the
    children of each, a unit shared by several parents being placed under the first met."""
    order = [unit_id]
    children: dict[str, list[str]] = {unit_id: []}
    frontier = [unit_id]
    while frontier:
        rows = session.execute(
            select(UnitLink.parent_id, UnitLink.child_id)
            .where(UnitLink.parent_id.in_(frontier))
            .order_by(UnitLink.parent_id, UnitLink.position)
        ).all()
        frontier = []
        for parent, child in rows:
            if child not in children:
                children[child] = []
                children[parent].append(child)
                order.append(child)
                frontier.append(child)
    return order, children


def format_litteral(obj: DataObject) -> str | None:
    """PRONOM's name of the identified format, with its version when the name lacks it."""
    name = obj.format_name
    if not name:
        return None
    version = obj.format_version
    return f"{name} {version}" if version and version not in name else name


def dip_format(obj: DataObject) -> seda.FormatIdentification:
    """An object's ``FormatIdentification`` in a DIP: what SAE identified from the content
    (PRONOM's PUID and name, libmagic's MIME type), the declaration where nothing was."""
    if obj.format_puid:
        return seda.FormatIdentification(
            format_litteral=format_litteral(obj), mime_type=obj.mime_type, format_id=obj.format_puid
        )
    return seda.FormatIdentification(
        format_litteral=obj.format_litteral,
        mime_type=obj.mime_type,
        format_id=obj.declared_format_id,
    )


def _entry_name(obj: DataObject) -> str:
    base = _UNSAFE.sub("_", (obj.filename or obj.sip_id or "objet").strip()) or "objet"
    return f"Content/{obj.id}-{base[:120]}"


def build_dip(
    sessions: sessionmaker[Session],
    settings: Settings,
    offers: dict[str, StorageOffer],
    principal: Principal,
    unit_id: str,
) -> Dip:
    """Assemble the DIP of ``unit_id`` (what ``principal`` may see of it) into a temp file."""
    with sessions() as session:
        root = session.get(ArchiveUnit, unit_id)
        if root is None or not catalog.may_see_unit(session, principal, root):
            raise UnitNotFound(f"no archive unit {unit_id}")
        ids, children = descendants(session, unit_id)
        rows = {
            u.id: u for u in session.scalars(select(ArchiveUnit).where(ArchiveUnit.id.in_(ids)))
        }
        # What the caller may not see is not in the DIP at all, not even named in its manifest.
        seen = catalog.visibilities(session, principal, list(rows.values()))
        units = [rows[i] for i in ids if i in rows and seen[i] == catalog.FULL]
        objects: list[DataObject] = []
        withheld: list[str] = []
        for unit in units:
            for obj in catalog.objects_of_unit(session, unit):
                if obj.kind != "binary" or obj.status in GONE or obj in objects:
                    continue
                try:
                    check_read_access(session, principal, obj)
                except ObjectNotFound:
                    # An object shared with a unit the reader may not read yet: named, not sent.
                    withheld.append(obj.id)
                    continue
                objects.append(obj)
        transfer = session.get(Transfer, root.transfer_id)
        version = seda.SedaVersion(
            transfer.seda_version if transfer and transfer.seda_version else "2.2"
        )
    # Proofs need a sealed head covering every object's ingest leaf.
    seal_now(sessions, settings, wait=True)
    with (
        spool_file(settings.data_dir / "tmp", "dip-", ".zip") as (fd, path),
        open(fd, "wb") as fh,
        zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED, allowZip64=True) as zf,
    ):
        entries = _write_objects(zf, sessions, offers, objects)
        with sessions() as session:
            for obj in objects:
                zf.writestr(
                    f"proofs/{obj.id}.zip", proofs.object_bundle(session, obj.id, settings=settings)
                )
        zf.writestr(
            "manifest.xml",
            _manifest(
                version,
                settings,
                principal,
                root_id=unit_id,
                units=units,
                children=children,
                objects=objects,
                entries=entries,
                withheld=withheld,
            ),
            compress_type=zipfile.ZIP_DEFLATED,
        )
    size = path.stat().st_size
    try:
        # Every read of an archive is journaled: a DIP whose export cannot be is not handed out.
        with sessions() as session:
            payload: dict[str, Any] = {
                "units": [u.id for u in units],
                "size": size,
                "withheld": withheld,
            }
            # A reader's or a depositor's DIP is a communication of every unit in it.
            entry = register.payload_for(session, principal, [u.id for u in units])
            if entry is not None:
                payload["register"] = entry
            event = append_event(
                session,
                type="access.dip_exported",
                actor=principal.actor,
                unit_id=unit_id,
                object_digests={o.id: o.sha512 for o in objects if o.sha512},
                payload=payload,
            )
            register.record(
                session,
                leaf=event.leaf_index,
                at=event.occurred_at,
                event_type=event.type,
                object_id=None,
                payload=payload,
            )
            session.commit()
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return Dip(path, [u.id for u in units], [o.id for o in objects], size)


def _write_objects(
    zf: zipfile.ZipFile,
    sessions: sessionmaker[Session],
    offers: dict[str, StorageOffer],
    objects: Sequence[DataObject],
) -> dict[str, str]:
    entries: dict[str, str] = {}
    for obj in objects:
        with sessions() as session:
            copies = catalog.copies_of(session, obj.id)
        stream = open_content(sessions, offers, obj, copies)
        name = _entry_name(obj)
        with zf.open(name, "w", force_zip64=True) as out:
            for chunk in stream:
                out.write(chunk)
        entries[obj.id] = name
    return entries


def _manifest(
    version: seda.SedaVersion,
    settings: Settings,
    principal: Principal,
    *,
    root_id: str,
    units: Sequence[ArchiveUnit],
    children: dict[str, list[str]],
    objects: Sequence[DataObject],
    entries: dict[str, str],
    withheld: Sequence[str] = (),
) -> bytes:
    visible = {u.id for u in units}
    delivered_groups = {o.group_id for o in objects}
    seda_units = [
        seda.ArchiveUnit(
            id=f"AU-{unit.id}",
            title=unit.title,
            content_xml=unit.content_xml,
            system_ids=[unit.id],
            data_object_group_id=(
                f"GOT-{unit.data_object_group_id}"
                if unit.data_object_group_id in delivered_groups
                else None
            ),
            child_unit_ids=[f"AU-{c}" for c in children.get(unit.id, []) if c in visible],
        )
        for unit in units
    ]
    groups: dict[str, list[str]] = {}
    bdos = []
    for obj in objects:
        groups.setdefault(obj.group_id, []).append(f"BDO-{obj.id}")
        bdos.append(
            seda.BinaryDataObject(
                id=f"BDO-{obj.id}",
                group_id=f"GOT-{obj.group_id}",
                uri=entries[obj.id],
                message_digest=obj.sha512,
                digest_algorithm="SHA-512",
                size=obj.size,
                format=dip_format(obj),
                file_info=seda.FileInfo(filename=obj.filename) if obj.filename else None,
                data_object_version=obj.data_object_version,
                data_object_system_id=obj.id,
                digitization=digitization(obj.scan_chain),
            )
        )
    package = seda.DataObjectPackage(
        binary_data_objects=bdos,
        data_object_groups=[
            seda.DataObjectGroup(id=f"GOT-{gid}", object_ids=ids) for gid, ids in groups.items()
        ],
        archive_units=seda_units,
        root_unit_ids=[f"AU-{root_id}"],
    )
    reply = seda.ArchiveDeliveryRequestReply(
        version=version,
        message_identifier=f"DIP-{new_id()}",
        date=utcnow(),
        message_request_identifier=f"GET /api/v1/units/{root_id}/dip",
        archival_agency_identifier=settings.origin,
        requester_identifier=principal.label or principal.actor,
        unit_identifiers=[u.id for u in units],
        comments=[
            f"Communication de l'unité {root_id} ({len(units)} unités, {len(objects)} objets)",
            *(
                [
                    f"{len(withheld)} objet(s) non communicable(s) à ce jour non inclus : "
                    + ", ".join(withheld)
                ]
                if withheld
                else []
            ),
        ],
        package=package,
    )
    return seda.write_archive_delivery_request_reply(reply)


__all__ = ["Dip", "build_dip", "descendants"]
