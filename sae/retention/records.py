"""Archiving the documents of the disposal circuit as records of the archives service.

The signed visa, the destruction certificate and the SEDA destruction notification prove a
lawful destruction forever, so they are archived like any other record: through the ingest
pipeline (stored on every offer, catalogued, journaled, ATR), with an explicit Keep final
action and the archives service as producer. The manifest is written by ``seda``; its
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

from sqlalchemy import select
from sqlalchemy.orm import Session

import seda
from sae import db
from sae.auth.service import Principal
from sae.catalog.models import ArchiveUnit, DataObject
from sae.config import Settings
from sae.errors import SAEError
from sae.ingest.models import Transfer
from sae.ingest.service import IngestEnv, ingest
from sae.storage.base import StorageOffer


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


#: The code lists the messages SAE writes declare (the same as the SIPs it receives).
CODE_LISTS = {
    "ReplyCodeListVersion": "ReplyCodeListVersion0",
    "MessageDigestAlgorithmCodeListVersion": "MessageDigestAlgorithmCodeListVersion0",
    "FileFormatCodeListVersion": "FileFormatCodeListVersion0",
}


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
    package = seda.DataObjectPackage(
        binary_data_objects=[
            seda.BinaryDataObject(
                id="BDO-1",
                group_id="GOT-1",
                uri=f"Content/{filename}",
                message_digest=hashlib.sha512(data).hexdigest(),
                digest_algorithm="SHA-512",
                size=len(data),
                format=seda.FormatIdentification(mime_type=mime),
                file_info=seda.FileInfo(filename=filename),
                data_object_version="BinaryMaster_1",
            )
        ],
        data_object_groups=[seda.DataObjectGroup(id="GOT-1", object_ids=["BDO-1"])],
        archive_units=[
            seda.ArchiveUnit(
                id="AU-1",
                title=title,
                description=description,
                description_level="Item",
                management=seda.Management(
                    rules={
                        "AppraisalRule": seda.RuleCategory(
                            category="AppraisalRule", final_action="Keep"
                        )
                    }
                ),
                data_object_group_id="GOT-1",
            )
        ],
        root_unit_ids=["AU-1"],
        management_metadata=seda.ManagementMetadata(originating_agency_identifier=archives_service),
    )
    transfer = seda.ArchiveTransfer(
        version=seda.SedaVersion("2.2"),
        message_identifier=message_id,
        date=db.utcnow().replace(microsecond=0),
        comments=["Document du circuit d'élimination, archivé par SAE"],
        archival_agency_identifier=archives_service,
        transferring_agency_identifier=archives_service,
        code_list_versions=dict(CODE_LISTS),
        package=package,
    )
    return seda.write_archive_transfer(transfer)


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
        message_id=message_id,
        archives_service=archives_service,
        title=title,
        description=description,
        filename=filename,
        data=data,
        mime=mime,
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
        # The archives service's own record: no depositor's contract applies to it.
        env = IngestEnv(settings=settings, offers=offers, enforce_contracts=False)
        outcome = ingest(session, env, principal, path)
    finally:
        path.unlink(missing_ok=True)
    if not outcome.accepted or not outcome.units or not outcome.objects:
        raise RecordNotArchived(
            f"the document {filename!r} could not be archived: {outcome.transfer.errors}",
        )
    obj = outcome.objects[0]
    assert obj.sha512 is not None
    return ArchivedRecord(outcome.units[0].id, obj.id, obj.sha512, outcome.transfer.id)
