"""Archiving the documents of the disposal circuit as records of the archives service.

The signed visa, the destruction certificate and the SEDA destruction notification prove a
lawful destruction forever, so they are archived like any other record: through the ingest
pipeline (stored on every offer, catalogued, journaled, ATR), with an explicit Keep final
action and the archives service as producer. The manifest is small and built here; its
MessageIdentifier names the list and the document, so a resumed execution finds the record it
already archived instead of archiving it twice.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lxml import etree
from sqlalchemy import select
from sqlalchemy.orm import Session

from sae import db
from sae.auth.service import Principal
from sae.catalog.models import ArchiveUnit, DataObject
from sae.config import Settings
from sae.errors import SAEError
from sae.ingest.models import Transfer
from sae.ingest.service import IngestEnv, ingest
from sae.storage.base import StorageOffer

SEDA_NS = "fr:gouv:culture:archivesdefrance:seda:v2.2"


class RecordNotArchived(SAEError):
    """A document of the disposal circuit could not be archived (a bug or a storage fault)."""

    code = "disposal.record_not_archived"
    status = 500
    title = "Record not archived"


@dataclass(frozen=True)
class ArchivedRecord:
    """The unit and object a document became."""

    unit_id: str
    object_id: str
    sha512: str
    transfer_id: str


def _el(parent: etree._Element, tag: str, text: str | None = None,
        **attrib: str) -> etree._Element:
    element = etree.SubElement(parent, f"{{{SEDA_NS}}}{tag}", attrib)
    if text is not None:
        element.text = text
    return element


def record_manifest(
    *,
    message_id: str,
    archives_service: str,
    title: str,
    description: str,
    filename: str,
    data: bytes,
    mime: str,
) -> bytes:
    """A one-unit, one-file SEDA 2.2 ArchiveTransfer, Keep, produced by the archives service."""
    nsmap: Any = {None: SEDA_NS}
    root = etree.Element(f"{{{SEDA_NS}}}ArchiveTransfer", nsmap=nsmap)
    _el(root, "Comment", "Document du circuit d'élimination, archivé par SAE")
    _el(root, "Date", db.utcnow().replace(microsecond=0).isoformat())
    _el(root, "MessageIdentifier", message_id)
    codes = _el(root, "CodeListVersions")
    _el(codes, "ReplyCodeListVersion", "ReplyCodeListVersion0")
    _el(codes, "MessageDigestAlgorithmCodeListVersion", "MessageDigestAlgorithmCodeListVersion0")
    _el(codes, "FileFormatCodeListVersion", "FileFormatCodeListVersion0")
    package = _el(root, "DataObjectPackage")
    group = _el(package, "DataObjectGroup", id="GOT-1")
    bdo = _el(group, "BinaryDataObject", id="BDO-1")
    _el(bdo, "DataObjectVersion", "BinaryMaster_1")
    _el(bdo, "Uri", f"Content/{filename}")
    _el(bdo, "MessageDigest", hashlib.sha512(data).hexdigest(), algorithm="SHA-512")
    _el(bdo, "Size", str(len(data)))
    fmt = _el(bdo, "FormatIdentification")
    _el(fmt, "MimeType", mime)
    info = _el(bdo, "FileInfo")
    _el(info, "Filename", filename)
    descriptive = _el(package, "DescriptiveMetadata")
    unit = _el(descriptive, "ArchiveUnit", id="AU-1")
    management = _el(unit, "Management")
    appraisal = _el(management, "AppraisalRule")
    _el(appraisal, "FinalAction", "Keep")
    content = _el(unit, "Content")
    _el(content, "DescriptionLevel", "Item")
    _el(content, "Title", title)
    _el(content, "Description", description)
    reference = _el(unit, "DataObjectReference")
    _el(reference, "DataObjectGroupReferenceId", "GOT-1")
    mm = _el(package, "ManagementMetadata")
    _el(mm, "OriginatingAgencyIdentifier", archives_service)
    agency = _el(root, "ArchivalAgency")
    _el(agency, "Identifier", archives_service)
    transferring = _el(root, "TransferringAgency")
    _el(transferring, "Identifier", archives_service)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def _existing(session: Session, message_id: str, archives_service: str) -> ArchivedRecord | None:
    transfer = session.scalar(
        select(Transfer).where(
            Transfer.status == "OK",
            Transfer.message_identifier == message_id,
            Transfer.transferring_agency == archives_service,
        )
    )
    if transfer is None:
        return None
    unit = session.scalar(select(ArchiveUnit).where(ArchiveUnit.transfer_id == transfer.id))
    obj = session.scalar(select(DataObject).where(DataObject.transfer_id == transfer.id))
    if unit is None or obj is None or obj.sha512 is None:
        return None
    return ArchivedRecord(unit.id, obj.id, obj.sha512, transfer.id)


def archive_record(
    session: Session,
    *,
    settings: Settings,
    offers: Sequence[StorageOffer],
    principal: Principal,
    archives_service: str,
    message_id: str,
    title: str,
    description: str,
    filename: str,
    data: bytes,
    mime: str,
) -> ArchivedRecord:
    """Archive ``data`` as a record (flush, no commit), or return the one already archived."""
    found = _existing(session, message_id, archives_service)
    if found is not None:
        return found
    manifest = record_manifest(
        message_id=message_id, archives_service=archives_service, title=title,
        description=description, filename=filename, data=data, mime=mime,
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.xml", manifest)
        archive.writestr(f"Content/{filename}", data)
    spool_dir = Path(settings.data_dir) / "tmp"
    spool_dir.mkdir(parents=True, exist_ok=True)
    path = spool_dir / f"record-{db.new_id()}.zip"
    path.write_bytes(buffer.getvalue())
    try:
        outcome = ingest(session, IngestEnv(settings=settings, offers=offers), principal, path)
    finally:
        path.unlink(missing_ok=True)
    if not outcome.accepted or not outcome.units or not outcome.objects:
        raise RecordNotArchived(
            f"the document {filename!r} could not be archived: {outcome.transfer.errors}",
        )
    obj = outcome.objects[0]
    assert obj.sha512 is not None
    return ArchivedRecord(outcome.units[0].id, obj.id, obj.sha512, outcome.transfer.id)
