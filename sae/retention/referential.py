"""The management-rule referential: import (Vitam CSV or YAML), export, listing.

Import is "annule et remplace" as in Vitam: the file becomes the whole referential. Guards:

* a rule still used by an archive unit cannot be deleted (:class:`RuleInUse`);
* a used HoldRule cannot gain or lose its duration (:class:`RuleInUse`);
* a duration below the configured minimum of its category is refused and journaled as an
  alert (``rules.minimum_duration_alert``): a referential rigged to zero years must not make
  every unit due at once (:class:`DurationBelowMinimum`; the caller commits the alert);
* every unit using a changed rule, directly or by inheritance, gets its end dates recomputed
  (``rules.end_dates_recomputed``).

Every problem of the file is reported at once. The YAML form carries the schedule metadata
(record type, start event, final action with sampling, legal reference, confidence), described
in ``docs/retention.md``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

import retention_rules
from sae.auth.service import SYSTEM, Principal
from sae.catalog.models import UnitRule
from sae.db import utcnow
from sae.journal.service import append_event
from sae.retention import dates
from sae.retention.compute import add_duration
from sae.retention.config import retention_settings
from sae.retention.errors import (
    DurationBelowMinimum,
    InvalidReferential,
    ReferentialChanged,
    RuleInUse,
)
from sae.retention.models import Rule
from sae.storage.base import StorageOffer

CSV_HEADER = [
    "RuleId",
    "RuleType",
    "RuleValue",
    "RuleDescription",
    "RuleDuration",
    "RuleMeasurement",
]
RULE_TYPES = (
    "AccessRule",
    "AppraisalRule",
    "StorageRule",
    "DisseminationRule",
    "ReuseRule",
    "ClassificationRule",
    "HoldRule",
)
MEASUREMENTS = ("YEAR", "MONTH", "DAY")
MAX_DAYS = {"YEAR": 999, "MONTH": 11_988, "DAY": 359_640}
_ID_RE = re.compile(r"[A-Za-z0-9_-]+")
FINAL_ACTIONS = ("Keep", "Destroy", "Sample")
CONFIDENCE = ("confirmed", "secondary", "uncertain")
#: Schedule metadata keys a YAML rule may carry (stored in ``Rule.meta``).
META_KEYS = (
    "record_type",
    "domain",
    "start_event",
    "final_action",
    "sampling",
    "legal_reference",
    "confidence",
    "access_rule",
    "note",
)
#: The shipped referential: the ``retention_rules`` package's folder, found through the package
#: (not this file's place in a checkout) so that an installed wheel finds its own copy.
SHIPPED_DIR = Path(retention_rules.__file__).resolve().parent


@dataclass(frozen=True)
class RuleSpec:
    """One rule as read from a file, before it touches the database."""

    id: str
    type: str
    value: str
    description: str
    duration: int | None
    measurement: str | None
    meta: dict[str, Any] | None = field(default=None, compare=True)

    def as_dict(self) -> dict[str, Any]:
        """The columns of the ``rules`` row."""
        return {
            "id": self.id,
            "type": self.type,
            "value": self.value,
            "description": self.description,
            "duration": self.duration,
            "measurement": self.measurement,
            "meta": self.meta,
        }


def _meta(raw: dict[str, Any], where: str, problems: list[str]) -> dict[str, Any] | None:
    meta = {k: raw[k] for k in META_KEYS if raw.get(k) not in (None, "")}
    unknown = sorted(
        k
        for k in raw
        if k not in META_KEYS
        and k not in ("id", "type", "value", "description", "duration", "measurement", "_yaml")
    )
    if unknown:
        problems.append(f"{where}: unknown field(s) {', '.join(unknown)}")
    action = meta.get("final_action")
    if action is not None and action not in FINAL_ACTIONS:
        problems.append(f"{where}: final_action {action!r} is not one of Keep, Destroy, Sample")
    if meta.get("confidence") is not None and meta["confidence"] not in CONFIDENCE:
        problems.append(
            f"{where}: confidence {meta['confidence']!r} is not one of {', '.join(CONFIDENCE)}"
        )
    sampling = meta.get("sampling")
    if action == "Sample":
        if not isinstance(sampling, dict):
            problems.append(f"{where}: final_action Sample needs a 'sampling' mapping")
        else:
            one_in = sampling.get("one_in")
            if not (one_in == "by_population" or (isinstance(one_in, int) and one_in >= 1)):
                problems.append(
                    f"{where}: sampling.one_in must be a whole number >= 1 or 'by_population'"
                )
    elif sampling is not None:
        problems.append(f"{where}: 'sampling' only goes with final_action Sample")
    return meta or None


def _spec(raw: dict[str, Any], where: str, problems: list[str]) -> RuleSpec | None:
    rule_id = str(raw.get("id") or "").strip()
    rule_type = str(raw.get("type") or "").strip()
    value = str(raw.get("value") or "").strip()
    description = str(raw.get("description") or "").strip()
    duration_raw = raw.get("duration")
    measurement_raw = raw.get("measurement")
    start = len(problems)
    if not rule_id or not _ID_RE.fullmatch(rule_id):
        problems.append(f"{where}: RuleId {rule_id!r} must be letters, digits, '_' or '-'")
    if rule_type not in RULE_TYPES:
        problems.append(f"{where}: RuleType {rule_type!r} is not one of {', '.join(RULE_TYPES)}")
    if not value:
        problems.append(f"{where}: RuleValue is mandatory")
    duration: int | None = None
    measurement: str | None = None
    duration_text = "" if duration_raw is None else str(duration_raw).strip()
    measurement_text = "" if measurement_raw is None else str(measurement_raw).strip().upper()
    if duration_text.lower() == "unlimited":
        duration = None
        measurement = measurement_text or None
    elif duration_text:
        if not duration_text.isdigit():
            problems.append(f"{where}: RuleDuration {duration_text!r} is not a whole number")
        else:
            duration = int(duration_text)
    elif rule_type != "HoldRule":
        problems.append(f"{where}: RuleDuration is mandatory for {rule_type or 'this rule'}")
    if measurement_text and duration_text.lower() != "unlimited":
        if measurement_text not in MEASUREMENTS:
            problems.append(
                f"{where}: RuleMeasurement {measurement_text!r} is not one of YEAR, MONTH, DAY"
            )
        else:
            measurement = measurement_text
    if duration is not None and measurement is None and len(problems) == start:
        problems.append(f"{where}: RuleDuration and RuleMeasurement go together")
    if measurement_text and not duration_text:
        problems.append(f"{where}: RuleDuration and RuleMeasurement go together")
    if duration is not None and measurement in MAX_DAYS and duration > MAX_DAYS[measurement]:
        problems.append(f"{where}: duration over 999 years")
    meta = _meta(raw, where, problems) if raw.get("_yaml") else None
    if len(problems) > start:
        return None
    return RuleSpec(rule_id, rule_type, value, description, duration, measurement, meta)


def parse_csv(text: str) -> list[RuleSpec]:
    """Read the Vitam CSV format (header exactly as Vitam's)."""
    problems: list[str] = []
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    try:
        header = next(reader)
    except StopIteration:
        raise InvalidReferential("the referential file is empty", problems=["empty file"]) from None
    if [h.strip() for h in header] != CSV_HEADER:
        raise InvalidReferential(
            "the CSV header must be exactly: " + ",".join(CSV_HEADER),
            problems=[f"line 1: header {header!r}"],
        )
    specs: list[RuleSpec] = []
    for number, row in enumerate(reader, start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(CSV_HEADER):
            problems.append(f"line {number}: {len(row)} columns, expected {len(CSV_HEADER)}")
            continue
        raw = dict(
            zip(["id", "type", "value", "description", "duration", "measurement"], row, strict=True)
        )
        spec = _spec(raw, f"line {number}", problems)
        if spec is not None:
            specs.append(spec)
    return _finish(specs, problems)


def parse_yaml(text: str) -> list[RuleSpec]:
    """Read the YAML form: ``rules: [{id, type, value, description, duration, measurement,
    …schedule metadata}]`` with an optional file-level ``defaults`` mapping."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidReferential(f"the YAML is not readable: {exc}", problems=[str(exc)]) from None
    items = doc.get("rules") if isinstance(doc, dict) else doc
    defaults = doc.get("defaults") if isinstance(doc, dict) else None
    if isinstance(defaults, dict) and isinstance(items, list):
        # A file-level ``defaults`` mapping (e.g. ``type: AppraisalRule``) applies to every rule.
        items = [{**defaults, **item} if isinstance(item, dict) else item for item in items]
    return _yaml_items(items)


def _yaml_items(items: Any, where_prefix: str = "") -> list[RuleSpec]:
    if not isinstance(items, list):
        raise InvalidReferential(
            "the YAML referential must be a list of rules or have a 'rules' list",
            problems=["no 'rules' list"],
        )
    problems: list[str] = []
    specs: list[RuleSpec] = []
    for number, raw in enumerate(items, start=1):
        if not isinstance(raw, dict):
            problems.append(f"rule {number}: not a mapping")
            continue
        normalised = {_yaml_key(str(k)): v for k, v in raw.items()}
        normalised["_yaml"] = True
        spec = _spec(normalised, f"{where_prefix}rule {number}", problems)
        if spec is not None:
            specs.append(spec)
    return _finish(specs, problems)


def _yaml_key(key: str) -> str:
    # Vitam spellings (RuleId, RuleDuration…) and plain ones (id, duration…) are both accepted.
    lowered = key.lower()
    if lowered.startswith("rule") and lowered[4:] in (
        "id",
        "type",
        "value",
        "description",
        "duration",
        "measurement",
    ):
        return lowered[4:]
    return lowered


def shipped_files(directory: Path | None = None) -> list[Path]:
    """The referential files shipped in ``retention_rules/`` (YAML), in name order."""
    return sorted((directory or SHIPPED_DIR).glob("*.yaml"))


def parse_files(paths: Sequence[Path]) -> list[RuleSpec]:
    """Several YAML/CSV files read as one referential (ids must be unique across them)."""
    specs: list[RuleSpec] = []
    problems: list[str] = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        try:
            ctype = "text/csv" if path.suffix.lower() == ".csv" else "application/yaml"
            specs.extend(parse(text, ctype))
        except InvalidReferential as exc:
            problems.extend(f"{path.name}: {p}" for p in exc.extra.get("problems", [exc.detail]))
    return _finish(specs, problems)


def shipped_specs(directory: Path | None = None) -> list[RuleSpec]:
    """The shipped referentials (communal schedule, access delays, holds), validated."""
    return parse_files(shipped_files(directory))


def _finish(specs: list[RuleSpec], problems: list[str]) -> list[RuleSpec]:
    seen: set[str] = set()
    for spec in specs:
        if spec.id in seen:
            problems.append(f"RuleId {spec.id!r} appears twice")
        seen.add(spec.id)
    if problems:
        raise InvalidReferential(
            f"the referential is refused ({len(problems)} problem(s)): " + "; ".join(problems[:5]),
            problems=problems,
        )
    return specs


def parse(text: str, content_type: str = "") -> list[RuleSpec]:
    """CSV or YAML, by content type or, failing that, by the first line."""
    ctype = content_type.lower()
    if "csv" in ctype:
        return parse_csv(text)
    if "yaml" in ctype or "yml" in ctype:
        return parse_yaml(text)
    first = text.lstrip("\ufeff").split("\n", 1)[0]
    return parse_csv(text) if first.startswith("RuleId") else parse_yaml(text)


def _parse_minimum(text: str) -> tuple[int, str]:
    number, _, unit = text.strip().partition(" ")
    unit = unit.strip().upper() or "YEAR"
    if not number.isdigit() or unit not in MEASUREMENTS:
        raise ValueError(f"minimum duration {text!r} is not like '1 YEAR', '6 MONTH', '90 DAY'")
    return int(number), unit


def below_minimum(specs: Sequence[RuleSpec], minimums: Mapping[str, str]) -> list[dict[str, Any]]:
    """The rules whose duration is shorter than the minimum of their category."""
    # Compared as end dates from one reference day, so "11 MONTH" < "1 YEAR" < "400 DAY".
    reference = date(2000, 1, 1)
    found = []
    for spec in specs:
        minimum = minimums.get(spec.type)
        if not minimum or spec.duration is None or spec.measurement is None:
            continue
        amount, unit = _parse_minimum(minimum)
        if add_duration(reference, spec.duration, spec.measurement) < add_duration(
            reference, amount, unit
        ):
            found.append(
                {
                    "rule_id": spec.id,
                    "type": spec.type,
                    "duration": f"{spec.duration} {spec.measurement}",
                    "minimum": minimum,
                }
            )
    return found


def import_rules(
    session: Session,
    specs: Sequence[RuleSpec],
    *,
    actor: Principal = SYSTEM,
    minimums: Mapping[str, str] | None = None,
    offers: Mapping[str, StorageOffer] | None = None,
) -> dict[str, Any]:
    """Replace the referential with ``specs`` (flush, no commit); see the module docstring.

    Raises :class:`DurationBelowMinimum` *after* journaling the alert: the caller must commit
    the session before answering so that the alert survives the refusal. With ``offers``, the
    storage locks of the recomputed units are extended to their new end dates.
    """
    limits = retention_settings().min_durations if minimums is None else minimums
    short = below_minimum(specs, limits)
    if short:
        append_event(
            session,
            type="rules.minimum_duration_alert",
            actor=actor.actor,
            payload={"rules": short, "minimums": dict(limits), "refused": True},
        )
        raise DurationBelowMinimum(
            "the referential is refused: "
            + ", ".join(f"{r['rule_id']} ({r['duration']} < {r['minimum']})" for r in short)
            + " — durations below the configured minimum of their category",
            rules=short,
        )
    new_ids = {spec.id for spec in specs}
    current = {rule.id: rule for rule in session.scalars(select(Rule))}
    removed = set(current) - new_ids
    if removed:
        used = sorted(
            set(session.scalars(select(UnitRule.rule_id).where(UnitRule.rule_id.in_(removed))))
        )
        if used:
            raise RuleInUse(
                f"rules still used by archive units cannot be deleted: {', '.join(used)}",
                rules=used,
            )
    changed_ids: list[str] = []
    for spec in specs:
        rule = current.get(spec.id)
        if rule is not None and (
            rule.type != spec.type
            or rule.duration != spec.duration
            or rule.measurement != spec.measurement
        ):
            changed_ids.append(spec.id)
    used_changed = (
        sorted(
            set(session.scalars(select(UnitRule.rule_id).where(UnitRule.rule_id.in_(changed_ids))))
        )
        if changed_ids
        else []
    )
    hold_flips = [
        rid
        for rid in used_changed
        if current[rid].type == "HoldRule"
        and (current[rid].duration is None) != (_by_id(specs, rid).duration is None)
    ]
    if hold_flips:
        raise RuleInUse(
            "a HoldRule in use cannot gain or lose its duration: " + ", ".join(hold_flips),
            rules=hold_flips,
        )
    now = utcnow()
    added, changed = apply_referential(session, specs, now=now)
    summary: dict[str, Any] = {
        "added": added,
        "changed": changed,
        "removed": len(removed),
        "total": len(specs),
        "recomputed_units": 0,
        "warnings": [],
    }
    append_event(
        session,
        type="rules.imported",
        actor=actor.actor,
        # The whole version imported, and its clock: the replay of a rebuild applies it with
        # apply_referential as the import did (the communal schedule is ~30 kB of JSON).
        payload={
            **summary,
            "referential": [spec.as_dict() for spec in specs],
            "updated_at": now.isoformat(),
        },
    )
    if used_changed:
        # Vitam: modifying a used rule is a warning, then every end date that depends on it is
        # recomputed and journaled.
        summary["recomputed_units"] = dates.recompute_for_rules(
            session, used_changed, actor=actor.actor, offers=offers
        )
        summary["warnings"].append(
            "rules in use were modified, end dates recomputed: " + ", ".join(used_changed)
        )
    return summary


def apply_referential(
    session: Session, specs: Sequence[RuleSpec], *, now: datetime
) -> tuple[int, int]:
    """Make the ``rules`` table exactly ``specs`` (flush, no commit), without the guards of
    :func:`import_rules` (its caller's, or the replay of an import they let through): a rule
    added or changed gets ``updated_at = now``, one unchanged keeps its own. Returns the
    counts of rules added and changed."""
    current = {rule.id: rule for rule in session.scalars(select(Rule))}
    removed = set(current) - {spec.id for spec in specs}
    if removed:
        session.execute(delete(Rule).where(Rule.id.in_(removed)))
    added = changed = 0
    for spec in specs:
        rule = current.get(spec.id)
        if rule is None:
            session.add(Rule(**spec.as_dict(), updated_at=now))
            added += 1
            continue
        if (
            RuleSpec(
                rule.id,
                rule.type,
                rule.value,
                rule.description,
                rule.duration,
                rule.measurement,
                rule.meta,
            )
            != spec
        ):
            for key, value in spec.as_dict().items():
                setattr(rule, key, value)
            rule.updated_at = now
            changed += 1
    session.flush()
    return added, changed


def _by_id(specs: Sequence[RuleSpec], rule_id: str) -> RuleSpec:
    return next(spec for spec in specs if spec.id == rule_id)


def list_rules(session: Session) -> list[Rule]:
    """The referential, by id."""
    return list(session.scalars(select(Rule).order_by(Rule.id)))


def export_yaml(rules: Sequence[Rule]) -> str:
    """The referential as YAML, with the schedule metadata (re-importable)."""
    items = []
    for rule in rules:
        item: dict[str, Any] = {
            "id": rule.id,
            "type": rule.type,
            "value": rule.value,
            "description": rule.description,
            "duration": "unlimited"
            if rule.duration is None and rule.type != "HoldRule"
            else rule.duration,
            "measurement": rule.measurement,
        }
        item.update(rule.meta or {})
        items.append({k: v for k, v in item.items() if v not in (None, "")})
    return yaml.safe_dump({"rules": items}, allow_unicode=True, sort_keys=False)


def export_csv(rules: Sequence[Rule]) -> str:
    """The referential in the Vitam CSV format."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for rule in rules:
        writer.writerow(
            [
                rule.id,
                rule.type,
                rule.value,
                rule.description,
                "unlimited"
                if rule.duration is None and rule.type != "HoldRule"
                else ("" if rule.duration is None else rule.duration),
                rule.measurement or "",
            ]
        )
    return out.getvalue()


# --- preview -------------------------------------------------------------------------------------

#: How many of the units whose dates change a preview names (the count covers them all).
PREVIEW_SAMPLE = 20


@dataclass(frozen=True)
class RuleChange:
    """A rule of the new referential that differs from the current one."""

    id: str
    type: str
    value: str
    before: str  # "5 YEAR", "—" when no duration
    after: str
    dates_change: bool  # type or duration changed: the units using it get new end dates
    used: bool  # archive units cite it


@dataclass(frozen=True)
class UnitDateChange:
    """A unit whose computed end dates the import would change (one category at least)."""

    unit_id: str
    title: str | None
    category: str
    before: date | None
    after: date | None


@dataclass
class ImportPreview:
    """What :func:`import_rules` would do with ``specs``, computed without writing anything."""

    added: list[RuleSpec]
    changed: list[RuleChange]
    removed: list[Rule]
    unchanged: int
    total: int
    #: Why the import would be refused (rule in use removed, HoldRule flip, below minimum).
    refusals: list[str]
    units_changed: int
    sample: list[UnitDateChange]

    @property
    def applicable(self) -> bool:
        return not self.refusals

    def as_dict(self) -> dict[str, Any]:
        """JSON for the API and the CLI."""
        return {
            "added": [s.id for s in self.added],
            "changed": [
                {
                    "id": c.id,
                    "before": c.before,
                    "after": c.after,
                    "dates_change": c.dates_change,
                    "used": c.used,
                }
                for c in self.changed
            ],
            "removed": [r.id for r in self.removed],
            "unchanged": self.unchanged,
            "total": self.total,
            "refusals": self.refusals,
            "units_changed": self.units_changed,
            "sample": [
                {
                    "unit_id": u.unit_id,
                    "title": u.title,
                    "category": u.category,
                    "before": u.before.isoformat() if u.before else None,
                    "after": u.after.isoformat() if u.after else None,
                }
                for u in self.sample
            ],
        }


def _duration_text(duration: int | None, measurement: str | None) -> str:
    return f"{duration} {measurement}" if duration is not None and measurement else "—"


def preview_import(
    session: Session,
    specs: Sequence[RuleSpec],
    *,
    minimums: Mapping[str, str] | None = None,
    sample: int = PREVIEW_SAMPLE,
) -> ImportPreview:
    """What importing ``specs`` would do: rules added, changed and removed, the refusals
    :func:`import_rules` would raise, and the units whose computed end dates would change
    (their count and the first ``sample``). Reads only: nothing is written or journaled.

    The new end dates are computed as the import's recomputation does (the same inheritance,
    on the same units: those citing a rule whose type or duration changes, and their
    descendants), with the new rules in place of the stored ones."""
    from sae.catalog.models import ArchiveUnit
    from sae.retention.models import UnitComputedRule

    limits = retention_settings().min_durations if minimums is None else minimums
    current = {rule.id: rule for rule in session.scalars(select(Rule))}
    new_ids = {spec.id for spec in specs}
    removed = sorted((r for rid, r in current.items() if rid not in new_ids), key=lambda r: r.id)
    refusals = [
        f"{r['rule_id']} : durée {r['duration']} inférieure au minimum {r['minimum']} "
        f"de sa catégorie"
        for r in below_minimum(specs, limits)
    ]
    used_ids = (
        set(
            session.scalars(
                select(UnitRule.rule_id).where(UnitRule.rule_id.in_(sorted(current)))
            ).all()
        )
        if current
        else set()
    )
    refusals += [
        f"{r.id} : règle supprimée alors que des unités d'archives la citent"
        for r in removed
        if r.id in used_ids
    ]
    added: list[RuleSpec] = []
    changed: list[RuleChange] = []
    for spec in specs:
        rule = current.get(spec.id)
        if rule is None:
            added.append(spec)
            continue
        stored = RuleSpec(
            rule.id,
            rule.type,
            rule.value,
            rule.description,
            rule.duration,
            rule.measurement,
            rule.meta,
        )
        if stored == spec:
            continue
        dates_change = (
            rule.type != spec.type
            or rule.duration != spec.duration
            or rule.measurement != spec.measurement
        )
        used = spec.id in used_ids
        if (
            used
            and rule.type == "HoldRule"
            and dates_change
            and (rule.duration is None) != (spec.duration is None)
        ):
            refusals.append(f"{spec.id} : règle de gel utilisée qui gagnerait ou perdrait sa durée")
        changed.append(
            RuleChange(
                id=spec.id,
                type=spec.type,
                value=spec.value,
                before=_duration_text(rule.duration, rule.measurement),
                after=_duration_text(spec.duration, spec.measurement),
                dates_change=dates_change,
                used=used,
            )
        )
    recomputed = sorted(c.id for c in changed if c.dates_change and c.used)
    units_changed = 0
    found: list[UnitDateChange] = []
    if recomputed:
        declaring = sorted(
            set(session.scalars(select(UnitRule.unit_id).where(UnitRule.rule_id.in_(recomputed))))
        )
        targets = sorted(dates.descendants(session, declaring))
        # The new rules, transient (never added to the session): the computation reads them
        # in place of the stored ones.
        replaced = {spec.id: Rule(**spec.as_dict()) for spec in specs if spec.id in recomputed}
        for chunk in dates._chunks(targets):
            parents = dates.parents_closure(session, chunk)
            closure = set(chunk) | {p for plist in parents.values() for p in plist}
            management: dict[str, dict[str, Any]] = {}
            for part in dates._chunks(sorted(closure)):
                for uid, mgmt in session.execute(
                    select(ArchiveUnit.id, ArchiveUnit.management).where(ArchiveUnit.id.in_(part))
                ):
                    management[uid] = mgmt or {}
            rules = {**dates.referenced_rules(session, management.values()), **replaced}
            computed = dates.compute_graph(session, list(chunk), parents, management, rules)
            stored_rows: dict[tuple[str, str], UnitComputedRule] = {
                (row.unit_id, row.category): row
                for row in session.scalars(
                    select(UnitComputedRule).where(UnitComputedRule.unit_id.in_(chunk))
                )
            }
            for uid in chunk:
                new_rows = {row["category"]: row for row in dates._rows(uid, computed[uid])}
                categories = sorted(set(new_rows) | {c for u, c in stored_rows if u == uid})
                differing = [
                    c
                    for c in categories
                    if _row_key(new_rows.get(c)) != _stored_key(stored_rows.get((uid, c)))
                ]
                if not differing:
                    continue
                units_changed += 1
                if len(found) < sample:
                    category = differing[0]
                    new = new_rows.get(category)
                    old = stored_rows.get((uid, category))
                    found.append(
                        UnitDateChange(
                            unit_id=uid,
                            title=None,
                            category=category,
                            before=old.end_date if old else None,
                            after=new["end_date"] if new else None,
                        )
                    )
        titles = dict(
            session.execute(
                select(ArchiveUnit.id, ArchiveUnit.title).where(
                    ArchiveUnit.id.in_([u.unit_id for u in found])
                )
            ).all()
        )
        found = [
            UnitDateChange(u.unit_id, titles.get(u.unit_id), u.category, u.before, u.after)
            for u in found
        ]
    return ImportPreview(
        added=added,
        changed=changed,
        removed=removed,
        unchanged=len(specs) - len(added) - len(changed),
        total=len(specs),
        refusals=refusals,
        units_changed=units_changed,
        sample=found,
    )


def version(session: Session) -> str:
    """A digest of the referential as it stands (every rule's columns): a preview carries it,
    so that applying it can check that nothing changed in between."""
    digest = hashlib.sha256()
    for rule in list_rules(session):
        spec = RuleSpec(
            rule.id,
            rule.type,
            rule.value,
            rule.description,
            rule.duration,
            rule.measurement,
            rule.meta,
        )
        digest.update(json.dumps(spec.as_dict(), sort_keys=True, default=str).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def check_version(session: Session, expected: str) -> None:
    """Refuse (:class:`ReferentialChanged`) when the referential is no longer ``expected``."""
    if version(session) != expected:
        raise ReferentialChanged(
            "the referential changed since the preview: preview the file again before applying it"
        )


def _row_key(row: Mapping[str, Any] | None) -> tuple[Any, ...] | None:
    if row is None:
        return None
    return (row["end_date"], row["unbounded"], row["final_action"], row["rules"])


def _stored_key(row: Any) -> tuple[Any, ...] | None:
    if row is None:
        return None
    return (row.end_date, row.unbounded, row.final_action, row.rules)
