"""Computed end dates, materialised per unit and category (``unit_computed_rules``).

Computing one unit's rules means walking its ancestors (SEDA inheritance). Doing that for a
million units to answer "what is due before D" is far too slow, so the outcome is stored and
indexed on (category, final_action, end_date), and kept current:

* at ingest (``compute_new_units`` then ``store_computed``, called by
  ``sae.ingest.service.ingest`` with the units and links it is cataloguing and the rules it has
  checked: nothing is read back);
* on a referential change (``recompute_for_rules``: the units that declare a changed rule and
  all their descendants);
* holds placed through the API live in their own tables and are read at query time.

Everything here works in batches over the unit graph: one query per graph level, never one per
unit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import and_, delete, exists, insert, or_, select
from sqlalchemy.orm import Session, aliased

from sae import db
from sae.catalog.models import ArchiveUnit, DataObjectGroup, UnitLink, UnitRule
from sae.journal.service import append_event
from sae.retention import compute
from sae.retention.models import Hold, HoldUnit, Rule, UnitComputedRule
from sae.storage.base import PERMANENT_RETAIN_UNTIL, StorageOffer
from sae.storage.repository import copies_of_groups, copies_of_transfer_records
from sae.storage.service import CopyOutcome, extend_copies

#: Keeps IN lists well under SQLite's and PostgreSQL's parameter limits.
BATCH = 500


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), BATCH):
        yield items[i : i + BATCH]


def today() -> date:
    """The reference day (read through ``sae.db.utcnow`` so tests control the clock)."""
    return db.utcnow().date()


def parents_closure(session: Session, unit_ids: Iterable[str]) -> dict[str, list[str]]:
    """Parent lists of the units and of all their ancestors (one query per level)."""
    parents: dict[str, list[str]] = {}
    seen = set(unit_ids)
    frontier = sorted(seen)
    while frontier:
        found: list[str] = []
        for chunk in _chunks(frontier):
            rows = session.execute(
                select(UnitLink.child_id, UnitLink.parent_id)
                .where(UnitLink.child_id.in_(chunk))
                .order_by(UnitLink.child_id, UnitLink.position, UnitLink.parent_id)
            ).all()
            for child, parent in rows:
                parents.setdefault(child, []).append(parent)
                if parent not in seen:
                    seen.add(parent)
                    found.append(parent)
        frontier = found
    return parents


def descendants(session: Session, unit_ids: Iterable[str]) -> set[str]:
    """The units and all their descendants."""
    seen = set(unit_ids)
    frontier = sorted(seen)
    while frontier:
        found: list[str] = []
        for chunk in _chunks(frontier):
            for child in session.scalars(
                select(UnitLink.child_id).where(UnitLink.parent_id.in_(chunk))
            ):
                if child not in seen:
                    seen.add(child)
                    found.append(child)
        frontier = found
    return seen


def compute_units(
    session: Session, unit_ids: Iterable[str]
) -> dict[str, dict[str, compute.CategoryResult]]:
    """Per unit, per category, the applied rules (with inheritance), fresh from the catalogue."""
    targets = list(dict.fromkeys(unit_ids))
    parents = parents_closure(session, targets)
    closure = set(targets) | {p for plist in parents.values() for p in plist}
    management: dict[str, dict[str, Any]] = {}
    for chunk in _chunks(sorted(closure)):
        for uid, mgmt in session.execute(
            select(ArchiveUnit.id, ArchiveUnit.management).where(ArchiveUnit.id.in_(chunk))
        ):
            management[uid] = mgmt or {}
    return compute_graph(session, targets, parents, management)


def compute_graph(
    session: Session,
    targets: Sequence[str],
    parents: Mapping[str, list[str]],
    management: Mapping[str, Mapping[str, Any]],
    referential: Mapping[str, Rule] | None = None,
) -> dict[str, dict[str, compute.CategoryResult]]:
    """:func:`compute_units` on a graph in hand: ``parents`` of the targets and of all their
    ancestors (in link order), and the stored management JSON of every one of them; the rules
    they name are read from the referential unless given."""
    closure = set(targets) | set(management)
    declared = {
        uid: {k: v for k, v in m.items() if k != "_defaults"} for uid, m in management.items()
    }
    defaults = {uid: m.get("_defaults", {}) for uid, m in management.items() if uid not in parents}
    if referential is None:
        referential = referenced_rules(session, management.values())
    order = compute.topological(sorted(closure), parents)
    out: dict[str, dict[str, compute.CategoryResult]] = {uid: {} for uid in targets}
    for category in compute.CATEGORIES:
        results = compute.compute_category(
            category, order, declared, parents, defaults, referential
        )
        for uid in targets:
            if uid in results:
                out[uid][category] = results[uid]
    return out


def referenced_rules(session: Session, management: Iterable[Mapping[str, Any]]) -> dict[str, Rule]:
    """The referential's rules that ``management`` JSON blocks name (declared or defaults)."""
    ids: set[str] = set()
    for stored in management:
        for categories in (stored, stored.get("_defaults") or {}):
            for category, block in categories.items():
                if category != "_defaults" and isinstance(block, Mapping):
                    ids.update(str(ref["rule_id"]) for ref in block.get("rules", []))
    found: dict[str, Rule] = {}
    for chunk in _chunks(sorted(ids)):
        found.update(
            (rule.id, rule) for rule in session.scalars(select(Rule).where(Rule.id.in_(chunk)))
        )
    return found


def final_action_of(result: compute.CategoryResult) -> str:
    """Keep unless every final action that applies is Destroy (no FinalAction: implicit Keep)."""
    if result.final_actions and all(a == "Destroy" for a in result.final_actions):
        return "Destroy"
    return "Keep"


def _rows(
    unit_id: str, results: dict[str, compute.CategoryResult], now: datetime | None = None
) -> list[dict[str, Any]]:
    now = now or db.utcnow()
    rows = []
    for category, result in results.items():
        if not result.rules and not result.final_actions:
            continue
        ends = [r.end_date for r in result.rules if r.end_date is not None]
        if category == "AppraisalRule":
            action: str | None = final_action_of(result)
        elif result.final_actions:
            action = ",".join(sorted(result.final_actions))[:16]
        else:
            action = None
        rows.append(
            {
                "unit_id": unit_id,
                "category": category,
                # The category's end: the latest end date, none when a rule has none.
                "end_date": result.end if category != "HoldRule" else (max(ends) if ends else None),
                "unbounded": any(r.end_date is None for r in result.rules),
                "final_action": action,
                "rules": rules_json(result),
                "computed_at": now,
            }
        )
    return rows


def rules_json(result: compute.CategoryResult) -> list[dict[str, Any]]:
    """The applied rules of one category as stable JSON."""
    return [
        {
            "rule_id": r.rule_id,
            "start_date": r.start_date.isoformat() if r.start_date else None,
            "end_date": r.end_date.isoformat() if r.end_date else None,
            "origin": r.origin,
        }
        for r in sorted(result.rules, key=lambda r: r.rule_id)
    ]


def refresh_units(
    session: Session, unit_ids: Iterable[str], *, computed_at: datetime | None = None
) -> int:
    """Recompute and store the end dates of ``unit_ids`` (flush, no commit). Returns the count.

    Every row gets the one ``computed_at`` (now unless given): the caller journals it, so that
    the replay of a rebuild writes the same rows."""
    targets = list(dict.fromkeys(unit_ids))
    if not targets:
        return 0
    now = computed_at or db.utcnow()
    computed = compute_units(session, targets)
    for chunk in _chunks(targets):
        session.execute(delete(UnitComputedRule).where(UnitComputedRule.unit_id.in_(chunk)))
    store_computed(session, _rows_of(targets, computed, now))
    return len(targets)


def compute_new_units(
    session: Session,
    units: Sequence[ArchiveUnit],
    parents: Mapping[str, list[str]],
    referential: Mapping[str, Rule] | None = None,
) -> list[dict[str, Any]]:
    """The ``unit_computed_rules`` rows of units being created (ingest), from what their creator
    holds: their management JSON and ``parents`` (every parent is among ``units``, in link
    order); :func:`store_computed` writes them. Nothing is read from the catalogue, and nothing
    at all when the caller hands over the ``referential`` rules that the units name."""
    targets = [unit.id for unit in units]
    if not targets:
        return []
    management = {unit.id: unit.management or {} for unit in units}
    return _rows_of(targets, compute_graph(session, targets, parents, management, referential))


def store_computed(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``unit_computed_rules`` rows (of :func:`compute_new_units`; flush, no commit)."""
    if rows:
        session.execute(insert(UnitComputedRule), rows)
    session.flush()


def _rows_of(
    targets: Sequence[str],
    computed: Mapping[str, dict[str, compute.CategoryResult]],
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """The ``unit_computed_rules`` rows of ``targets``, from what was computed for them."""
    return [row for uid in targets for row in _rows(uid, computed[uid], now)]


def recompute_for_rules(
    session: Session,
    rule_ids: Sequence[str],
    *,
    actor: str,
    offers: Mapping[str, StorageOffer] | None = None,
) -> int:
    """Recompute every unit that uses one of ``rule_ids`` (declared or inherited), extend the
    storage locks when ``offers`` are given; journaled ``rules.end_dates_recomputed``.

    The leaf names the rules and the time, not the (possibly 100,000) rows: the replay of a
    rebuild calls :func:`refresh_for_rules` on the same catalogue and gets the same rows."""
    now = db.utcnow()
    affected, count = refresh_for_rules(session, rule_ids, computed_at=now)
    failures = align_locks(session, affected, offers) if offers is not None else []
    append_event(
        session,
        type="rules.end_dates_recomputed",
        actor=actor,
        payload={
            "rules": list(rule_ids),
            "units": count,
            **({"lock_failures": failures[:100]} if failures else {}),
            "computed_at": now.isoformat(),
        },
    )
    return count


def refresh_for_rules(
    session: Session, rule_ids: Sequence[str], *, computed_at: datetime
) -> tuple[list[str], int]:
    """Recompute and store the end dates of every unit that declares one of ``rule_ids`` and
    of all their descendants (flush, no commit); returns those units and their count."""
    declaring = sorted(
        set(session.scalars(select(UnitRule.unit_id).where(UnitRule.rule_id.in_(rule_ids))))
    )
    affected = sorted(descendants(session, declaring))
    return affected, refresh_units(session, affected, computed_at=computed_at)


def align_locks(
    session: Session, unit_ids: Sequence[str], offers: Mapping[str, StorageOffer]
) -> list[str]:
    """Extend the storage locks of the units' objects to their (new) appraisal end.

    Locks are only ever extended: a shortened duration leaves the copies locked longer, and the
    disposal execution then stops on them (resumable) rather than deleting early. Returns the
    copies that could not be extended.
    """
    failures: list[str] = []
    groups: set[str] = set()
    record_until: dict[str, datetime] = {}  # the latest new lock of each transfer's objects
    for chunk in _chunks(sorted(set(unit_ids))):
        groups.update(
            g
            for g in session.scalars(
                select(ArchiveUnit.data_object_group_id).where(ArchiveUnit.id.in_(chunk))
            )
            if g
        )
    for group in sorted(groups):
        sharing = list(
            session.scalars(select(ArchiveUnit.id).where(ArchiveUnit.data_object_group_id == group))
        )
        rows = {
            row.unit_id: row
            for row in session.scalars(
                select(UnitComputedRule).where(
                    UnitComputedRule.unit_id.in_(sharing),
                    UnitComputedRule.category == "AppraisalRule",
                )
            )
        }
        ends = [
            rows[u].end_date if u in rows and rows[u].final_action == "Destroy" else None
            for u in sharing
        ]
        until = (
            compute.end_of_day(max(e for e in ends if e is not None))
            if ends and all(e is not None for e in ends)
            else PERMANENT_RETAIN_UNTIL
        )
        copies = copies_of_groups(session, [group], active_only=True)
        failures.extend(_failures(extend_copies(copies, offers, until)))
        transfer_id = session.scalar(
            select(DataObjectGroup.transfer_id).where(DataObjectGroup.id == group)
        )
        if transfer_id is not None:
            record_until[transfer_id] = max(until, record_until.get(transfer_id, until))
    for transfer_id, until in sorted(record_until.items()):
        failures.extend(extend_transfer_records(session, [transfer_id], offers, until))
    return failures


def extend_transfer_records(
    session: Session,
    transfer_ids: Sequence[str],
    offers: Mapping[str, StorageOffer],
    until: datetime,
) -> list[str]:
    """Extend the lock of these transfers' descriptions (``transfers/<id>.zip``) to at least
    ``until``, the new lock of one of their objects: a description must outlive every object
    it describes (never shortened). Returns the copies that could not be extended."""
    return _failures(
        extend_copies(copies_of_transfer_records(session, transfer_ids), offers, until)
    )


def _failures(outcomes: Sequence[CopyOutcome]) -> list[str]:
    return [
        f"{o.offer}: not configured" if o.error is None else f"{o.offer}:{o.key}: {o.error.detail}"
        for o in outcomes
        if not o.ok
    ]


def active_hold_clause(on: date) -> Any:
    """SQL condition: an API hold that is in force on ``on`` (not lifted, not past its end)."""
    return and_(Hold.lifted_at.is_(None), or_(Hold.until.is_(None), Hold.until >= on))


def held_units(session: Session, unit_ids: Iterable[str], on: date | None = None) -> set[str]:
    """Which of ``unit_ids`` are held on ``on`` (API hold or SEDA HoldRule in force)."""
    day = on or today()
    targets = sorted(set(unit_ids))
    held: set[str] = set()
    for chunk in _chunks(targets):
        held.update(
            session.scalars(
                select(HoldUnit.unit_id)
                .join(Hold, Hold.id == HoldUnit.hold_id)
                .where(HoldUnit.unit_id.in_(chunk), active_hold_clause(day))
            )
        )
        held.update(
            session.scalars(
                select(UnitComputedRule.unit_id).where(
                    UnitComputedRule.unit_id.in_(chunk),
                    UnitComputedRule.category == "HoldRule",
                    or_(UnitComputedRule.unbounded.is_(True), UnitComputedRule.end_date > day),
                )
            )
        )
    return held


def not_held_clause(on: date) -> Any:
    """SQL condition on ``ArchiveUnit``: no hold of any kind in force on ``on``."""
    api_hold = exists(
        select(HoldUnit.unit_id)
        .join(Hold, Hold.id == HoldUnit.hold_id)
        .where(HoldUnit.unit_id == ArchiveUnit.id, active_hold_clause(on))
    )
    # An alias: the caller's query may itself join unit_computed_rules (auto-correlation).
    hold_row = aliased(UnitComputedRule)
    seda_hold = exists(
        select(hold_row.unit_id).where(
            hold_row.unit_id == ArchiveUnit.id,
            hold_row.category == "HoldRule",
            or_(hold_row.unbounded.is_(True), hold_row.end_date > on),
        )
    )
    return ~api_hold & ~seda_hold


def fingerprint(session: Session, unit_id: str, on: date | None = None) -> str:
    """SHA-256 over a unit's applied rules, final action and holds, computed fresh.

    Taken at approval and compared at execution: any change to the unit's rules, to the
    referential durations that apply to it, or to its holds makes them differ.
    """
    day = on or today()
    results = compute_units(session, [unit_id])[unit_id]
    doc = {
        "rules": {cat: rules_json(res) for cat, res in sorted(results.items()) if res.rules},
        "final_action": final_action_of(results["AppraisalRule"])
        if "AppraisalRule" in results
        else "Keep",
        "holds": sorted(
            session.scalars(
                select(HoldUnit.hold_id)
                .join(Hold, Hold.id == HoldUnit.hold_id)
                .where(HoldUnit.unit_id == unit_id, active_hold_clause(day))
            )
        ),
    }
    raw = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(raw).hexdigest()
