"""Rule computation per SEDA semantics: inheritance down the unit graph, end dates.

* A unit inherits every rule of a category from all its parents (the graph may have several),
  unless it declares ``PreventInheritance`` (drop all) or ``RefNonRuleId`` (drop those ids).
* A rule redeclared locally with the same id masks the inherited one; other local rules add.
* End date = StartDate + duration; no StartDate, or no duration, means no end date.
* A category's end for a unit is the latest end date of its rules; if any rule has no end date
  the category has none (never due, never communicable by lapse of time).
* FinalAction: a local one wins; otherwise the inherited ones (several if parents disagree);
  none anywhere means an implicit Keep.

Roots inherit the transfer's ManagementMetadata defaults.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import seda
from sae.retention.models import Rule

CATEGORIES = (
    "StorageRule",
    "AppraisalRule",
    "AccessRule",
    "DisseminationRule",
    "ReuseRule",
    "ClassificationRule",
    "HoldRule",
)


def management_to_json(management: seda.Management | None) -> dict[str, Any]:
    """The declared rules of a unit as stored in the catalogue (stable JSON shape)."""
    out: dict[str, Any] = {}
    if management is None:
        return out
    for category, block in management.rules.items():
        out[category] = {
            "rules": [_ref_json(ref) for ref in block.rules],
            "final_action": block.final_action,
            "prevent_inheritance": bool(block.prevent_inheritance),
            "ref_non_rule_ids": list(block.ref_non_rule_ids),
        }
    return out


def _ref_json(ref: seda.RuleRef) -> dict[str, Any]:
    out: dict[str, Any] = {
        "rule_id": ref.rule_id,
        "start_date": ref.start_date.isoformat() if ref.start_date else None,
    }
    # HoldRule only (SEDA 2.2+): the hold's own end date, owner and reason.
    if ref.hold_end_date is not None:
        out["hold_end_date"] = ref.hold_end_date.isoformat()
    if ref.hold_owner:
        out["hold_owner"] = ref.hold_owner
    if ref.hold_reason:
        out["hold_reason"] = ref.hold_reason
    if ref.prevent_rearrangement is not None:
        out["prevent_rearrangement"] = ref.prevent_rearrangement
    return out


@dataclass(frozen=True)
class AppliedRule:
    """A rule that applies to a unit, where it comes from, and its end date."""

    rule_id: str
    start_date: date | None
    end_date: date | None
    origin: str  # the SIP or catalogue id of the unit that declares it ("" for the defaults)


@dataclass
class CategoryResult:
    """The outcome for one category on one unit."""

    rules: list[AppliedRule] = field(default_factory=list)
    final_actions: set[str] = field(default_factory=set)

    @property
    def end(self) -> date | None:
        """Latest end date, or None when a rule has none (or there is no rule)."""
        if not self.rules or any(r.end_date is None for r in self.rules):
            return None
        return max(r.end_date for r in self.rules if r.end_date is not None)


def add_duration(start: date, duration: int, measurement: str) -> date:
    """StartDate + duration, month arithmetic clamped to the month's last day."""
    unit = measurement.upper()
    if unit == "DAY":
        return date.fromordinal(start.toordinal() + duration)
    months = duration * 12 if unit == "YEAR" else duration
    if unit not in ("YEAR", "MONTH"):
        raise ValueError(f"unknown measurement {measurement!r}")
    month_index = start.month - 1 + months
    year = start.year + month_index // 12
    month = month_index % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    return date(year, month, day)


def _end(rule: Rule | None, start: date | None, hold_end: date | None = None) -> date | None:
    if rule is not None and rule.type == "HoldRule" and rule.duration is None:
        # A HoldRule without a duration ends at its HoldEndDate, or never (SEDA 2.2).
        return hold_end
    if rule is None or start is None or rule.duration is None or rule.measurement is None:
        return None
    return add_duration(start, rule.duration, rule.measurement)


def _applied(ref: Mapping[str, Any], referential: Mapping[str, Rule], origin: str) -> AppliedRule:
    start = _parse_date(ref.get("start_date"))
    rid = str(ref["rule_id"])
    end = _end(referential.get(rid), start, _parse_date(ref.get("hold_end_date")))
    return AppliedRule(rid, start, end, origin)


def _parse_date(value: Any) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def compute_category(
    category: str,
    order: list[str],
    declared: Mapping[str, Mapping[str, Any]],
    parents: Mapping[str, list[str]],
    defaults: Mapping[str, Mapping[str, Any]],
    referential: Mapping[str, Rule],
) -> dict[str, CategoryResult]:
    """The rules of ``category`` applying to every unit of ``order`` (parents before children).

    ``declared[unit]`` is the unit's stored management JSON; ``defaults[unit]`` the transfer's
    ManagementMetadata rules, inherited by units without parents.
    """
    results: dict[str, CategoryResult] = {}
    for unit in order:
        inherited: dict[str, AppliedRule] = {}
        inherited_actions: set[str] = set()
        sources = parents.get(unit, [])
        if sources:
            for parent in sources:
                parent_result = results.get(parent)
                if parent_result is None:
                    continue
                for rule in parent_result.rules:
                    inherited.setdefault(rule.rule_id, rule)
                inherited_actions |= parent_result.final_actions
        elif category in defaults.get(unit, {}):
            block = defaults[unit][category]
            for ref in block.get("rules", []):
                inherited[ref["rule_id"]] = _applied(ref, referential, "")
            if block.get("final_action"):
                inherited_actions = {block["final_action"]}
        local = declared.get(unit, {}).get(category)
        if local:
            if local.get("prevent_inheritance"):
                inherited = {}
                inherited_actions = set()
            for rid in local.get("ref_non_rule_ids", []):
                inherited.pop(rid, None)
            for ref in local.get("rules", []):
                inherited[ref["rule_id"]] = _applied(ref, referential, unit)
            if local.get("final_action"):
                inherited_actions = {local["final_action"]}
        results[unit] = CategoryResult(list(inherited.values()), inherited_actions)
    return results


def topological(units: Iterable[str], parents: Mapping[str, list[str]]) -> list[str]:
    """Units ordered parents first (the graph is acyclic: ingest refuses cycles)."""
    order: list[str] = []
    seen: set[str] = set()

    def visit(unit: str, stack: set[str]) -> None:
        if unit in seen or unit in stack:
            return
        stack.add(unit)
        for parent in parents.get(unit, []):
            visit(parent, stack)
        stack.discard(unit)
        seen.add(unit)
        order.append(unit)

    for unit in units:
        visit(unit, set())
    return order


def end_of_day(value: date) -> datetime:
    """A date as the lock instant that covers the whole day (UTC)."""
    return datetime(value.year, value.month, value.day, 23, 59, 59, tzinfo=UTC)


def retain_until_by_object(
    transfer: seda.ArchiveTransfer, referential: Mapping[str, Rule]
) -> dict[str, datetime | None]:
    """For each binary object of a SIP, until when its copies must stay locked.

    The latest appraisal end date over the units that reference its group; None (locked as
    permanent) when a unit has no computable end or a Keep final action.
    """
    package = transfer.package
    parents: dict[str, list[str]] = {}
    for unit in package.archive_units:
        for child in unit.child_unit_ids:
            parents.setdefault(child, []).append(unit.id)
    declared = {unit.id: management_to_json(unit.management) for unit in package.archive_units}
    mm = package.management_metadata
    mm_json = management_to_json(mm.management) if mm is not None else {}
    defaults = {unit_id: mm_json for unit_id in package.root_unit_ids}
    order = topological([u.id for u in package.archive_units], parents)
    appraisal = compute_category("AppraisalRule", order, declared, parents, defaults, referential)
    units_of_group: dict[str, list[str]] = {}
    for unit in package.archive_units:
        if unit.data_object_group_id:
            units_of_group.setdefault(unit.data_object_group_id, []).append(unit.id)
    out: dict[str, datetime | None] = {}
    for bdo in package.binary_data_objects:
        ends: list[date | None] = []
        for unit_id in units_of_group.get(bdo.group_id or "", []):
            result = appraisal[unit_id]
            keep = not result.final_actions or "Keep" in result.final_actions
            ends.append(None if keep else result.end)
        if not ends or any(e is None for e in ends):
            out[bdo.id] = None
        else:
            out[bdo.id] = end_of_day(max(e for e in ends if e is not None))
    return out
