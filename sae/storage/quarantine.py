"""End quarantines on time: seal GOVERNANCE locks into COMPLIANCE once their window has passed.

An offer with ``quarantine_days: N`` locks new copies in GOVERNANCE mode, so that for N days a
deposit made by mistake can still be withdrawn. After that the lock must become COMPLIANCE —
which nobody, not even an account allowed to bypass governance, can lift before retain-until.
Each copy's catalogue row says when its window ends (``ObjectCopy.quarantine_ends_at``, from
the offer's answer to the write); :func:`end_quarantines`, run by the background auditor every
minute, seals the copies that are due, a batch at a time:

1. claim the batch in one statement (their due date pushed a lease ahead), so that several
   processes or machines never seal the same copies together;
2. seal each copy on its offer (``StorageOffer.seal``), outside any transaction: a slow offer
   does not hold the database;
3. read the lock back: COMPLIANCE (or no lock any more) clears the date and, when this round
   changed it, journals ``storage.quarantine_ended``; a copy still in GOVERNANCE (the offer's
   window is longer than the catalogue thought) is due again when the offer says; a copy the
   offer cannot reach or no longer has keeps its date a lease later, for the next round (the
   audit reports missing copies).

:func:`end_metadata_quarantines` does the same for what SAE writes beside the content (journal
segments, ``metadata_copies``), logged instead of journaled.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import literal_column, select, update
from sqlalchemy.orm import Session, sessionmaker

from sae.db import transaction, utcnow
from sae.journal.service import NewEvent, append_events
from sae.storage.errors import StorageError
from sae.storage.models import MetadataCopy, ObjectCopy
from sae.storage.offers import OfferSet

log = logging.getLogger(__name__)

ACTOR = "system:quarantine"
#: How long a claimed copy is left to the process that claimed it (and how long a copy whose
#: offer failed waits before it is tried again).
LEASE = timedelta(minutes=15)
BATCH = 200
#: Batches per call: 5,000 copies a minute from the background auditor, far above the rate at
#: which copies come out of quarantine (the deposits of the same minute, a window earlier).
MAX_BATCHES = 25


@dataclass(frozen=True, slots=True)
class _Due:
    id: int
    object_id: str
    offer: str
    key: str
    sha512: str


def end_quarantines(
    sessions: sessionmaker[Session],
    offer_set: OfferSet,
    *,
    batch: int = BATCH,
    max_batches: int = MAX_BATCHES,
    now: datetime | None = None,
) -> int:
    """Seal the copies whose quarantine is over, ``batch`` at a time, at most ``max_batches``
    per call (a backlog — every copy after the upgrade that added the dates — is worked off
    over several rounds, leaving the auditor's thread to its audits in between); how many
    were sealed."""
    sealed = 0
    for _ in range(max_batches):
        moment = now or utcnow()
        due = _claim(sessions, moment, batch)
        if not due:
            return sealed
        outcomes = [_seal(offer_set, copy) for copy in due]
        with transaction(sessions) as session:
            events = [
                _record(session, copy, outcome, moment)
                for copy, outcome in zip(due, outcomes, strict=True)
            ]
            append_events(session, [event for event in events if event is not None])
        sealed += sum(1 for event in events if event is not None)
        if len(due) < batch:
            return sealed
    return sealed


def _claim(
    sessions: sessionmaker[Session],
    now: datetime,
    batch: int,
    model: type[ObjectCopy] | type[MetadataCopy] = ObjectCopy,
) -> list[_Due]:
    """Take up to ``batch`` due copies of ``model`` (content, or metadata beside it) for a
    :data:`LEASE`, oldest due first."""
    with transaction(sessions) as session:
        ids = list(
            session.scalars(
                select(model.id)
                .where(model.quarantine_ends_at <= now)
                .order_by(model.quarantine_ends_at, model.id)
                .limit(batch)
            )
        )
        if not ids:
            return []
        # Taken only if still due: another process that claimed them first moved the date.
        owner = ObjectCopy.object_id if model is ObjectCopy else literal_column("''")
        rows = session.execute(
            update(model)
            .where(model.id.in_(ids), model.quarantine_ends_at <= now)
            .values(quarantine_ends_at=now + LEASE)
            .execution_options(synchronize_session=False)
            .returning(model.id, owner, model.offer, model.key, model.sha512)
        ).all()
    return sorted((_Due(*row) for row in rows), key=lambda d: d.id)


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What sealing one copy found: ``retry`` (the offer could not tell; the lease stands),
    else when the copy is due again (None: sealed, or not in GOVERNANCE), and whether this
    round changed the lock."""

    retry: bool = False
    due_again: datetime | None = None
    changed: bool = False


_RETRY = _Outcome(retry=True)


def _seal(offer_set: OfferSet, copy: _Due) -> _Outcome:
    offer = offer_set.offers.get(copy.offer)
    if offer is None:
        return _RETRY  # an offer taken out of the file: nothing to ask until it is back
    try:
        changed = offer.seal(copy.key)
        now = offer.head(copy.key)
    except StorageError as exc:
        log.warning("storage.seal_failed offer=%s key=%s: %s", copy.offer, copy.key, exc)
        return _RETRY
    if now is None:
        return _RETRY
    return _Outcome(due_again=now.quarantine_ends_at, changed=changed)


def _record(session: Session, copy: _Due, outcome: _Outcome, moment: datetime) -> NewEvent | None:
    row = session.get(ObjectCopy, copy.id)
    if row is None or outcome.retry:  # withdrawn or disposed of meanwhile; or tried again later
        return None
    # Still in GOVERNANCE: due when the offer says, never sooner than a lease from now (a clock
    # that disagrees with the offer's must not make a busy loop).
    due = outcome.due_again
    row.quarantine_ends_at = None if due is None else max(due, moment + LEASE)
    if not outcome.changed:
        return None
    return NewEvent(
        type="storage.quarantine_ended",
        actor=ACTOR,
        object_id=copy.object_id,
        object_digests={copy.object_id: copy.sha512},
        # ``quarantine_ends_at``: the copy row's new value, what a replay writes back.
        payload={
            "offer": copy.offer,
            "key": copy.key,
            "lock_mode": "COMPLIANCE",
            "quarantine_ends_at": _iso(row.quarantine_ends_at),
        },
    )


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def end_metadata_quarantines(
    sessions: sessionmaker[Session],
    offer_set: OfferSet,
    *,
    batch: int = BATCH,
    max_batches: int = MAX_BATCHES,
    now: datetime | None = None,
) -> int:
    """Seal the metadata copies (journal segments, ``metadata_copies``) whose quarantine is
    over, as :func:`end_quarantines` does for content; how many were sealed.

    Logged (``storage.metadata_quarantine_ended``), not journaled: a journal event is a leaf,
    its head gets a segment, whose quarantine would end in a journal event — forever.
    """
    sealed = 0
    for _ in range(max_batches):
        moment = now or utcnow()
        due = _claim(sessions, moment, batch, MetadataCopy)
        if not due:
            return sealed
        outcomes = [_seal(offer_set, copy) for copy in due]
        with transaction(sessions) as session:
            for copy, outcome in zip(due, outcomes, strict=True):
                row = session.get(MetadataCopy, copy.id)
                if row is None or outcome.retry:
                    continue
                due_again = outcome.due_again
                row.quarantine_ends_at = (
                    None if due_again is None else max(due_again, moment + LEASE)
                )
                if outcome.changed:
                    sealed += 1
                    log.info(
                        "storage.metadata_quarantine_ended offer=%s key=%s", copy.offer, copy.key
                    )
        if len(due) < batch:
            return sealed
    return sealed
