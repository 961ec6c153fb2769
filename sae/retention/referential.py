"""The management-rule referential: import (Vitam CSV or YAML), export, listing.

Import is "annule et remplace" as in Vitam: the file becomes the whole referential. A rule still
used by an archive unit cannot be deleted; every problem of the file is reported at once.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from sae.auth.service import SYSTEM, Principal
from sae.catalog.models import UnitRule
from sae.db import utcnow
from sae.journal.service import append_event
from sae.retention.errors import InvalidReferential, RuleInUse
from sae.retention.models import Rule

CSV_HEADER = ["RuleId", "RuleType", "RuleValue", "RuleDescription", "RuleDuration",
              "RuleMeasurement"]
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


@dataclass(frozen=True)
class RuleSpec:
    """One rule as read from a file, before it touches the database."""

    id: str
    type: str
    value: str
    description: str
    duration: int | None
    measurement: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "value": self.value,
            "description": self.description,
            "duration": self.duration,
            "measurement": self.measurement,
        }


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
    if len(problems) > start:
        return None
    return RuleSpec(rule_id, rule_type, value, description, duration, measurement)


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
        raw = dict(zip(["id", "type", "value", "description", "duration", "measurement"], row,
                       strict=True))
        spec = _spec(raw, f"line {number}", problems)
        if spec is not None:
            specs.append(spec)
    return _finish(specs, problems)


def parse_yaml(text: str) -> list[RuleSpec]:
    """Read the YAML equivalent: ``rules: [{id, type, value, description, duration, measurement}]``."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidReferential(f"the YAML is not readable: {exc}", problems=[str(exc)]) from None
    items = doc.get("rules") if isinstance(doc, dict) else doc
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
        normalised = {str(k).lower().removeprefix("rule"): v for k, v in raw.items()}
        spec = _spec(normalised, f"rule {number}", problems)
        if spec is not None:
            specs.append(spec)
    return _finish(specs, problems)


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


def import_rules(
    session: Session, specs: Sequence[RuleSpec], *, actor: Principal = SYSTEM
) -> dict[str, int]:
    """Replace the referential with ``specs``. Refused if a rule still in use would vanish."""
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
        session.execute(delete(Rule).where(Rule.id.in_(removed)))
    added = changed = 0
    now = utcnow()
    for spec in specs:
        rule = current.get(spec.id)
        if rule is None:
            session.add(Rule(**spec.as_dict(), updated_at=now))
            added += 1
            continue
        if RuleSpec(rule.id, rule.type, rule.value, rule.description, rule.duration,
                    rule.measurement) != spec:
            for key, value in spec.as_dict().items():
                setattr(rule, key, value)
            rule.updated_at = now
            changed += 1
    session.flush()
    summary = {"added": added, "changed": changed, "removed": len(removed), "total": len(specs)}
    append_event(session, type="rules.imported", actor=actor.actor, payload=summary)
    return summary


def list_rules(session: Session) -> list[Rule]:
    """The referential, by id."""
    return list(session.scalars(select(Rule).order_by(Rule.id)))


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
                "unlimited" if rule.duration is None and rule.type != "HoldRule"
                else ("" if rule.duration is None else rule.duration),
                rule.measurement or "",
            ]
        )
    return out.getvalue()
