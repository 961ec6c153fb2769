"""Recording the departmental archives' visa on a disposal list, with its signed document.

One implementation for the API, the console and the CLI, which only translate: the visa is
checked first, so that a refused visa leaves no record behind; then the signed PDF is archived
as a record of the archives service (SAE deposits it itself; the ``disposal.visa_recorded``
event names the archivist), and the visa is recorded. The caller commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from sqlalchemy.orm import Session

from sae.auth.service import SYSTEM
from sae.config import Settings
from sae.errors import PayloadTooLarge
from sae.retention import disposal, records
from sae.retention.config import retention_settings
from sae.retention.errors import InvalidVisa
from sae.retention.models import DisposalList
from sae.storage.base import StorageOffer

#: The largest signed visa document accepted.
MAX_VISA_BYTES = 50 * 1024 * 1024


def check_visa_document(data: bytes) -> None:
    """The visa document must be a PDF (the signed bordereau) of a sensible size."""
    if len(data) > MAX_VISA_BYTES:
        raise PayloadTooLarge(f"the visa document is over {MAX_VISA_BYTES} bytes")
    if not data.startswith(b"%PDF-"):
        raise InvalidVisa("the visa document must be a PDF (the signed bordereau)")


def record_visa_with_document(
    session: Session,
    *,
    settings: Settings,
    offers: Sequence[StorageOffer],
    actor: str,
    list_id: str,
    reference: str,
    decision_date: date,
    excluded: list[str],
    document: bytes,
) -> DisposalList:
    """Check, archive the signed document, record the visa; returns the list."""
    check_visa_document(document)
    d = disposal.get_list(session, list_id, for_update=True)
    disposal.validate_visa(
        session, d, reference=reference, decision_date=decision_date, excluded=excluded
    )
    cfg = retention_settings()
    record = records.archive_record(
        session,
        settings=settings,
        offers=offers,
        principal=SYSTEM,
        archives_service=cfg.archives_service,
        message_id=f"{d.reference}-VISA",
        title=f"Visa d'élimination {reference} ({d.reference})",
        description=f"Bordereau {d.reference} visé par {cfg.control_authority}, décision "
        f"{reference} du {decision_date.isoformat()}",
        filename=f"visa-{d.reference}.pdf",
        data=document,
        mime="application/pdf",
    )
    disposal.record_visa(
        session,
        d,
        actor=actor,
        reference=reference,
        decision_date=decision_date,
        excluded=excluded,
        visa_unit_id=record.unit_id,
        visa_object_id=record.object_id,
        visa_sha512=record.sha512,
    )
    return d
