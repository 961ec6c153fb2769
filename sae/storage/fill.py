"""Fill the offers of the strategy that lack something (``sae fsck --repair``, issue 17 item 6).

Every offer of the strategy must hold the whole archive: each live object's bytes
(``objects/<id>``) and what SAE writes beside them (``transfers/<id>.zip``, the journal's
segments, recorded in ``metadata_copies``). An offer added to the strategy later — a second
site — holds none of it; an offer that lost a copy lacks one. :func:`find_gaps` lists, for each
strategy offer, every such key the catalogue records a copy of on another offer and that this
offer does not have; :func:`fill_offers` copies each from a healthy copy elsewhere:

* through the content's own write path (:func:`sae.storage.service.store_copies`): the offer
  refuses bytes without the SHA-512 the catalogue recorded and reads its copy back; the copy is
  locked until the source copy's retain-until (a legal hold too, when the source has one), in
  the target offer's quarantine;
* a source whose bytes do not have the recorded SHA-512 is never used (the target refuses them
  before anything is kept): the next copy is tried; when none is healthy, nothing is written
  and the gap is reported (``fill_failed``);
* a key on the target with no record of it there (a fill or a publication interrupted
  between its write and its record) is read back: recorded if it has the recorded SHA-512,
  reported and left alone otherwise, never overwritten;
* each copy is recorded (``object_copies`` / ``metadata_copies``) and journaled
  (``storage.copy_filled``, replayed by :mod:`sae.storage.replay`) in a transaction of its own,
  so an interrupted run loses nothing and the next one goes on from there.

What is being taken away is left alone: the objects and descriptions of a transfer being
withdrawn, the objects of units on a disposal list being executed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from sae.catalog.models import GONE, ArchiveUnit, DataObject
from sae.db import transaction, utcnow
from sae.journal.service import append_event
from sae.storage.base import StoredObject
from sae.storage.errors import OfferUnavailable, StorageError
from sae.storage.models import MetadataCopy, ObjectCopy
from sae.storage.offers import OfferSet
from sae.storage.service import (
    as_reader,
    copy_digest,
    extend_copies,
    hold_copies,
    store_copies,
)

log = logging.getLogger(__name__)

ACTOR = "cli:fsck"
EVENT = "storage.copy_filled"
#: ``Gap.kind`` of an object's bytes; a metadata copy's is its ``metadata_copies.kind``.
OBJECT = "object"


@dataclass(frozen=True, slots=True)
class Gap:
    """A key an offer of the strategy lacks, and the offers holding a recorded copy of it."""

    offer: str
    key: str
    kind: str
    sha512: str
    size: int
    sources: tuple[str, ...]
    object_id: str | None = None
    transfer_id: str | None = None
    tree_size: int | None = None


@dataclass(frozen=True, slots=True)
class FillOutcome:
    """What filling one gap did: ``filled`` from ``source`` (``adopted``: the key was found on
    the offer already, with the recorded SHA-512, and recorded), ``skipped`` (the object or
    description left the archive meanwhile), or why not (``detail``)."""

    gap: Gap
    filled: bool
    source: str | None = None
    adopted: bool = False
    skipped: bool = False
    detail: str = ""
    #: The target offer itself failed: the run stops asking it (its other gaps are reported).
    target_down: bool = False


def plan_fill(
    sessions: sessionmaker[Session], offer_set: OfferSet, *, offers: Iterable[str] | None = None
) -> list[Gap]:
    """List the strategy's offers (or those of ``offers``) and find their gaps; an offer that
    cannot be listed is left out (``sae fsck`` reports it unreachable)."""
    wanted = set(offers) if offers else None
    present: dict[str, set[str]] = {}
    for name in offer_set.strategy:
        if wanted is not None and name not in wanted:
            continue
        try:
            present[name] = set(offer_set.offers[name].list_keys())
        except StorageError as exc:
            log.warning("storage.fill_unlisted offer=%s: %s", name, exc.detail)
    with sessions() as session:
        return find_gaps(session, offer_set, present)


def find_gaps(
    session: Session,
    offer_set: OfferSet,
    present: dict[str, set[str]],
    *,
    offers: Iterable[str] | None = None,
) -> list[Gap]:
    """The gaps of the strategy's offers (or of those of ``offers`` that are in it), given
    the keys each holds (``present``: an offer missing from it could not be listed and is
    skipped). Objects first, then metadata, each in key order."""
    wanted = set(offers) if offers else None
    targets = [
        name
        for name in offer_set.strategy
        if name in present and (wanted is None or name in wanted)
    ]
    if not targets:
        return []
    gaps: list[Gap] = []
    objects = _object_copies(session)
    for target in targets:
        have = present[target]
        for (object_id, sha512, size), copies in objects.items():
            mine = [c for c in copies if c[0] == target]
            key = mine[0][1] if mine else copies[0][1]
            if mine and key in have:
                continue  # recorded and there (an audit checks its bytes)
            sources = tuple(offer for offer, _ in copies if offer != target)
            if sources:
                gaps.append(Gap(target, key, OBJECT, sha512, size, sources, object_id=object_id))
    metadata = _metadata_copies(session)
    for target in targets:
        have = present[target]
        for key, rows in metadata.items():
            if key in have and any(row.offer == target for row in rows):
                continue
            sources = tuple(row.offer for row in rows if row.offer != target)
            if not sources:
                continue
            first = rows[0]
            gaps.append(
                Gap(
                    target,
                    key,
                    first.kind,
                    first.sha512,
                    first.size,
                    sources,
                    transfer_id=first.transfer_id,
                    tree_size=first.tree_size,
                )
            )
    return gaps


def _leaving(session: Session) -> tuple[set[str], set[str]]:
    """The transfers being withdrawn, and the objects of units on a list being executed."""
    from sae.ingest.models import Transfer
    from sae.ingest.withdrawal import WITHDRAWING
    from sae.retention.models import DisposalLine, DisposalList

    withdrawing = set(session.scalars(select(Transfer.id).where(Transfer.status == WITHDRAWING)))
    groups = (
        select(ArchiveUnit.data_object_group_id)
        .join(DisposalLine, DisposalLine.unit_id == ArchiveUnit.id)
        .join(DisposalList, DisposalList.id == DisposalLine.list_id)
        .where(DisposalList.state == "executing")
    )
    executing = set(session.scalars(select(DataObject.id).where(DataObject.group_id.in_(groups))))
    return withdrawing, executing


def _object_copies(session: Session) -> dict[tuple[str, str, int], list[tuple[str, str]]]:
    """Each live object's (id, recorded SHA-512, size) -> its copies' (offer, key), the copies
    last found healthy first."""
    withdrawing, executing = _leaving(session)
    found: dict[tuple[str, str, int], list[tuple[str, str]]] = {}
    rows = session.execute(
        select(DataObject.id, DataObject.sha512, DataObject.size, DataObject.transfer_id)
        .add_columns(ObjectCopy.offer, ObjectCopy.key, ObjectCopy.sha512, ObjectCopy.size)
        .join(ObjectCopy, ObjectCopy.object_id == DataObject.id)
        .where(DataObject.status.not_in(GONE))
        # Known healthy copies first, then never checked ones (NULL: last on both databases;
        # PostgreSQL puts NULLs first in a descending order), then in the order they were made.
        .order_by(DataObject.id, ObjectCopy.last_check_ok.desc().nulls_last(), ObjectCopy.id)
    )
    for object_id, sha512, size, transfer_id, offer, key, copy_sha, copy_size in rows:
        if transfer_id in withdrawing or object_id in executing:
            continue
        # The object's SHA-512 is the fixity of record; a copy row's is what was written.
        found.setdefault((object_id, sha512 or copy_sha, size or copy_size), []).append(
            (offer, key)
        )
    return found


def _metadata_copies(session: Session) -> dict[str, list[MetadataCopy]]:
    withdrawing, _ = _leaving(session)
    found: dict[str, list[MetadataCopy]] = {}
    for row in session.scalars(select(MetadataCopy).order_by(MetadataCopy.key, MetadataCopy.id)):
        if row.transfer_id is not None and row.transfer_id in withdrawing:
            continue
        found.setdefault(row.key, []).append(row)
    return found


def fill_gap(session: Session, offer_set: OfferSet, gap: Gap, *, actor: str = ACTOR) -> FillOutcome:
    """Copy ``gap.key`` to ``gap.offer`` from the first healthy source; record and journal it
    in ``session`` (the caller commits). Nothing is written when no source is healthy."""
    target = offer_set.offers[gap.offer]
    try:
        there = target.head(gap.key)
    except StorageError as exc:
        return FillOutcome(gap, False, detail=exc.detail, target_down=True)
    if there is not None:
        return _adopt(session, offer_set, gap, there, actor)
    rejected: list[str] = []
    for name in gap.sources:
        source = offer_set.offers.get(name)
        if source is None:
            rejected.append(f"{name}: offer no longer configured")
            continue
        try:
            head = source.head(gap.key)
            if head is None:
                rejected.append(f"{name}: absent")
                continue
            # Read from the source, written by the target's own put: the target refuses bytes
            # that do not have the recorded SHA-512, and reads its copy back, before keeping it.
            with as_reader(source.get(gap.key)) as stream:
                (stored,) = store_copies(
                    [target],
                    gap.key,
                    stream,
                    retain_until=head.retain_until,
                    expected_sha512=gap.sha512,
                )
        except StorageError as exc:
            cause = exc.__cause__
            if isinstance(cause, OfferUnavailable) and cause.offer == gap.offer:
                # The target, not the source: no other source would do better.
                return FillOutcome(gap, False, detail=cause.detail, target_down=True)
            log.warning(
                "storage.fill_source_rejected from=%s to=%s key=%s: %s",
                name,
                gap.offer,
                gap.key,
                exc.detail,
            )
            rejected.append(f"{name}: {exc.detail}")
            continue
        if not _hold_like(offer_set, gap, head, stored):
            return FillOutcome(gap, False, detail=UNLOCKED)
        _record(session, gap, stored, source=name, actor=actor)
        log.info("storage.copy_filled offer=%s key=%s from=%s", gap.offer, gap.key, name)
        return FillOutcome(gap, True, source=name)
    return FillOutcome(gap, False, detail="no healthy copy: " + "; ".join(rejected))


def _adopt(
    session: Session, offer_set: OfferSet, gap: Gap, there: StoredObject, actor: str
) -> FillOutcome:
    """The key is on the target already: recorded when its bytes are the recorded ones."""
    try:
        digest, size = copy_digest(offer_set.offers[gap.offer], gap.key)
    except StorageError as exc:
        return FillOutcome(gap, False, detail=f"{gap.offer}: {exc.detail}")
    if digest != gap.sha512 or size != gap.size:
        return FillOutcome(
            gap,
            False,
            detail=f"a different object is under this key (sha512 {digest[:16]}…): left alone",
        )
    stored = StoredObject(
        key=gap.key,
        version_id=there.version_id,
        size=size,
        sha512=digest,
        quarantine_ends_at=there.quarantine_ends_at,
        retain_until=there.retain_until,
        legal_hold=there.legal_hold,
    )
    # An interrupted fill may have stopped between the write and the hold: as the source.
    for name in gap.sources:
        source = offer_set.offers.get(name)
        try:
            head = source.head(gap.key) if source is not None else None
        except StorageError:
            continue
        if head is not None:
            if not _hold_like(offer_set, gap, head, stored):
                return FillOutcome(gap, False, detail=UNLOCKED)
            break
    _record(session, gap, stored, source=None, actor=actor)
    return FillOutcome(gap, True, adopted=True)


#: A copy written whose source's legal hold or longer lock could not be given to it: left
#: unrecorded, so that the next run finds it on the offer, and holds and records it then.
UNLOCKED = (
    "written, but the source's legal hold or lock could not be put on it: not recorded "
    "(the next run does it)"
)


def _hold_like(offer_set: OfferSet, gap: Gap, source: StoredObject, copy: StoredObject) -> bool:
    """Give the new copy the source's legal hold and, if later, its retain-until; whether it
    has them now (a failure is logged)."""
    ok = True
    if source.retain_until is not None and (
        copy.retain_until is not None and copy.retain_until < source.retain_until
    ):
        (extended,) = extend_copies([(gap.offer, gap.key)], offer_set.offers, source.retain_until)
        ok = extended.ok
    if source.legal_hold and not copy.legal_hold:
        (held,) = hold_copies([(gap.offer, gap.key)], offer_set.offers, True)
        ok = ok and held.ok
    if not ok:
        log.error("storage.fill_lock_incomplete offer=%s key=%s", gap.offer, gap.key)
    return ok


def _record(
    session: Session, gap: Gap, stored: StoredObject, *, source: str | None, actor: str
) -> None:
    now = utcnow()
    if gap.kind == OBJECT:
        assert gap.object_id is not None
        row = session.scalars(
            select(ObjectCopy).where(
                ObjectCopy.object_id == gap.object_id,
                ObjectCopy.offer == gap.offer,
                ObjectCopy.key == gap.key,
            )
        ).first()
        if row is None:
            row = ObjectCopy(object_id=gap.object_id, offer=gap.offer, key=gap.key)
            session.add(row)
        row.version_id = stored.version_id
        row.size = gap.size
        row.sha512 = gap.sha512
        row.stored_at = now
        row.quarantine_ends_at = stored.quarantine_ends_at
        row.last_checked_at = now
        row.last_check_ok = True
    else:
        meta = session.scalars(
            select(MetadataCopy).where(MetadataCopy.offer == gap.offer, MetadataCopy.key == gap.key)
        ).first()
        if meta is None:
            meta = MetadataCopy(offer=gap.offer, key=gap.key)
            session.add(meta)
        meta.kind = gap.kind
        meta.tree_size = gap.tree_size
        meta.transfer_id = gap.transfer_id
        meta.sha512 = gap.sha512
        meta.size = gap.size
        meta.stored_at = now
        meta.quarantine_ends_at = stored.quarantine_ends_at
    session.flush()
    append_event(
        session,
        type=EVENT,
        actor=actor,
        object_id=gap.object_id,
        transfer_id=gap.transfer_id,
        object_digests={gap.object_id: gap.sha512} if gap.object_id else None,
        payload=filled_payload(gap, stored, source=source, at=now),
    )


def filled_payload(
    gap: Gap, stored: StoredObject, *, source: str | None, at: datetime
) -> dict[str, Any]:
    """What ``storage.copy_filled`` carries: the new copy row, column by column."""
    return {
        "offer": gap.offer,
        "key": gap.key,
        "kind": gap.kind,
        "from_offer": source,
        "sha512": gap.sha512,
        "size": gap.size,
        "version_id": stored.version_id,
        "stored_at": at.isoformat(),
        "quarantine_ends_at": None
        if stored.quarantine_ends_at is None
        else stored.quarantine_ends_at.isoformat(),
        "transfer_id": gap.transfer_id,
        "tree_size": gap.tree_size,
    }


@dataclass(frozen=True, slots=True)
class FillProgress:
    """Where a run stands, for progress bars: gaps done of all, bytes copied of all."""

    done: int
    total: int
    bytes_done: int
    bytes_total: int


def fill_offers(
    sessions: sessionmaker[Session],
    offer_set: OfferSet,
    gaps: list[Gap],
    *,
    actor: str = ACTOR,
    progress: Callable[[FillProgress], None] | None = None,
) -> list[FillOutcome]:
    """Fill ``gaps`` (:func:`find_gaps`), one transaction per copy: a copy written to an offer
    is recorded and journaled before the next is read, so that an interrupted run leaves
    nothing a next run cannot take up (a copy written but not recorded is found on the offer
    and adopted)."""
    total = sum(gap.size for gap in gaps)
    outcomes: list[FillOutcome] = []
    copied = 0
    down: dict[str, str] = {}
    for done, gap in enumerate(gaps, start=1):
        if gap.offer in down:
            # An offer that failed is not asked again in this run (each gap would wait for
            # its time-outs); its gaps are reported, for the next run.
            outcome = FillOutcome(gap, False, detail=f"not tried: {down[gap.offer]}")
        else:
            outcome = _fill_one(sessions, offer_set, gap, actor)
            if outcome.target_down:
                down[gap.offer] = outcome.detail
        outcomes.append(outcome)
        copied += gap.size
        if progress is not None:
            progress(FillProgress(done, len(gaps), copied, total))
    return outcomes


def _fill_one(
    sessions: sessionmaker[Session], offer_set: OfferSet, gap: Gap, actor: str
) -> FillOutcome:
    """One gap, in a transaction of its own."""
    try:
        with transaction(sessions) as session:
            if _still_wanted(session, gap):
                outcome = fill_gap(session, offer_set, gap, actor=actor)
            else:
                outcome = FillOutcome(gap, False, skipped=True, detail="left the archive meanwhile")
    except IntegrityError:
        # The journal's publisher recorded the same segment on that offer meanwhile
        # (unique offer and key): the same bytes, recorded once.
        return FillOutcome(gap, True, adopted=True, detail="recorded meanwhile")
    return outcome


def _still_wanted(session: Session, gap: Gap) -> bool:
    """The object or description is still archived and not being taken away (a withdrawal
    or a disposal may have begun since the gaps were listed)."""
    from sae.ingest.models import Transfer

    transfer_id = gap.transfer_id
    if gap.kind == OBJECT:
        obj = session.get(DataObject, gap.object_id)
        if obj is None or obj.status in GONE:
            return False
        transfer_id = obj.transfer_id
    elif (
        session.scalars(select(MetadataCopy.id).where(MetadataCopy.key == gap.key)).first() is None
    ):
        return False
    if transfer_id is not None:
        transfer = session.get(Transfer, transfer_id)
        if transfer is not None and transfer.status != "OK":
            return False
    return True
