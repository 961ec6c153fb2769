"""Reading the catalogue: units with their computed rules, objects with their copies, search."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from sae.auth.service import Principal
from sae.catalog.errors import InvalidQuery, ObjectNotFound, UnitNotFound
from sae.catalog.models import ArchiveUnit, DataObject, UnitLink
from sae.catalog.text import fold
from sae.db import utcnow
from sae.retention import compute, dates
from sae.retention.models import Rule, UnitComputedRule
from sae.storage.models import ObjectCopy


@dataclass
class UnitRules:
    """The rules of one unit: declared, applied (with inheritance), end dates, final action."""

    applied: dict[str, list[compute.AppliedRule]] = field(default_factory=dict)
    ends: dict[str, date | None] = field(default_factory=dict)
    final_actions: list[str] = field(default_factory=list)
    # An archivist's hold (POST /holds) on the unit or an ancestor, beside SEDA HoldRules.
    api_hold: bool = False

    @property
    def appraisal_end(self) -> date | None:
        return self.ends.get("AppraisalRule")

    @property
    def access_end(self) -> date | None:
        return self.ends.get("AccessRule")

    @property
    def final_action(self) -> str:
        """Keep unless every final action that applies is Destroy (implicit Keep)."""
        if self.final_actions and all(a == "Destroy" for a in self.final_actions):
            return "Destroy"
        return "Keep"

    @property
    def held(self) -> bool:
        if self.api_hold:
            return True
        today = utcnow().date()
        for rule in self.applied.get("HoldRule", []):
            if rule.end_date is None or rule.end_date > today:
                return True
        return False

    def communicable(self, today: date | None = None) -> bool:
        """Communicable when no access rule applies, or every one has lapsed."""
        today = today or utcnow().date()
        rules = self.applied.get("AccessRule", [])
        if not rules:
            return True
        end = self.access_end
        return end is not None and end <= today


def ancestors(session: Session, unit_id: str) -> dict[str, list[str]]:
    """The parent lists of ``unit_id`` and all its ancestors (walks the graph upwards)."""
    parents: dict[str, list[str]] = {}
    frontier = [unit_id]
    seen = {unit_id}
    while frontier:
        rows = session.execute(
            select(UnitLink.child_id, UnitLink.parent_id).where(UnitLink.child_id.in_(frontier))
        ).all()
        frontier = []
        for child, parent in rows:
            parents.setdefault(child, []).append(parent)
            if parent not in seen:
                seen.add(parent)
                frontier.append(parent)
    return parents


def unit_rules(session: Session, unit: ArchiveUnit) -> UnitRules:
    """Compute the rules applying to ``unit`` from its ancestors' declarations."""
    parents = ancestors(session, unit.id)
    ids = {unit.id} | {p for plist in parents.values() for p in plist}
    rows = {u.id: u for u in session.scalars(select(ArchiveUnit).where(ArchiveUnit.id.in_(ids)))}
    declared = {uid: row.management for uid, row in rows.items()}
    defaults = {
        uid: row.management.get("_defaults", {}) for uid, row in rows.items() if uid not in parents
    }
    rule_ids = {
        ref["rule_id"]
        for mgmt in list(declared.values()) + list(defaults.values())
        for cat, block in mgmt.items()
        if cat != "_defaults"
        for ref in block.get("rules", [])
    }
    referential = (
        {r.id: r for r in session.scalars(select(Rule).where(Rule.id.in_(rule_ids)))}
        if rule_ids
        else {}
    )
    order = compute.topological(list(ids), parents)
    result = UnitRules(api_hold=bool(dates.held_units(session, [unit.id])))
    for category in compute.CATEGORIES:
        computed = compute.compute_category(
            category, order, declared, parents, defaults, referential
        )
        mine = computed[unit.id]
        if mine.rules:
            result.applied[category] = mine.rules
        result.ends[category] = mine.end
        if category == "AppraisalRule":
            result.final_actions = sorted(mine.final_actions)
    return result


def get_unit(session: Session, unit_id: str) -> ArchiveUnit:
    unit = session.get(ArchiveUnit, unit_id)
    if unit is None:
        raise UnitNotFound(f"no archive unit {unit_id}")
    return unit


def get_object(session: Session, object_id: str) -> DataObject:
    obj = session.get(DataObject, object_id)
    if obj is None:
        raise ObjectNotFound(f"no data object {object_id}")
    return obj


def children_of(session: Session, unit_id: str) -> list[str]:
    return list(
        session.scalars(
            select(UnitLink.child_id)
            .where(UnitLink.parent_id == unit_id)
            .order_by(UnitLink.position)
        )
    )


def parents_of(session: Session, unit_id: str) -> list[str]:
    return list(session.scalars(select(UnitLink.parent_id).where(UnitLink.child_id == unit_id)))


def objects_of_unit(session: Session, unit: ArchiveUnit) -> list[DataObject]:
    if unit.data_object_group_id is None:
        return []
    return list(
        session.scalars(
            select(DataObject)
            .where(DataObject.group_id == unit.data_object_group_id)
            .order_by(DataObject.sip_id)
        )
    )


def units_of_object(session: Session, obj: DataObject) -> list[ArchiveUnit]:
    return list(
        session.scalars(select(ArchiveUnit).where(ArchiveUnit.data_object_group_id == obj.group_id))
    )


def copies_of(session: Session, object_id: str) -> list[ObjectCopy]:
    return list(
        session.scalars(
            select(ObjectCopy).where(ObjectCopy.object_id == object_id).order_by(ObjectCopy.id)
        )
    )


def may_see_unit(principal: Principal, unit: ArchiveUnit) -> bool:
    """Depositors see their producing services' units; others by role (readers: see access)."""
    if principal.role in ("admin", "archivist", "auditor", "reader"):
        return True
    return principal.may_act_for(unit.producer)


@dataclass(frozen=True)
class SearchQuery:
    q: str | None = None
    producer: str | None = None
    title: str | None = None
    date_from: str | None = None
    date_to: str | None = None
    status: str | None = None
    due_before: date | None = None
    limit: int = 50
    cursor: str | None = None


def _decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        created, last_id = json.loads(base64.urlsafe_b64decode(cursor.encode()).decode())
        return str(created), str(last_id)
    except (ValueError, TypeError) as exc:
        raise InvalidQuery("the cursor is not one this server gave") from exc


def _encode_cursor(unit: ArchiveUnit) -> str:
    raw = json.dumps([unit.created_at.isoformat(), unit.id]).encode()
    return base64.urlsafe_b64encode(raw).decode()


def search_units(
    session: Session, query: SearchQuery, principal: Principal
) -> tuple[list[ArchiveUnit], str | None]:
    """Units matching the filters, newest first, keyset-paginated."""
    stmt = select(ArchiveUnit)
    if principal.role == "depositor":
        stmt = stmt.where(ArchiveUnit.producer.in_(principal.producers or ("",)))
    if query.q:
        # Folded on both sides (no case, no accents): one column compared, in every database.
        like = f"%{_escape_like(fold(query.q))}%"
        stmt = stmt.where(ArchiveUnit.search_text.like(like, escape="\\"))
    if query.title:
        stmt = stmt.where(ArchiveUnit.title.ilike(f"%{_escape_like(query.title)}%", escape="\\"))
    if query.producer:
        stmt = stmt.where(ArchiveUnit.producer == query.producer)
    if query.status:
        stmt = stmt.where(ArchiveUnit.status == query.status)
    if query.date_from:
        stmt = stmt.where(
            or_(ArchiveUnit.end_date >= query.date_from, ArchiveUnit.start_date >= query.date_from)
        )
    if query.date_to:
        stmt = stmt.where(
            or_(ArchiveUnit.start_date <= query.date_to, ArchiveUnit.end_date <= query.date_to)
        )
    if query.due_before is not None:
        # The materialised end dates (maintained at ingest and on every rule change): an index
        # range scan, and paging stays exact.
        stmt = stmt.where(
            exists(
                select(UnitComputedRule.unit_id).where(
                    UnitComputedRule.unit_id == ArchiveUnit.id,
                    UnitComputedRule.category == "AppraisalRule",
                    UnitComputedRule.unbounded.is_(False),
                    UnitComputedRule.end_date <= query.due_before,
                )
            )
        )
    if query.cursor:
        created, last_id = _decode_cursor(query.cursor)
        from datetime import datetime

        created_at = datetime.fromisoformat(created)
        stmt = stmt.where(
            or_(
                ArchiveUnit.created_at < created_at,
                (ArchiveUnit.created_at == created_at) & (ArchiveUnit.id < last_id),
            )
        )
    limit = max(1, min(query.limit, 500))
    stmt = stmt.order_by(ArchiveUnit.created_at.desc(), ArchiveUnit.id.desc()).limit(limit + 1)
    rows = session.scalars(stmt).all()
    units = list(rows[:limit])
    next_cursor = _encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return units, next_cursor


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
