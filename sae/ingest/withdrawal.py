"""Withdraw a transfer deposited by mistake, while its copies are still in quarantine.

An offer with ``quarantine_days: N`` locks new copies in GOVERNANCE mode for N days
(docs/storage.md): within that window, and only then, an archivist may take a whole transfer
back — the wrong documents, the wrong producer, personal data sent by mistake. After it, the
copies are in COMPLIANCE and only a disposal, with its circuit and visa, can remove them.

All or nothing, as far as storage allows:

1. in one transaction, refuse unless every copy of every object is still in its window
   (``ObjectCopy.quarantine_ends_at``), no unit is under a legal hold or on a disposal list,
   and no unit of another transfer was attached under one of its units; then mark the
   transfer ``WITHDRAWING`` and journal ``transfer.withdrawal_started`` (reason, actor);
2. delete every copy on its offer (the offer itself refuses a copy past its window: nothing of
   that object is deleted then), then the copies of the transfer's description
   (``transfers/<id>.zip``, which would otherwise describe, on the offers, a transfer that is
   no longer archived); a copy already gone counts as deleted, so a withdrawal interrupted
   here (an offer down, a crash) is finished by asking again;
3. in one transaction, mark units and objects ``withdrawn``, drop their descriptive metadata
   (kept in the journal's events and the ATR) and computed dates, delete the copy rows (of
   objects and of the description), set
   the transfer ``WITHDRAWN`` (its MessageIdentifier may then be sent again) and journal
   ``transfer.withdrawn`` with every object's SHA-512 and the copies removed.
"""

from __future__ import annotations

import base64
import logging
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NoReturn

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from sae.auth.service import Principal
from sae.catalog.models import ArchiveUnit, DataObject, UnitLink
from sae.db import lock_for_writing, transaction, utcnow
from sae.errors import Conflict, NotFound, ServiceUnavailable
from sae.ingest.models import Transfer
from sae.journal.service import NewEvent, append_events
from sae.retention.dates import held_units
from sae.retention.models import DisposalLine, DisposalList, UnitComputedRule
from sae.storage.base import StorageOffer
from sae.storage.errors import RetentionActive, StorageError
from sae.storage.models import MetadataCopy, ObjectCopy
from sae.storage.repository import copies_of_transfer, copies_of_transfer_records
from sae.storage.service import CopyOutcome, delete_copies

log = logging.getLogger("sae.ingest")

WITHDRAWING = "WITHDRAWING"
WITHDRAWN = "WITHDRAWN"
#: Lists whose lines still decide something about their units.
_OPEN_LISTS = ("draft", "submitted", "approved", "visa_recorded", "executing")


class WithdrawalRefused(Conflict):
    """The transfer cannot be withdrawn (past its quarantine, held, listed, referenced)."""

    code = "transfer.withdrawal_refused"
    title = "Withdrawal refused"


class WithdrawalIncomplete(ServiceUnavailable):
    """An offer did not answer: some copies are deleted, the rest wait for a new request."""

    code = "transfer.withdrawal_incomplete"
    title = "Withdrawal incomplete"


@dataclass
class Withdrawal:
    transfer_id: str
    status: str
    withdrawn_at: datetime
    units: int
    objects: int
    copies_deleted: list[dict[str, str]] = field(default_factory=list)


def withdraw_transfer(
    sessions: sessionmaker[Session],
    offers: dict[str, StorageOffer],
    principal: Principal,
    transfer_id: str,
    reason: str,
) -> Withdrawal:
    """Withdraw ``transfer_id`` (see the module's docstring); raise what refuses it."""
    planned, resuming = _check(sessions, offers, transfer_id)
    if not resuming:
        # The offers' own locks, before anything is changed: the catalogue's dates come from
        # them at ingest, but an offer's window may have been shortened since.
        _check_offers(offers, planned)
    with transaction(sessions) as session:
        lock_for_writing(session, _lock_key(transfer_id))
        transfer = session.get(Transfer, transfer_id)
        assert transfer is not None
        if transfer.status == "OK":
            transfer.status = WITHDRAWING
            append_events(
                session,
                [
                    NewEvent(
                        type="transfer.withdrawal_started",
                        actor=principal.actor,
                        transfer_id=transfer_id,
                        payload={"reason": reason, "copies": len(planned)},
                    )
                ],
            )
        elif transfer.status != WITHDRAWING:  # withdrawn by a request that ran meanwhile
            raise WithdrawalRefused(f"transfer {transfer_id} is already withdrawn")
    deleted = _delete_copies(offers, planned)
    return _finish(sessions, principal, transfer_id, reason, deleted)


def _lock_key(transfer_id: str) -> int:
    return zlib.crc32(f"withdraw:{transfer_id}".encode())


def _check(
    sessions: sessionmaker[Session], offers: dict[str, StorageOffer], transfer_id: str
) -> tuple[list[tuple[str, str]], bool]:
    """The copies to delete, and whether an interrupted withdrawal is being finished; raise
    unless the catalogue allows the withdrawal."""
    with transaction(sessions) as session:
        transfer = session.get(Transfer, transfer_id)
        if transfer is None:
            raise NotFound(f"no transfer {transfer_id}")
        if transfer.status == WITHDRAWN:
            raise WithdrawalRefused(f"transfer {transfer_id} is already withdrawn")
        if transfer.status not in ("OK", WITHDRAWING):
            raise WithdrawalRefused(f"transfer {transfer_id} was refused: nothing was archived")
        unit_ids = list(
            session.scalars(select(ArchiveUnit.id).where(ArchiveUnit.transfer_id == transfer_id))
        )
        copies = copies_of_transfer(session, transfer_id)
        # The description last: until every object is gone, it says what they are.
        records = copies_of_transfer_records(session, [transfer_id])
        blocking = _blocking(session, transfer_id, unit_ids)
        # Resuming an interrupted withdrawal: some copies are gone already, and the offers'
        # own locks decide for the others, whatever the catalogue's dates say now.
        resuming = transfer.status == WITHDRAWING
        now = utcnow()
        ends = [c.quarantine_ends_at for c in copies]
        until = window_end(ends, transfer.received_at, offers)
        if not resuming and (until is None or until <= now):
            blocking.insert(0, _past_window(copies, now, offers))
        if blocking:
            raise WithdrawalRefused(
                f"transfer {transfer_id} cannot be withdrawn: " + "; ".join(blocking),
                reasons=blocking,
            )
        planned = [(c.offer, c.key) for c in copies] + [(c.offer, c.key) for c in records]
        return planned, resuming


def _check_offers(offers: dict[str, StorageOffer], planned: list[tuple[str, str]]) -> None:
    now = utcnow()
    for name, key in planned:
        offer = offers.get(name)
        if offer is None:
            raise WithdrawalRefused(f"offer {name!r} is no longer configured")
        try:
            head = offer.head(key)
        except StorageError as exc:
            raise WithdrawalIncomplete(
                f"offer {name!r} did not answer: {exc.detail}; nothing was deleted", deleted=0
            ) from exc
        if head is None:
            continue  # already missing: nothing to delete there (the audit reports it)
        if head.legal_hold:
            raise WithdrawalRefused(f"the copy on {name!r} is under a legal hold")
        if head.quarantine_ends_at is None or head.quarantine_ends_at <= now:
            raise WithdrawalRefused(
                f"the copy on {name!r} is past its quarantine (lock {head.lock_mode}): only a "
                "disposal can remove it now"
            )


def window_end(
    ends: Sequence[datetime | None], received_at: datetime, offers: Mapping[str, StorageOffer]
) -> datetime | None:
    """Until when a transfer may be withdrawn: the earliest end of quarantine among its copies
    (``ends``; None when one is locked in COMPLIANCE from the start). With nothing stored
    (metadata or physical objects only), the same window as copies would have had, counted
    from its reception."""
    if not ends:
        return received_at + timedelta(days=_shortest_quarantine(offers))
    if any(end is None for end in ends):
        return None
    return min(end for end in ends if end is not None)


def _shortest_quarantine(offers: Mapping[str, StorageOffer]) -> int:
    return min((o.quarantine_days for o in offers.values()), default=0)


def _past_window(
    copies: list[ObjectCopy], now: datetime, offers: Mapping[str, StorageOffer]
) -> str:
    if not copies:
        return f"its quarantine of {_shortest_quarantine(offers)} day(s) after reception is over"
    locked = [c for c in copies if c.quarantine_ends_at is None or c.quarantine_ends_at <= now]
    return (
        f"{len(locked)} cop{'y is' if len(locked) == 1 else 'ies are'} past the quarantine "
        f"window (locked in COMPLIANCE, on {', '.join(sorted({c.offer for c in locked}))}): "
        "only a disposal can remove them now"
    )


def _blocking(session: Session, transfer_id: str, unit_ids: list[str]) -> list[str]:
    """Why the transfer cannot be withdrawn besides its window, one line per reason."""
    reasons: list[str] = []
    if held_units(session, unit_ids):  # a hold placed through the API, or a SEDA HoldRule
        reasons.append("a unit is under a legal hold")
    its_units = select(ArchiveUnit.id).where(ArchiveUnit.transfer_id == transfer_id)
    listed = session.scalar(
        select(DisposalList.reference)
        .join(DisposalLine, DisposalLine.list_id == DisposalList.id)
        .where(DisposalLine.unit_id.in_(its_units), DisposalList.state.in_(_OPEN_LISTS))
        .limit(1)
    )
    if listed is not None:
        reasons.append(f"a unit is on the disposal list {listed}")
    attached = session.scalar(
        select(ArchiveUnit.transfer_id)
        .join(UnitLink, UnitLink.child_id == ArchiveUnit.id)
        .where(UnitLink.parent_id.in_(its_units), ArchiveUnit.transfer_id != transfer_id)
        .limit(1)
    )
    if attached is not None:
        reasons.append(f"units of transfer {attached} were attached under its units")
    return reasons


def _delete_copies(
    offers: dict[str, StorageOffer], planned: list[tuple[str, str]]
) -> list[dict[str, str]]:
    # In order, stopping at the first copy that does not go, so the error can say how many did.
    outcomes = delete_copies(planned, offers, stop_at_failure=True)
    deleted = [{"offer": o.offer, "key": o.key} for o in outcomes if o.ok]
    for outcome in outcomes:
        if outcome.ok:
            log.info("transfer.copy_withdrawn offer=%s key=%s", outcome.offer, outcome.key)
            continue
        _refuse(outcome, done=len(deleted), of=len(planned))
    return deleted


def _refuse(outcome: CopyOutcome, *, done: int, of: int) -> NoReturn:
    """Raise what a copy that did not go means for the withdrawal."""
    name, exc = outcome.offer, outcome.error
    if exc is None:
        raise WithdrawalIncomplete(
            f"offer {name!r} is no longer configured: {done} of {of} "
            "copies deleted; ask again once it is back",
            deleted=done,
        )
    if isinstance(exc, RetentionActive):
        # The offer's own lock is the last word (its clock, its window).
        raise WithdrawalRefused(
            f"offer {name!r} refused to delete {outcome.key!r}: {exc.detail}; "
            f"{done} of {of} copies deleted before it",
            deleted=done,
        ) from exc
    raise WithdrawalIncomplete(
        f"offer {name!r} failed: {exc.detail}; {done} of {of} copies deleted; ask again to finish",
        deleted=done,
    ) from exc


def _finish(
    sessions: sessionmaker[Session],
    principal: Principal,
    transfer_id: str,
    reason: str,
    deleted: list[dict[str, str]],
) -> Withdrawal:
    now = utcnow()
    with transaction(sessions) as session:
        transfer = session.get(Transfer, transfer_id)
        assert transfer is not None
        units = list(
            session.scalars(select(ArchiveUnit).where(ArchiveUnit.transfer_id == transfer_id))
        )
        objects = list(
            session.scalars(select(DataObject).where(DataObject.transfer_id == transfer_id))
        )
        its_objects = select(DataObject.id).where(DataObject.transfer_id == transfer_id)
        its_units = select(ArchiveUnit.id).where(ArchiveUnit.transfer_id == transfer_id)
        session.execute(delete(ObjectCopy).where(ObjectCopy.object_id.in_(its_objects)))
        session.execute(delete(MetadataCopy).where(MetadataCopy.transfer_id == transfer_id))
        session.execute(delete(UnitComputedRule).where(UnitComputedRule.unit_id.in_(its_units)))
        for unit in units:
            unit.status = "withdrawn"
            unit.forget_description()
        for obj in objects:
            obj.status = "withdrawn"
        transfer.status = WITHDRAWN
        payload: dict[str, Any] = {
            "reason": reason,
            "message_identifier": transfer.message_identifier,
            "units": [u.id for u in units],
            "copies_deleted": deleted,
            **withdrawn_record(session, transfer, units, objects),
        }
        append_events(
            session,
            [
                NewEvent(
                    type="transfer.withdrawn",
                    actor=principal.actor,
                    transfer_id=transfer_id,
                    object_digests={o.id: o.sha512 for o in objects if o.sha512},
                    payload=payload,
                )
            ],
        )
    return Withdrawal(transfer_id, WITHDRAWN, now, len(units), len(objects), deleted)


def withdrawn_record(
    session: Session, transfer: Transfer, units: list[ArchiveUnit], objects: list[DataObject]
) -> dict[str, Any]:
    """What a rebuild needs to answer for a withdrawn transfer as the catalogue does (issue 17):
    its description (``transfers/<id>.zip``) is deleted from the offers with its objects, so
    the ``transfer.withdrawn`` leaf carries the rows that stay — the transfer, its units
    without their descriptions, its objects withdrawn, groups, links, declared rules — as a
    ``sae-transfer-record/1`` record (no copies, no computed dates), and its ATR (base64),
    which ``GET /transfers/{id}/atr`` still serves."""
    from sae.catalog.models import DataObjectGroup, UnitRule
    from sae.catalog.records import record_of
    from sae.catalog.rows import CatalogueRows

    unit_ids = [u.id for u in units]
    rows = CatalogueRows(
        groups=list(
            session.scalars(
                select(DataObjectGroup).where(DataObjectGroup.transfer_id == transfer.id)
            )
        ),
        objects=objects,
        copies=[],
        units=units,
        links=list(session.scalars(select(UnitLink).where(UnitLink.child_id.in_(unit_ids)))),
        rules=list(session.scalars(select(UnitRule).where(UnitRule.unit_id.in_(unit_ids)))),
    )
    record = record_of(transfer, rows, [], manifest_name="")
    atr = None if transfer.atr is None else base64.b64encode(transfer.atr).decode("ascii")
    return {"record": record, "atr": atr}
