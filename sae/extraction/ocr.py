"""The server's OCR of archived scans (``SAE_OCR=1``), after their transfer is accepted.

A scan archived as its group's master (``BinaryMaster_*``, or no version declared) — a TIFF,
JPEG or PNG image, or a PDF whose text reader found pages but no text — is OCRed into a
searchable PDF/A-2b (:func:`sae.extraction.ocrmypdf.to_pdfa`, ``SAE_OCR_LANGUAGES``), which is
added to the same object group as ``Dissemination_1``: a version for reading and searching; the
scan stays the master, untouched. A group that already has a dissemination version (the
depositor ran ``sae deposit --ocr``) is skipped.

The PDF/A is stored as a deposit stores its files (:func:`sae.storage.service.store_copies`:
every offer of the strategy, the first copy read back to feed the others, each offer's WORM
lock and quarantine), locked until the master's own copy (and held if the master is), hashed
SHA-512, and recorded in one transaction with its text (search finds its words at once) and an
``ocr.object_added`` event whose payload lets ``sae rebuild`` restore the object and its copies
(:mod:`sae.extraction.replay`). A failure of ocrmypdf is recorded on the job (``ocr_jobs``:
attempts, error, next try), tried again at most :data:`MAX_ATTEMPTS` times with a growing delay;
the master is only ever read.

Runs in the background worker (:mod:`sae.extraction.worker`), in a pool of ``SAE_OCR_WORKERS``
threads (each ocrmypdf on one core), in the one process of the installation holding the
``extraction.text`` lease.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from sae.catalog.models import DataObject, ObjectText
from sae.catalog.objecttext import refresh_groups
from sae.catalog.rows import storage_key
from sae.db import new_id, transaction, utcnow
from sae.extraction.models import OcrJob
from sae.extraction.ocrmypdf import IMAGE_TYPES, OcrFailed, to_pdfa
from sae.extraction.pdftext import pdf_text
from sae.extraction.service import PDF_TYPES, spool
from sae.journal.service import append_event
from sae.storage.base import StorageOffer, StoredObject
from sae.storage.errors import StorageError
from sae.storage.models import ObjectCopy
from sae.storage.service import discard_copies, hold_copies, store_copies

log = logging.getLogger("sae.extraction")

ACTOR = "system:ocr"
EVENT = "ocr.object_added"
#: The DataObjectVersion of the PDF/A: a version for reading and searching the master scan.
VERSION = "Dissemination_1"
#: ocrmypdf is tried this many times on one scan; then the job stays ``failed`` (metrics).
MAX_ATTEMPTS = 3
#: The delay before the next try, doubled after each failure.
RETRY_AFTER = timedelta(minutes=10)
#: Scans looked up at a time.
BATCH = 8
_SUFFIX = {"image/tiff": ".tif", "image/jpeg": ".jpg", "image/png": ".png"}


@dataclass(frozen=True)
class OcrOutcome:
    object_id: str
    state: str  # done | failed | skipped | gone
    derived_id: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class OcrCounts:
    done: int
    retrying: int
    given_up: int


def ocr_counts(session: Session) -> OcrCounts:
    """How many scans the server OCRed, failed to OCR (and will try again), gave up on."""

    def count(*where: Any) -> int:
        return int(session.scalar(select(func.count()).select_from(OcrJob).where(*where)) or 0)

    done = count(OcrJob.state == "done")
    retrying = count(OcrJob.state == "failed", OcrJob.attempts < MAX_ATTEMPTS)
    given_up = count(OcrJob.state == "failed", OcrJob.attempts >= MAX_ATTEMPTS)
    return OcrCounts(done, retrying, given_up)


def failed_jobs(session: Session, limit: int = 100) -> list[OcrJob]:
    """The OCR jobs that failed, the latest first (for the console and the CLI)."""
    return list(
        session.scalars(
            select(OcrJob)
            .where(OcrJob.state == "failed")
            .order_by(OcrJob.updated_at.desc())
            .limit(limit)
        )
    )


def _is_master(version: Any) -> Any:
    return or_(version.is_(None), version.like("BinaryMaster%"))


def candidates(session: Session, limit: int) -> list[DataObject]:
    """Masters to OCR: images, and PDFs read as pages without text; never OCRed or due for
    another try; oldest first."""
    image_only_pdf = exists().where(
        ObjectText.object_id == DataObject.id,
        ObjectText.state == "empty",
        ObjectText.pages > 0,
        ObjectText.note.like("aucun texte%"),
    )
    stmt = (
        select(DataObject)
        .outerjoin(OcrJob, OcrJob.object_id == DataObject.id)
        .where(
            DataObject.kind == "binary",
            DataObject.status == "active",
            DataObject.sha512.is_not(None),
            DataObject.storage_key.is_not(None),
            _is_master(DataObject.data_object_version),
            or_(
                DataObject.mime_type.in_(IMAGE_TYPES),
                and_(DataObject.mime_type.in_(PDF_TYPES), image_only_pdf),
            ),
            or_(
                OcrJob.object_id.is_(None),
                and_(
                    OcrJob.state == "failed",
                    OcrJob.attempts < MAX_ATTEMPTS,
                    OcrJob.next_try_at <= utcnow(),
                ),
            ),
        )
        .order_by(DataObject.created_at, DataObject.id)
        .limit(limit)
    )
    found = list(session.scalars(stmt))
    skipped = [obj for obj in found if session.scalar(select(has_dissemination_of(obj)))]
    for obj in skipped:
        _job(session, obj.id).state = "skipped"
    return [obj for obj in found if obj not in skipped]


def has_dissemination_of(obj: DataObject) -> Any:
    """Whether ``obj``'s group already has a dissemination version."""
    return exists().where(
        DataObject.group_id == obj.group_id,
        DataObject.id != obj.id,
        DataObject.status == "active",
        DataObject.data_object_version.like("Dissemination%"),
    )


def _job(session: Session, object_id: str) -> OcrJob:
    job = session.get(OcrJob, object_id)
    if job is None:
        job = OcrJob(object_id=object_id, state="pending", attempts=0)
        session.add(job)
    job.updated_at = utcnow()
    return job


def _digest(path: Path) -> tuple[str, int]:
    digest = hashlib.sha512()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _master_lock(offers: Sequence[StorageOffer], key: str) -> StoredObject | None:
    """The master's copy as the first offer that answers sees it (its lock and hold)."""
    for offer in offers:
        try:
            head = offer.head(key)
        except StorageError:
            continue
        if head is not None:
            return head
    return None


def ocr_object(
    sessions: sessionmaker[Session],
    offers: Sequence[StorageOffer],
    obj: DataObject,
    directory: Path,
    *,
    languages: str = "fra",
) -> OcrOutcome:
    """OCR one master scan and add its PDF/A to its group (stored, recorded, journaled); a
    failure is recorded on its job. The master is only read."""
    assert obj.storage_key is not None
    # Private files of the spool (``sweep_spool`` removes those a crash leaves behind).
    source = spool(offers, obj, directory, suffix=_SUFFIX.get(obj.mime_type or "", ".pdf"))
    if source is None:  # no copy checks out: the auditor's business; tried again later
        return _failed(sessions, obj.id, "aucune copie lisible de l'original")
    fd, name = tempfile.mkstemp(prefix="ocr-", suffix=".pdf", dir=directory)
    os.close(fd)
    out = Path(name)
    try:
        try:
            to_pdfa(source, out, mime_type=obj.mime_type, languages=languages)
        except OcrFailed as exc:
            return _failed(sessions, obj.id, exc.detail)
        sha512, size = _digest(out)
        extracted = pdf_text(out)
        derived_id = new_id()
        key = storage_key(derived_id)
        master = _master_lock(offers, obj.storage_key)
        try:
            with out.open("rb") as stream:
                copies = store_copies(
                    offers,
                    key,
                    stream,
                    retain_until=master.retain_until if master is not None else None,
                    expected_sha512=sha512,
                )
        except StorageError as exc:
            return _failed(sessions, obj.id, f"PDF/A non stocké : {exc.detail}")
    finally:
        source.unlink(missing_ok=True)
        out.unlink(missing_ok=True)
    if master is not None and master.legal_hold:
        hold_copies([(c.offer, c.key) for c in copies], {o.name: o for o in offers}, True)
    with transaction(sessions) as session:
        current = session.get(DataObject, obj.id)
        if (
            current is None
            or current.status != "active"
            or session.scalar(select(has_dissemination_of(current)))
        ):
            gone = True
        else:
            gone = False
            _record(session, current, derived_id, key, sha512, size, copies, languages)
            session.add(
                ObjectText(
                    object_id=derived_id,
                    state=extracted.state,
                    source="ocr",
                    text=extracted.text,
                    pages=extracted.pages,
                    note=extracted.note,
                    extracted_at=utcnow(),
                )
            )
            session.flush()
            refresh_groups(session, [current.group_id])
    if gone:  # destroyed or withdrawn meanwhile (or OCRed by another): its PDF/A goes too
        try:
            discard_copies(offers, key)
        except StorageError as exc:
            log.warning("ocr.discard_incomplete key=%s: %s", key, exc)
        return OcrOutcome(obj.id, "gone")
    log.info("ocr.done object=%s pdfa=%s pages=%s", obj.id, derived_id, extracted.pages)
    return OcrOutcome(obj.id, "done", derived_id)


def _failed(sessions: sessionmaker[Session], object_id: str, error: str) -> OcrOutcome:
    log.warning("ocr.failed object=%s: %s", object_id, error)
    with transaction(sessions) as session:
        job = _job(session, object_id)
        job.state = "failed"
        job.attempts += 1
        job.error = error[:2000]
        job.next_try_at = utcnow() + RETRY_AFTER * (2 ** (job.attempts - 1))
    return OcrOutcome(object_id, "failed", error=error)


def _record(
    session: Session,
    master: DataObject,
    derived_id: str,
    key: str,
    sha512: str,
    size: int,
    copies: Sequence[StoredObject],
    languages: str,
) -> None:
    """The PDF/A's rows, its job done and the event a rebuild restores them from (flush)."""
    filename = f"{master.filename or master.sip_id}.ocr.pdf"
    sip_id = f"{master.sip_id}-ocr"
    columns = {
        "id": derived_id,
        "transfer_id": master.transfer_id,
        "group_id": master.group_id,
        "sip_id": sip_id,
        "kind": "binary",
        "filename": filename,
        "data_object_version": VERSION,
        "size": size,
        "sha512": sha512,
        "mime_type": "application/pdf",
        "storage_key": key,
        "status": "active",
    }
    now = utcnow()
    session.add(DataObject(**columns, created_at=now))
    session.flush()
    rows = [
        {
            "offer": c.offer,
            "key": c.key,
            "version_id": c.version_id,
            "size": c.size,
            "sha512": c.sha512 or sha512,
            "quarantine_ends_at": c.quarantine_ends_at.isoformat()
            if c.quarantine_ends_at
            else None,
        }
        for c in copies
    ]
    for copy, row in zip(copies, rows, strict=True):
        session.add(
            ObjectCopy(
                object_id=derived_id,
                offer=row["offer"],
                key=row["key"],
                version_id=row["version_id"],
                size=row["size"],
                sha512=row["sha512"],
                stored_at=now,
                quarantine_ends_at=copy.quarantine_ends_at,
            )
        )
    job = _job(session, master.id)
    job.state = "done"
    job.attempts += 1
    job.error = None
    job.next_try_at = None
    job.derived_id = derived_id
    append_event(
        session,
        type=EVENT,
        actor=ACTOR,
        transfer_id=master.transfer_id,
        object_id=derived_id,
        object_digests={derived_id: sha512},
        payload={
            "master_id": master.id,
            "at": now.isoformat(),
            "object": {k: v for k, v in columns.items() if k != "id"},
            "copies": rows,
            "languages": languages,
        },
    )
    session.flush()


def ocr_pending(
    sessions: sessionmaker[Session],
    offers: Sequence[StorageOffer],
    directory: Path,
    *,
    workers: int = 1,
    languages: str = "fra",
    keep: Any = None,
) -> list[OcrOutcome]:
    """OCR every scan due (in batches of :data:`BATCH`, ``workers`` at once)."""
    directory.mkdir(parents=True, exist_ok=True)
    outcomes: list[OcrOutcome] = []
    tried: set[str] = set()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sae-ocr") as pool:
        while True:
            with transaction(sessions) as session:
                batch = [o for o in candidates(session, BATCH) if o.id not in tried]
                session.expunge_all()
            if not batch:
                return outcomes
            tried.update(obj.id for obj in batch)
            outcomes.extend(
                pool.map(
                    lambda obj: ocr_object(sessions, offers, obj, directory, languages=languages),
                    batch,
                )
            )
            if callable(keep):
                keep()
