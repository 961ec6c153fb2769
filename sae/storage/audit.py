"""Fixity audit: re-read copies, compare SHA-512, repair from a healthy copy, journal it all.

An audit is a row (``audits``) written by whoever asks for it (``POST /api/v1/audits``,
``sae audit``) and worked on by any SAE instance that claims it (:func:`run_audit`), batch by
batch, each batch its own transaction that advances ``cursor``: a worker that dies loses at
most one batch, and another instance takes the audit over once the heartbeat is stale.

What is compared is the catalog's SHA-512 (the fixity of record), never what an offer says
about itself. Copies are streamed, never loaded whole. Journal events:

* ``storage.copies_checked`` the copies a batch found healthy, compactly (one leaf per batch,
  or per :data:`CHECKED_PER_LEAF` copies): what a rebuild needs to show their check dates;
* ``storage.copy_damaged``  a copy found missing or corrupt (payload: offer, key, kind);
* ``storage.copy_repaired`` a copy rewritten from a healthy one (payload: from_offer…);
* ``storage.audit_completed`` / ``storage.audit_failed`` the outcome and counts.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from sae.catalog.models import DataObject
from sae.db import new_id, transaction, utcnow
from sae.journal.service import append_event
from sae.storage import repository
from sae.storage.errors import (
    AuditLost,
    AuditNotFound,
    AuditRequestInvalid,
    IntegrityMismatch,
    ObjectExists,
    ObjectMissing,
    StorageError,
)
from sae.storage.models import Audit, AuditProblem, ObjectCopy
from sae.storage.offers import OfferSet
from sae.storage.service import as_reader, copy_digest

log = logging.getLogger(__name__)

#: A worker that has not reported for this long is presumed dead; its audit may be taken over.
STALE_AFTER = timedelta(minutes=5)
#: Copies checked per transaction, and the bytes after which a transaction ends sooner: the most
#: work a crash can make an audit redo, and how often the worker reports (``heartbeat_at``).
#: Small objects come 500 at a time (one commit per copy's worth of 50 cost a tenth of the
#: audit of 100 KiB objects); large ones end the batch once 256 MiB have been read.
BATCH_SIZE = 500
BATCH_BYTES = 256 * 1024 * 1024
#: Healthy copies named per ``storage.copies_checked`` leaf: a batch larger than this (a caller
#: may ask for one) is journaled in several leaves, so that no leaf grows past ~20 kB.
CHECKED_PER_LEAF = 500
#: The key a copy has unless said otherwise (``sae.catalog.rows.storage_key``), spelt here as
#: the leaves' format: a ``storage.copies_checked`` entry that is an object id alone stands for
#: this key, whatever the code names keys later.
DEFAULT_KEY = "objects/{}"


def default_worker() -> str:
    """This process's name in ``audits.claimed_by``."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class AuditProgress:
    """What a batch did, for progress bars."""

    audit_id: str
    checked: int
    cursor: int


def create_audit(
    session: Session,
    offer_set: OfferSet,
    *,
    offers: list[str] | None = None,
    sample_rate: float = 1.0,
    repair: bool = True,
    requested_by: str = "system",
) -> Audit:
    """Record an audit to run (the caller commits; any instance will then pick it up)."""
    if not 0 < sample_rate <= 1:
        raise AuditRequestInvalid(f"sample_rate must be in (0, 1], got {sample_rate}")
    unknown = [name for name in offers or [] if name not in offer_set.offers]
    if unknown:
        raise AuditRequestInvalid(
            f"unknown offer(s) {', '.join(unknown)}; configured: {', '.join(offer_set.offers)}"
        )
    audit = Audit(
        id=new_id(),
        status="running",
        offers=list(offers) if offers else None,
        sample_rate=sample_rate,
        repair=repair,
        requested_by=requested_by,
        created_at=utcnow(),
        cursor=0,
        checked=0,
        unreachable=0,
    )
    session.add(audit)
    session.flush()
    return audit


def claim_audit(session: Session, worker: str, audit_id: str | None = None) -> Audit | None:
    """Take the oldest audit nobody alive works on (or ``audit_id``), or None."""
    now = utcnow()
    stale = now - STALE_AFTER
    for candidate in repository.audit_candidates(
        session, worker=worker, stale_before=stale, audit_id=audit_id
    ):
        if repository.take_audit(session, candidate, worker=worker, now=now, stale_before=stale):
            audit = session.get(Audit, candidate, populate_existing=True)
            assert audit is not None
            if audit.started_at is None:
                audit.started_at = now
            session.flush()
            return audit
    return None


def sampled(audit: Audit, object_id: str) -> bool:
    """Whether ``object_id`` is in the audit's sample: a fixed draw per audit, so that a
    resumed audit checks the same objects, and all copies of a drawn object are checked."""
    if audit.sample_rate >= 1:
        return True
    draw = hashlib.sha256(f"{audit.id}:{object_id}".encode()).digest()
    return int.from_bytes(draw[:8], "big") / 2**64 < audit.sample_rate


def audit_batch(
    session: Session,
    offer_set: OfferSet,
    audit: Audit,
    worker: str,
    *,
    limit: int = BATCH_SIZE,
    max_bytes: int = BATCH_BYTES,
) -> bool:
    """Check the next ``limit`` copies, fewer once ``max_bytes`` have been read; True while more
    remain. The caller commits."""
    if audit.claimed_by != worker:
        raise AuditLost(f"audit {audit.id} is now worked on by {audit.claimed_by}")
    rows = repository.copies_after(session, cursor=audit.cursor, offers=audit.offers, limit=limit)
    events: list[dict[str, Any]] = []
    more = len(rows) == limit
    # The batch: up to ``limit`` copies, ending once ``max_bytes`` are to be read (the sizes the
    # catalogue records, so that the batch is known before any copy is read).
    batch: list[tuple[ObjectCopy, DataObject]] = []
    planned = 0
    for done, (copy, obj) in enumerate(rows, start=1):
        if sampled(audit, obj.id):
            batch.append((copy, obj))
            planned += copy.size or 0
        audit.cursor = copy.id
        if planned >= max_bytes and done < len(rows):
            more = True  # the rest waits for the next transaction
            break
    readings = read_copies(offer_set, [copy for copy, _ in batch])
    # One check date for the whole batch, taken once every copy has been read: the copies were
    # read together (in parallel, before any is recorded), so a date per copy said nothing
    # more, and one date lets the batch's healthy copies be journaled in one small leaf.
    checked_at = utcnow()
    healthy: list[ObjectCopy] = []
    for copy, obj in batch:
        if _check_copy(session, offer_set, audit, copy, obj, readings[copy.id], events, checked_at):
            healthy.append(copy)
    events.extend(checked_events(audit, healthy, checked_at))
    # Journal last, just before the caller commits: appending takes the journal's lock, which
    # must not be held while copies are being read (that would stall every ingest meanwhile).
    for event in events:
        append_event(session, **event)
    audit.heartbeat_at = utcnow()
    session.flush()
    return more


#: What re-reading one copy gave: its (SHA-512, size), or why it could not be read.
Reading = tuple[str, int] | StorageError


def read_copies(offer_set: OfferSet, copies: Sequence[ObjectCopy]) -> dict[int, Reading]:
    """Re-read ``copies`` (streamed, hashed), each offer's in a thread of its own: an audit
    of two sites takes as long as the slower one, not both one after the other, and an offer
    that times out does not hold the others back. Copies of one offer are read in order."""
    by_offer: dict[str, list[ObjectCopy]] = {}
    for copy in copies:
        by_offer.setdefault(copy.offer, []).append(copy)

    def read_offer(name: str, mine: list[ObjectCopy]) -> dict[int, Reading]:
        offer = offer_set.offers.get(name)
        found: dict[int, Reading] = {}
        for copy in mine:
            if offer is None:
                found[copy.id] = ObjectMissing(name, copy.key)
                continue
            try:
                found[copy.id] = copy_digest(offer, copy.key)
            except StorageError as exc:
                found[copy.id] = exc
        return found

    readings: dict[int, Reading] = {}
    if len(by_offer) <= 1:
        for name, mine in by_offer.items():
            readings.update(read_offer(name, mine))
        return readings
    with ThreadPoolExecutor(len(by_offer), thread_name_prefix="sae-audit") as pool:
        for found in pool.map(lambda item: read_offer(*item), by_offer.items()):
            readings.update(found)
    return readings


def _check_copy(
    session: Session,
    offer_set: OfferSet,
    audit: Audit,
    copy: ObjectCopy,
    obj: DataObject,
    reading: Reading,
    events: list[dict[str, Any]],
    checked_at: datetime,
) -> bool:
    """Record what ``reading`` says of ``copy``; True when it is healthy (journaled with its
    batch's others by :func:`checked_events`), False when damaged (journaled here) or
    unreachable (nothing known, nothing recorded)."""
    expected = obj.sha512 or copy.sha512
    offer = offer_set.offers.get(copy.offer)
    if offer is None:
        kind, detail = "missing", f"offer {copy.offer!r} is no longer configured"
    elif isinstance(reading, ObjectMissing):
        kind, detail = "missing", "not on the offer"
    elif isinstance(reading, StorageError):
        # Unreachable is not missing: nothing is known about the copy, so nothing is recorded
        # against it; the audit counts it and stays honest about coverage.
        log.warning("storage.audit_unreachable offer=%s key=%s: %s", copy.offer, copy.key, reading)
        audit.unreachable += 1
        return False
    else:
        digest, size = reading
        if digest == expected and (obj.size is None or size == obj.size):
            kind, detail = "", ""
        else:
            kind, detail = "corrupt", f"sha512 {digest[:16]}…, size {size}"
    audit.checked += 1
    copy.last_checked_at = checked_at
    copy.last_check_ok = not kind
    if not kind:
        return True
    problem = AuditProblem(
        audit_id=audit.id,
        object_id=obj.id,
        copy_id=copy.id,
        offer=copy.offer,
        key=copy.key,
        kind=kind,
        repaired=False,
        detail=detail,
        found_at=checked_at,
    )
    session.add(problem)
    # What a replay needs to write the problem and the copy's check back (issue 17): the
    # audit's own columns (its row is not journaled when created), the dates, and — filled in
    # below, before the batch's events are appended — how the repair ended.
    payload: dict[str, Any] = {
        "audit_id": audit.id,
        "offer": copy.offer,
        "key": copy.key,
        "kind": kind,
        "detail": detail,
        "found_at": checked_at.isoformat(),
        "audit": _audit_columns(audit),
        "repaired": False,
        "last_check_ok": False,
    }
    events.append(
        dict(
            type="storage.copy_damaged",
            actor=f"audit:{audit.id}",
            object_id=obj.id,
            object_digests={obj.id: expected},
            payload=payload,
        )
    )
    if audit.repair and offer is not None:
        problem.repaired = _repair(session, offer_set, audit, copy, obj, expected, kind, events)
        payload["repaired"] = problem.repaired
        payload["last_check_ok"] = copy.last_check_ok
    return False


def checked_entry(copy: ObjectCopy) -> str | list[str]:
    """A healthy copy as a ``storage.copies_checked`` leaf names it under its offer: its object
    id when its key is :data:`DEFAULT_KEY`'s (~40 bytes), else ``[object id, key]``."""
    if copy.key == DEFAULT_KEY.format(copy.object_id):
        return copy.object_id
    return [copy.object_id, copy.key]


def entry_copy(entry: str | list[str]) -> tuple[str, str]:
    """The (object id, key) a :func:`checked_entry` names."""
    if isinstance(entry, str):
        return entry, DEFAULT_KEY.format(entry)
    object_id, key = entry
    return object_id, key


def checked_events(
    audit: Audit, healthy: Sequence[ObjectCopy], checked_at: datetime
) -> list[dict[str, Any]]:
    """The ``storage.copies_checked`` events of a batch's ``healthy`` copies, all checked at
    ``checked_at`` (issue 17: a rebuilt copy shows the check its audit made): one per
    :data:`CHECKED_PER_LEAF` copies, none when no copy was healthy.

    Payload: ``audit_id``, ``checked_at`` and ``copies``, offer -> entries in the batch's order
    (:func:`checked_entry`); every copy named was found healthy (``last_check_ok`` true).
    """
    found: list[dict[str, Any]] = []
    for start in range(0, len(healthy), CHECKED_PER_LEAF):
        copies: dict[str, list[str | list[str]]] = {}
        for copy in healthy[start : start + CHECKED_PER_LEAF]:
            copies.setdefault(copy.offer, []).append(checked_entry(copy))
        found.append(
            dict(
                type="storage.copies_checked",
                actor=f"audit:{audit.id}",
                payload={
                    "audit_id": audit.id,
                    "checked_at": checked_at.isoformat(),
                    "copies": copies,
                },
            )
        )
    return found


def _audit_columns(audit: Audit) -> dict[str, Any]:
    """An audit's columns as its events carry them (what ``GET /audits/{id}`` shows)."""
    return {
        "requested_by": audit.requested_by,
        "offers": audit.offers,
        "sample_rate": audit.sample_rate,
        "repair": audit.repair,
        "created_at": _iso(audit.created_at),
        "started_at": _iso(audit.started_at),
        "finished_at": _iso(audit.finished_at),
        "checked": audit.checked,
        "unreachable": audit.unreachable,
        "error": audit.error,
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _repair(
    session: Session,
    offer_set: OfferSet,
    audit: Audit,
    copy: ObjectCopy,
    obj: DataObject,
    expected: str,
    kind: str,
    events: list[dict[str, Any]],
) -> bool:
    target = offer_set.offers[copy.offer]
    for source in repository.other_copies(session, copy):
        origin = offer_set.offers.get(source.offer)
        if origin is None:
            continue
        try:
            head = origin.head(source.key)
            with as_reader(origin.get(source.key)) as stream:
                # replace_damaged checks the stream against ``expected`` before it replaces
                # anything: a source that is itself damaged can never spread.
                stored = target.replace_damaged(
                    copy.key,
                    stream,
                    expected_sha512=expected,
                    retain_until=head.retain_until if head is not None else None,
                )
        except ObjectExists:
            # It reads healthy now: the first read was a transient fault, not damage.
            copy.last_check_ok = True
            return True
        except (IntegrityMismatch, StorageError) as exc:
            log.warning(
                "storage.repair_source_rejected from=%s to=%s key=%s: %s",
                source.offer,
                copy.offer,
                copy.key,
                exc,
            )
            continue
        copy.version_id = stored.version_id
        copy.size = stored.size
        copy.quarantine_ends_at = stored.quarantine_ends_at
        copy.last_check_ok = True
        copy.last_checked_at = utcnow()
        events.append(
            dict(
                type="storage.copy_repaired",
                actor=f"audit:{audit.id}",
                object_id=obj.id,
                object_digests={obj.id: expected},
                payload={
                    "audit_id": audit.id,
                    "offer": copy.offer,
                    "key": copy.key,
                    "kind": kind,
                    "from_offer": source.offer,
                    "version_id": stored.version_id,
                    # The copy row as the repair left it, for a replay.
                    "size": stored.size,
                    "quarantine_ends_at": _iso(stored.quarantine_ends_at),
                    "checked_at": _iso(copy.last_checked_at),
                },
            )
        )
        log.info(
            "storage.copy_repaired offer=%s key=%s from=%s", copy.offer, copy.key, source.offer
        )
        return True
    return False


def finish_audit(session: Session, audit: Audit) -> None:
    """Mark done and journal the outcome (the caller commits)."""
    problems = repository.audit_problems(session, audit.id)
    audit.status = "done"
    audit.finished_at = utcnow()
    audit.claimed_by = None
    append_event(
        session,
        type="storage.audit_completed",
        actor=audit.requested_by,
        payload={
            "audit_id": audit.id,
            "offers": audit.offers,
            "sample_rate": audit.sample_rate,
            "checked": audit.checked,
            "unreachable": audit.unreachable,
            "problems": len(problems),
            "repaired": sum(1 for p in problems if p.repaired),
            "audit": _audit_columns(audit),
        },
    )
    session.flush()


def fail_audit(session: Session, audit_id: str, error: str) -> None:
    """Mark failed and journal why (the caller commits)."""
    audit = session.get(Audit, audit_id)
    if audit is None:
        return
    audit.status = "failed"
    audit.error = error[:2000]
    audit.finished_at = utcnow()
    audit.claimed_by = None
    append_event(
        session,
        type="storage.audit_failed",
        actor=audit.requested_by,
        payload={
            "audit_id": audit.id,
            "checked": audit.checked,
            "error": audit.error,
            "audit": _audit_columns(audit),
        },
    )
    session.flush()


def run_audit(
    sessions: sessionmaker[Session],
    offer_set: OfferSet,
    audit_id: str | None = None,
    *,
    worker: str | None = None,
    batch_size: int = BATCH_SIZE,
    batch_bytes: int = BATCH_BYTES,
    progress: Callable[[AuditProgress], None] | None = None,
) -> str | None:
    """The job runner: claim an audit (``audit_id`` or the oldest waiting), run it to the end.

    Owns its transactions: one to claim, one per batch, one to finish. Returns the audit id,
    or None when there was nothing to claim. Raises only :class:`AuditLost`; any other error
    marks the audit failed (journaled) and is logged.
    """
    me = worker or default_worker()
    with transaction(sessions) as session:
        audit = claim_audit(session, me, audit_id)
        if audit is None:
            return None
        claimed = audit.id
    try:
        more = True
        while more:
            with transaction(sessions) as session:
                audit = session.get(Audit, claimed, populate_existing=True)
                assert audit is not None
                more = audit_batch(
                    session, offer_set, audit, me, limit=batch_size, max_bytes=batch_bytes
                )
                state = AuditProgress(claimed, audit.checked, audit.cursor)
            if progress is not None:
                progress(state)
        with transaction(sessions) as session:
            audit = session.get(Audit, claimed, populate_existing=True)
            assert audit is not None
            finish_audit(session, audit)
    except AuditLost:
        raise
    except Exception as exc:
        log.exception("storage.audit_failed audit=%s", claimed)
        with transaction(sessions) as session:
            fail_audit(session, claimed, f"{type(exc).__name__}: {exc}")
    return claimed


def get_audit(session: Session, audit_id: str) -> tuple[Audit, list[AuditProblem]]:
    """An audit and its problems; :class:`AuditNotFound` otherwise."""
    audit = session.get(Audit, audit_id)
    if audit is None:
        raise AuditNotFound(audit_id)
    return audit, list(repository.audit_problems(session, audit_id))
