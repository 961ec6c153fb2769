"""Reading archived PDFs for their text, after their transfer is accepted.

Not on the deposit's path: pypdf reads a typical 10-page PDF in about 35 ms (measured,
docs/search.md) — a tenth more on a one-document deposit — and a damaged or huge PDF can take
far longer. The background worker (:mod:`sae.extraction.worker`) reads each PDF of the catalogue
that has no :class:`~sae.catalog.models.ObjectText` row yet, from a copy whose SHA-512 checks
out, and writes the rows of a batch and their units' search documents in one transaction;
``sae rebuild`` runs the same rounds at its end (the rows are derived data: rebuilt, not replayed).
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from sae.catalog.models import DataObject, ObjectText
from sae.catalog.objecttext import refresh_groups
from sae.db import transaction, utcnow
from sae.extraction.pdftext import Extracted, pdf_text
from sae.storage.base import StorageOffer
from sae.storage.errors import StorageError
from sae.storage.service import VERIFY_BEFORE_SERVING, open_verified

log = logging.getLogger("sae.extraction")

#: The formats whose text layer is read (libmagic's MIME type of the bytes, or the declared one).
PDF_TYPES = ("application/pdf",)
#: Objects looked up at a time. Each PDF is recorded in its own transaction as soon as read:
#: recorded in batches of 5 or 20 the commits cost 3.5 times less CPU per PDF, but the
#: server's peak during a 500-record deposit rose from about 285 to 316-374 MiB (corpus-one,
#: session 13), over the 300 MB every server keeps to; the cause was not found in the time
#: (the reader alone peaks at 141 MiB whatever the batch).
BATCH = 20
#: A PDF up to this size is read from its copy in memory (:func:`read_text`); a larger one
#: through a spool file. The offers hold a copy up to ``VERIFY_BEFORE_SERVING`` whole anyway.
IN_MEMORY_BYTES = VERIFY_BEFORE_SERVING
#: A PDF larger than this is not read for text (its row says so).
MAX_BYTES = 512 * 1024 * 1024


@dataclass
class Round:
    """What a round did: objects read (with or without text), and left for a later round
    (no copy could be read: the audit's business; the next process start tries again)."""

    read: int = 0
    with_text: int = 0
    skipped: list[str] = field(default_factory=list)


def pending(
    session: Session,
    *,
    since: datetime | None,
    after: tuple[datetime, str] | None,
    limit: int,
    before: datetime | None = None,
) -> list[DataObject]:
    """Archived PDFs with no text row, oldest first, created at ``since`` or later, before
    ``before`` when given, and after the keyset ``after`` (created_at, id)."""
    stmt = (
        select(DataObject)
        .outerjoin(ObjectText, ObjectText.object_id == DataObject.id)
        .where(
            ObjectText.object_id.is_(None),
            DataObject.kind == "binary",
            DataObject.status == "active",
            DataObject.sha512.is_not(None),
            DataObject.storage_key.is_not(None),
            (DataObject.mime_type.in_(PDF_TYPES) | DataObject.declared_mime_type.in_(PDF_TYPES)),
        )
        .order_by(DataObject.created_at, DataObject.id)
        .limit(limit)
    )
    if since is not None:
        stmt = stmt.where(DataObject.created_at >= since)
    if before is not None:
        stmt = stmt.where(DataObject.created_at < before)
    if after is not None:
        stmt = stmt.where(
            (DataObject.created_at > after[0])
            | ((DataObject.created_at == after[0]) & (DataObject.id > after[1]))
        )
    return list(session.scalars(stmt))


def spool(
    offers: Sequence[StorageOffer], obj: DataObject, directory: Path, *, suffix: str = ".pdf"
) -> Path | None:
    """A verified copy of ``obj`` in a private file of ``directory``; None if no copy of the
    offers checks out (the auditor reports and repairs that, not this reader)."""
    assert obj.sha512 is not None
    assert obj.storage_key is not None
    fd, name = tempfile.mkstemp(prefix="object-", suffix=suffix, dir=directory)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in open_verified(
                [(offer, obj.storage_key) for offer in offers], obj.sha512, expected_size=obj.size
            ):
                out.write(chunk)
    except StorageError as exc:
        path.unlink(missing_ok=True)
        log.warning("extraction.unreadable object=%s %s: %s", obj.id, exc.code, exc.detail)
        return None
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def read_text(offers: Sequence[StorageOffer], obj: DataObject, directory: Path) -> Extracted | None:
    """``obj``'s text, read from a copy whose SHA-512 checks out; None if no copy could be
    read. Up to :data:`IN_MEMORY_BYTES` the verified bytes are read in memory (the offer
    already holds them whole to check them): no spool file to create, write and unlink per
    PDF, which on this ext4 (``discard``) cost the reader more than pypdf does on a scan."""
    if (obj.size or 0) > MAX_BYTES:
        return Extracted("empty", "", 0, "PDF trop volumineux pour en lire le texte")
    if obj.size is not None and obj.size <= IN_MEMORY_BYTES:
        assert obj.sha512 is not None
        assert obj.storage_key is not None
        try:
            body = b"".join(
                open_verified(
                    [(offer, obj.storage_key) for offer in offers],
                    obj.sha512,
                    expected_size=obj.size,
                )
            )
        except StorageError as exc:
            log.warning("extraction.unreadable object=%s %s: %s", obj.id, exc.code, exc.detail)
            return None
        return pdf_text(io.BytesIO(body))
    path = spool(offers, obj, directory)
    if path is None:
        return None
    try:
        return pdf_text(path)
    finally:
        path.unlink(missing_ok=True)


def record_texts(
    sessions: sessionmaker[Session], read: Sequence[tuple[DataObject, Extracted]]
) -> None:
    """Record what was read of these objects, and their units' search documents, in one
    transaction (the background reader records one PDF at a time: see :data:`BATCH`).
    An object destroyed or withdrawn meanwhile keeps no text; one recorded by another process
    first (a lease overlapping its expiry) is left as it is."""
    if not read:
        return
    try:
        _record(sessions, read)
    except IntegrityError:
        if len(read) == 1:
            return  # another process recorded it first
        for one in read:  # which one another process recorded: each alone
            record_texts(sessions, [one])


def _record(sessions: sessionmaker[Session], read: Sequence[tuple[DataObject, Extracted]]) -> None:
    with transaction(sessions) as session:
        ids = [obj.id for obj, _ in read]
        current = {
            obj.id: obj for obj in session.scalars(select(DataObject).where(DataObject.id.in_(ids)))
        }
        groups: set[str] = set()
        now = utcnow()
        for obj, extracted in read:
            live = current.get(obj.id)
            if live is None or live.status != "active":
                continue  # destroyed or withdrawn meanwhile: its text is not kept
            session.add(
                ObjectText(
                    object_id=obj.id,
                    state=extracted.state,
                    source="pdf",
                    text=extracted.text,
                    pages=extracted.pages,
                    note=extracted.note,
                    extracted_at=now,
                )
            )
            # A row without text changes no unit's search document (refresh_groups reads the
            # rows with text only): a scan's group is not rewritten for nothing.
            if extracted.state == "text":
                groups.add(live.group_id)
        session.flush()
        refresh_groups(session, groups)


def extract_object(
    sessions: sessionmaker[Session],
    offers: Sequence[StorageOffer],
    obj: DataObject,
    directory: Path,
) -> Extracted | None:
    """Read ``obj``'s text and record it with its units' search document; None if no copy
    could be read (nothing recorded: a later round tries again)."""
    extracted = read_text(offers, obj, directory)
    if extracted is not None:
        record_texts(sessions, [(obj, extracted)])
    return extracted


def extract_pending(
    sessions: sessionmaker[Session],
    offers: Sequence[StorageOffer],
    directory: Path,
    *,
    since: datetime | None = None,
    stop: threading.Event | None = None,
    keep: object = None,
    before: Callable[[Session], datetime | None] | None = None,
) -> Round:
    """Read every archived PDF without a text row (created at ``since`` or later), looked up
    :data:`BATCH` at a time, each recorded as soon as read. ``keep`` (a callable) is called
    after each object, to renew a lease. ``before``, asked before each look-up, limits it to
    the PDFs created before the time it answers (None: every one): how the background reader
    leaves the processors to deposits (:mod:`sae.extraction.worker`)."""
    done = Round()
    directory.mkdir(parents=True, exist_ok=True)
    after: tuple[datetime, str] | None = None
    while stop is None or not stop.is_set():
        with sessions() as session:
            until = before(session) if before is not None else None
            batch = pending(session, since=since, after=after, limit=BATCH, before=until)
            session.expunge_all()
        if not batch:
            break
        for obj in batch:
            if stop is not None and stop.is_set():
                break
            after = (obj.created_at, obj.id)
            extracted = read_text(offers, obj, directory)
            if extracted is None:
                done.skipped.append(obj.id)
            else:
                record_texts(sessions, [(obj, extracted)])
                done.read += 1
                done.with_text += extracted.state == "text"
            if callable(keep):
                keep()
    return done
