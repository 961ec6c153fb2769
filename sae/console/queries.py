"""Read-only queries the console needs and no domain service offers (lists, counts).

Everything here reads; nothing writes. Scoping by role follows the API exactly: the transfers
a user sees are those of ``sae.ingest.visibility``, the rule the API applies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sae.auth.service import Principal
from sae.catalog import service as catalog
from sae.catalog.models import GONE, ArchiveUnit, DataObject
from sae.console.format import LOCAL_TZ
from sae.db import utcnow
from sae.ingest.models import Transfer
from sae.ingest.visibility import visible_transfers
from sae.ingest.withdrawal import window_end
from sae.journal import service as journal
from sae.journal.models import Event, TreeHead
from sae.retention.models import Hold, HoldUnit, Rule
from sae.storage.base import StorageOffer
from sae.storage.models import Audit, ObjectCopy


@dataclass(frozen=True)
class Totals:
    """What the archive holds, for the dashboard."""

    units: int
    objects: int
    bytes: int
    transfers_ok: int
    transfers_ko: int


def totals(session: Session) -> Totals:
    """Counts of live units and objects, stored bytes, accepted and refused transfers."""
    units = session.scalar(
        select(func.count()).select_from(ArchiveUnit).where(ArchiveUnit.status.not_in(GONE))
    )
    objects, size = session.execute(
        select(func.count(), func.coalesce(func.sum(DataObject.size), 0)).where(
            DataObject.status.not_in(GONE)
        )
    ).one()
    by_status: dict[str, int] = {
        status: count
        for status, count in session.execute(
            select(Transfer.status, func.count()).group_by(Transfer.status)
        )
    }
    return Totals(
        units=int(units or 0),
        objects=int(objects or 0),
        bytes=int(size or 0),
        transfers_ok=int(by_status.get("OK", 0)),
        transfers_ko=int(by_status.get("KO", 0)),
    )


def list_transfers(
    session: Session,
    principal: Principal,
    *,
    status: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Transfer], bool]:
    """Transfers newest first, and whether there are more after this page."""
    stmt = visible_transfers(principal)
    if status in ("OK", "KO"):
        stmt = stmt.where(Transfer.status == status)
    stmt = stmt.order_by(Transfer.received_at.desc(), Transfer.id.desc())
    rows = list(session.scalars(stmt.offset(offset).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def recent_audits(session: Session, limit: int = 20) -> list[Audit]:
    """The latest fixity audits, newest first."""
    return list(
        session.scalars(select(Audit).order_by(Audit.created_at.desc(), Audit.id).limit(limit))
    )


@dataclass(frozen=True)
class TreeState:
    """The journal as it stands: leaves recorded, and the latest signed tree head."""

    size: int
    head: TreeHead | None
    last_event_at: datetime | None

    @property
    def unsealed(self) -> int:
        """Leaves recorded since the latest signed head (sealed at the next seal)."""
        return self.size - (self.head.tree_size if self.head else 0)


def tree_state(session: Session) -> TreeState:
    """Tree size, latest signed head and the time of the last event."""
    last = session.scalar(select(func.max(Event.occurred_at)))
    return TreeState(
        size=journal.tree_size(session), head=journal.latest_head(session), last_event_at=last
    )


@dataclass(frozen=True)
class EventFilter:
    """Filters of the journal page."""

    type: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    unit_id: str | None = None
    object_id: str | None = None


def _local_midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=LOCAL_TZ)


def list_events(
    session: Session, filters: EventFilter, *, limit: int = 50, before: int | None = None
) -> tuple[list[Event], int | None]:
    """Events newest first (by leaf index), and the index to continue from, if any."""
    stmt = select(Event)
    if filters.type:
        # A prefix such as "ingest" selects every "ingest.*" type.
        if "." in filters.type:
            stmt = stmt.where(Event.type == filters.type)
        else:
            stmt = stmt.where(Event.type.like(f"{filters.type}.%"))
    if filters.date_from:
        stmt = stmt.where(Event.occurred_at >= _local_midnight(filters.date_from))
    if filters.date_to:
        stmt = stmt.where(Event.occurred_at < _local_midnight(filters.date_to + timedelta(days=1)))
    if filters.unit_id:
        stmt = stmt.where(Event.unit_id == filters.unit_id)
    if filters.object_id:
        stmt = stmt.where(Event.object_id == filters.object_id)
    if before is not None:
        stmt = stmt.where(Event.leaf_index < before)
    rows = list(session.scalars(stmt.order_by(Event.leaf_index.desc()).limit(limit + 1)))
    more = rows[limit - 1].leaf_index if len(rows) > limit else None
    return rows[:limit], more


def event_types(session: Session) -> list[str]:
    """Every event type present in the journal, for the filter list."""
    return list(session.scalars(select(Event.type).distinct().order_by(Event.type)))


def unit_titles(session: Session, unit_ids: list[str]) -> dict[str, str]:
    """Titles of the given units (for parent/child links)."""
    if not unit_ids:
        return {}
    rows = session.execute(
        select(ArchiveUnit.id, ArchiveUnit.title).where(ArchiveUnit.id.in_(unit_ids))
    )
    return {unit_id: title for unit_id, title in rows}


def producers(session: Session, principal: Principal) -> list[str]:
    """The producing services present in the catalogue that this principal may search."""
    stmt = select(ArchiveUnit.producer).distinct().order_by(ArchiveUnit.producer)
    if principal.role == "depositor":
        stmt = stmt.where(ArchiveUnit.producer.in_(principal.producers or ("",)))
    elif principal.role not in catalog.ALL_SEEING:
        # A reader: the producers of what it may find (a service whose every unit is closed
        # would otherwise be named).
        stmt = stmt.where(
            ~catalog.closed_on(ArchiveUnit.id, catalog.today(), catalog.user_of(principal))
        )
    return list(session.scalars(stmt))


def transfer_units(session: Session, transfer_id: str, limit: int = 200) -> list[ArchiveUnit]:
    """The units a transfer brought (the first ``limit``, by their SIP identifier)."""
    return list(
        session.scalars(
            select(ArchiveUnit)
            .where(ArchiveUnit.transfer_id == transfer_id)
            .order_by(ArchiveUnit.sip_id)
            .limit(limit)
        )
    )


def withdrawal_deadline(
    session: Session, transfer: Transfer, offers: Mapping[str, StorageOffer]
) -> datetime | None:
    """Until when the archivist may still withdraw the transfer
    (``sae.ingest.withdrawal.window_end``); None when it cannot be any more (not accepted, a
    copy in COMPLIANCE, the window over)."""
    if transfer.status not in ("OK", "WITHDRAWING"):
        return None
    ends = session.scalars(
        select(ObjectCopy.quarantine_ends_at)
        .join(DataObject, DataObject.id == ObjectCopy.object_id)
        .where(DataObject.transfer_id == transfer.id)
    )
    until = window_end(list(ends), transfer.received_at, offers)
    return until if until is not None and until > utcnow() else None


def unit_holds(session: Session, unit_id: str) -> list[Hold]:
    """The legal holds in force on a unit (placed on it or on an ancestor)."""
    return list(
        session.scalars(
            select(Hold)
            .join(HoldUnit, HoldUnit.hold_id == Hold.id)
            .where(HoldUnit.unit_id == unit_id, Hold.lifted_at.is_(None))
            .order_by(Hold.created_at)
        )
    )


def record_type_label(session: Session, rule_id: str) -> str:
    """What the schedule calls a record type (a final-action rule): its record type, else the
    rule's own value, else the id (as the search's record-type facet shows it)."""
    rule = session.get(Rule, rule_id)
    if rule is None:
        return rule_id
    return str((rule.meta or {}).get("record_type") or rule.value or rule_id)
