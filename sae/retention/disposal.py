"""Disposal lists: built from due units, approved by the archivist, visa'd by the departmental
archives — the legal circuit of CP L212-2 / R212-14, every step journaled.

States::

    draft ─submit─▶ submitted ─approve─▶ approved ─visa─▶ visa_recorded ─execute─▶ executing
      └──────────approve─────────────────▲  │                                        │
      └─reject─▶ rejected ◀──reject──────┴──┘                                executed ◀┘

A *Destroy* list needs the visa before execution; a *Keep* list (permanent keeping) needs only
the archivist's approval. A unit sits on at most one open list; a rejected list frees its units.

Sampling (the *tri* of the grids, final action ``Sample`` in the schedule metadata) happens when
the list is built, so the archivist reviews it before approving: per rule, the units of the
first year of the measure are kept, then 1 unit in N of the others, N from the rule (or from
the commune's population: 1 in 5 from 3,500 inhabitants, 1 in 10 from 10,000, 1 in 20 from
50,000, 1 in 50 from 300,000) — ranks 1, N+1, 2N+1… in the order (start date, title, id), which
anyone can redo from the bordereau.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Select, and_, exists, func, select
from sqlalchemy.orm import Session

from sae import db
from sae.auth.models import ApiToken, User
from sae.catalog.models import GONE, ArchiveUnit, DataObject, UnitLink, UnitRule
from sae.errors import NotFound
from sae.journal.service import append_event
from sae.retention import dates
from sae.retention.config import RetentionSettings, retention_settings
from sae.retention.errors import (
    FourEyes,
    InvalidBordereauFormat,
    InvalidVisa,
    ListNotFound,
    WrongState,
)
from sae.retention.models import DisposalLine, DisposalList, Rule, UnitComputedRule
from sae.storage.base import StorageOffer

#: Advisory lock key (PostgreSQL) taken while a list is built.
BUILD_LOCK = 0x5AE0_D15B

OPEN_STATES = ("draft", "submitted", "approved", "visa_recorded", "executing")
FINAL_ACTIONS = ("Destroy", "Keep")
MEASURE_FR = {"YEAR": ("an", "ans"), "MONTH": ("mois", "mois"), "DAY": ("jour", "jours")}


def one_in_by_population(population: int) -> int:
    """The sampling rate of social files by population (AD Var CCAS grid, after 2014/006)."""
    if population < 3_500:
        return 1
    if population < 10_000:
        return 5
    if population < 50_000:
        return 10
    if population < 300_000:
        return 20
    return 50


def dua_text(rule: Rule | None) -> str:
    """A rule's duration in French, e.g. ``5 ans``."""
    if rule is None:
        return ""
    if rule.duration is None or rule.measurement is None:
        return "illimitée"
    one, many = MEASURE_FR.get(rule.measurement, (rule.measurement, rule.measurement))
    return f"{rule.duration} {one if rule.duration == 1 else many}"


def get_list(session: Session, list_id: str, *, for_update: bool = False) -> DisposalList:
    """The list, or :class:`ListNotFound`."""
    stmt = select(DisposalList).where(DisposalList.id == list_id)
    if for_update:
        stmt = stmt.with_for_update()
    found = session.scalar(stmt)
    if found is None:
        raise ListNotFound(f"no disposal list {list_id}")
    return found


def lines_of(session: Session, list_id: str) -> list[DisposalLine]:
    """The lines of a list, in bordereau order."""
    return list(
        session.scalars(
            select(DisposalLine)
            .where(DisposalLine.list_id == list_id)
            .order_by(DisposalLine.position, DisposalLine.id)
        )
    )


def due_units(final_action: str, due_before: date, producer: str | None = None) -> Select[str]:
    """The ids of active, unheld units whose appraisal ended before ``due_before`` with this
    final action, not already on an open list — as a select, unordered, to run or to nest (an
    index range scan on ``unit_computed_rules``). Before the kept-children rule of
    :func:`due_unit_ids`."""
    on_open_list = exists(
        select(DisposalLine.id)
        .join(DisposalList, DisposalList.id == DisposalLine.list_id)
        .where(
            DisposalLine.unit_id == ArchiveUnit.id,
            DisposalList.state.in_(OPEN_STATES),
            DisposalLine.state != "excluded",
        )
    )
    stmt = (
        select(ArchiveUnit.id)
        .join(
            UnitComputedRule,
            and_(
                UnitComputedRule.unit_id == ArchiveUnit.id,
                UnitComputedRule.category == "AppraisalRule",
            ),
        )
        .where(
            UnitComputedRule.final_action == final_action,
            UnitComputedRule.end_date < due_before,
            ArchiveUnit.status == "active",
            dates.not_held_clause(dates.today()),
            ~on_open_list,
        )
    )
    if producer:
        stmt = stmt.where(ArchiveUnit.producer == producer)
    return stmt


def due_unit_ids(
    session: Session,
    final_action: str,
    due_before: date,
    producer: str | None = None,
) -> list[str]:
    """The due units (:func:`due_units`) in bordereau order; for destruction, without the units
    that still have a child kept."""
    stmt = due_units(final_action, due_before, producer).order_by(
        ArchiveUnit.producer, UnitComputedRule.end_date, ArchiveUnit.id
    )
    candidates = list(session.scalars(stmt))
    if final_action == "Destroy":
        candidates = _without_kept_children(session, candidates)
    return candidates


def due_producers(
    session: Session, final_action: str, due_before: date, producer: str | None = None
) -> list[str]:
    """The producing services with due units (:func:`due_units`), in name order — grouped in
    SQL over the whole backlog, however many units are due."""
    # In FROM, the due select is never correlated with this query's own archive_units.
    due = due_units(final_action, due_before, producer).subquery()
    names = session.scalars(
        select(ArchiveUnit.producer).join(due, due.c.id == ArchiveUnit.id).distinct()
    )
    # Sorted here, not by the database's collation: the lists are numbered in this order,
    # the same on SQLite and PostgreSQL.
    return sorted(names)


def build_due_lists(
    session: Session,
    *,
    actor: str,
    final_actions: Sequence[str] = FINAL_ACTIONS,
    producer: str | None = None,
    due_before: date | None = None,
) -> list[DisposalList]:
    """Make every list that is due: one draft list (:func:`build_list`) per final action and
    producing service with due units, actions in the order given and services in name order
    (flush, no commit); none when nothing is due. ``sae retention run``, ``POST
    /disposal-lists/due`` and the console's "one list per service" all call it."""
    for action in final_actions:
        if action not in FINAL_ACTIONS:
            raise WrongState(f"final_action must be Destroy or Keep, not {action!r}")
    day = due_before or dates.today()
    made = []
    for action in final_actions:
        for name in due_producers(session, action, day, producer):
            # A producer whose due units all wait for a kept child has nothing to destroy: no
            # list rather than an empty one, as when nothing is due.
            if action == "Destroy" and not due_unit_ids(session, action, day, name):
                continue
            made.append(
                build_list(session, final_action=action, actor=actor, producer=name, due_before=day)
            )
    return made


def _without_kept_children(session: Session, candidates: list[str]) -> list[str]:
    """Drop units that still have a child outside the selection (a file whose pieces are kept
    cannot go: Vitam's NON_DESTROYABLE_HAS_CHILD_UNITS), until nothing changes."""
    selected = set(candidates)
    children: dict[str, list[tuple[str, str]]] = {}
    for i in range(0, len(candidates), dates.BATCH):
        chunk = candidates[i : i + dates.BATCH]
        for parent, child, status in session.execute(
            select(UnitLink.parent_id, UnitLink.child_id, ArchiveUnit.status)
            .join(ArchiveUnit, ArchiveUnit.id == UnitLink.child_id)
            .where(UnitLink.parent_id.in_(chunk))
        ):
            children.setdefault(parent, []).append((child, status))
    changed = True
    while changed:
        changed = False
        for unit in list(selected):
            if any(c not in selected and s not in GONE for c, s in children.get(unit, [])):
                selected.discard(unit)
                changed = True
    return [u for u in candidates if u in selected]


def _next_reference(session: Session, final_action: str) -> str:
    year = db.utcnow().year
    prefix = f"{'BE' if final_action == 'Destroy' else 'BC'}-{year}-"
    count = (
        session.scalar(
            select(func.count())
            .select_from(DisposalList)
            .where(DisposalList.reference.like(prefix + "%"))
        )
        or 0
    )
    return f"{prefix}{count + 1:04d}"


@dataclass
class _Line:
    unit: ArchiveUnit
    rules: list[dict[str, Any]]
    end: date | None


def build_list(
    session: Session,
    *,
    final_action: str,
    actor: str,
    producer: str | None = None,
    due_before: date | None = None,
    config: RetentionSettings | None = None,
) -> DisposalList:
    """Make a draft list of the due units (flush, no commit); an empty selection makes an empty
    list. Journaled ``disposal.list_created``."""
    if final_action not in FINAL_ACTIONS:
        raise WrongState(f"final_action must be Destroy or Keep, not {final_action!r}")
    cfg = config or retention_settings()
    day = due_before or dates.today()
    list_id = db.new_id()
    disposal = DisposalList(
        id=list_id,
        reference=f"tmp-{list_id}",
        final_action=final_action,
        producer=producer,
        due_before=day,
        state="draft",
        created_at=db.utcnow(),
        created_by=actor,
        notification_object_ids=[],
    )
    # List builders take turns: two lists built at once never share a unit or a reference.
    db.lock_for_writing(session, BUILD_LOCK)
    session.add(disposal)
    disposal.reference = _next_reference(session, final_action)
    unit_ids = due_unit_ids(session, final_action, day, producer)
    session.flush()
    lines = make_lines(session, disposal, unit_ids, population=cfg.population)
    append_event(
        session,
        type="disposal.list_created",
        actor=actor,
        payload={
            "list_id": disposal.id,
            "reference": disposal.reference,
            "final_action": final_action,
            "producer": producer,
            "due_before": day.isoformat(),
            "units": unit_ids,
            "sampled": [ln.unit_id for ln in lines if ln.state == "sampled"],
            # What the replay of a rebuild needs to make the same lines with make_lines (the
            # catalogue, referential and computed dates being the same at this leaf), and the
            # digest it checks them against.
            "created_at": disposal.created_at.isoformat(),
            "population": cfg.population,
            "lines_sha256": lines_digest(lines),
        },
    )
    return disposal


def make_lines(
    session: Session, disposal: DisposalList, unit_ids: Sequence[str], *, population: int
) -> list[DisposalLine]:
    """The lines of ``disposal`` for ``unit_ids`` in bordereau order, as the catalogue, the
    referential and the computed dates say now, sampled (Destroy) with the commune's
    ``population`` (flush, no commit): built once by :func:`build_list`, and again, the same,
    by the replay of its event."""
    units = {
        u.id: u
        for i in range(0, len(unit_ids), dates.BATCH)
        for u in session.scalars(
            select(ArchiveUnit).where(ArchiveUnit.id.in_(unit_ids[i : i + dates.BATCH]))
        )
    }
    computed = {
        row.unit_id: row
        for i in range(0, len(unit_ids), dates.BATCH)
        for row in session.scalars(
            select(UnitComputedRule).where(
                UnitComputedRule.unit_id.in_(unit_ids[i : i + dates.BATCH]),
                UnitComputedRule.category == "AppraisalRule",
            )
        )
    }
    referential = {r.id: r for r in session.scalars(select(Rule))}
    lines: list[DisposalLine] = []
    for position, uid in enumerate(unit_ids):
        unit = units[uid]
        row = computed[uid]
        objects = [
            o
            for o in (
                session.scalars(
                    select(DataObject).where(
                        DataObject.group_id == unit.data_object_group_id,
                        DataObject.status == "active",
                    )
                )
                if unit.data_object_group_id
                else []
            )
        ]
        rule_ids = [r["rule_id"] for r in row.rules]
        rules = [referential.get(rid) for rid in rule_ids]
        line = DisposalLine(
            list_id=disposal.id,
            unit_id=uid,
            position=position,
            state="proposed",
            producer=unit.producer,
            title=unit.title,
            date_start=unit.start_date,
            date_end=unit.end_date,
            bytes=sum(o.size or 0 for o in objects),
            object_count=sum(1 for o in objects if o.kind == "binary"),
            rule_ids=rule_ids,
            dua="; ".join(f"{dua_text(r)} ({rid})" for rid, r in zip(rule_ids, rules, strict=True)),
            legal_reference="; ".join(
                sorted(
                    {
                        str((r.meta or {}).get("legal_reference"))
                        for r in rules
                        if r is not None and (r.meta or {}).get("legal_reference")
                    }
                )
            ),
            appraisal_end=row.end_date,
        )
        lines.append(line)
        session.add(line)
    if disposal.final_action == "Destroy":
        _sample(session, lines, computed, referential, population)
    session.flush()
    return lines


def lines_digest(lines: Sequence[DisposalLine]) -> str:
    """SHA-256 of what a bordereau shows of its lines, in order (journaled when a list is
    made or approved, so that a replay proves it made the same lines)."""
    doc = [
        [
            line.unit_id,
            line.position,
            line.state,
            line.producer,
            line.title,
            line.date_start,
            line.date_end,
            line.bytes,
            line.object_count,
            list(line.rule_ids),
            line.dua,
            line.legal_reference,
            line.appraisal_end.isoformat() if line.appraisal_end else None,
            line.sampling_note,
            line.exclusion_reason,
            line.fingerprint,
        ]
        for line in lines
    ]
    raw = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
    return hashlib.sha256(raw).hexdigest()


def _sample(
    session: Session,
    lines: list[DisposalLine],
    computed: dict[str, UnitComputedRule],
    referential: dict[str, Rule],
    population: int,
) -> None:
    by_rule: dict[str, list[DisposalLine]] = {}
    for line in lines:
        for rid in line.rule_ids:
            rule = referential.get(rid)
            if rule is not None and (rule.meta or {}).get("final_action") == "Sample":
                by_rule.setdefault(rid, []).append(line)
                break
    for rid, members in by_rule.items():
        rule = referential[rid]
        sampling = (rule.meta or {}).get("sampling") or {}
        one_in_raw = sampling.get("one_in", 1)
        one_in = (
            one_in_by_population(population) if one_in_raw == "by_population" else int(one_in_raw)
        )

        def start_of(line: DisposalLine, rid: str = rid) -> date | None:
            for applied in computed[line.unit_id].rules:
                if applied["rule_id"] == rid and applied["start_date"]:
                    return date.fromisoformat(applied["start_date"])
            return None

        first_year: int | None = None
        if sampling.get("first_year_kept"):
            earliest = session.scalar(
                select(func.min(UnitRule.start_date)).where(UnitRule.rule_id == rid)
            )
            first_year = earliest.year if earliest is not None else None
        rest: list[DisposalLine] = []
        for line in members:
            start = start_of(line)
            if first_year is not None and start is not None and start.year == first_year:
                line.state = "sampled"
                line.sampling_note = (
                    f"Conservé par échantillonnage ({rid}): première année de la mesure "
                    f"({first_year})"
                )
            else:
                rest.append(line)
        rest.sort(key=lambda ln: (start_of(ln) or date.min, ln.title, ln.unit_id))
        for rank, line in enumerate(rest):
            if rank % one_in == 0:
                line.state = "sampled"
                line.sampling_note = (
                    f"Conservé par échantillonnage ({rid}): 1 sur {one_in}, rang {rank + 1} "
                    f"sur {len(rest)} (ordre: date de début, intitulé, identifiant)"
                )
            else:
                line.sampling_note = (
                    f"Éliminable après échantillonnage ({rid}): 1 sur {one_in}, rang {rank + 1} "
                    f"sur {len(rest)}"
                )


def _require(disposal: DisposalList, *states: str, action: str) -> None:
    if disposal.state not in states:
        raise WrongState(
            f"list {disposal.reference} is {disposal.state}; {action} needs it "
            f"{' or '.join(states)}",
            state=disposal.state,
        )


def submit(session: Session, disposal: DisposalList, *, actor: str, comment: str = "") -> None:
    """Draft → submitted (sent to the producing service for review)."""
    _require(disposal, "draft", action="submitting")
    disposal.state = "submitted"
    disposal.submitted_at = db.utcnow()
    disposal.submitted_by = actor
    session.flush()
    append_event(
        session,
        type="disposal.submitted",
        actor=actor,
        payload={
            "list_id": disposal.id,
            "reference": disposal.reference,
            "comment": comment,
            "submitted_at": disposal.submitted_at.isoformat(),
        },
    )


def person(session: Session, actor: str) -> str:
    """The person behind a journal actor, for the four-eyes rule: ``user:<login>`` for an
    account's actor (``user:<login>:<token id>:<role>``) or a token that belongs to an account,
    else ``token:<id>`` — a CLI archivist is ``token:cli-<shell user>`` —, else the actor itself
    (``system:…``). Every token and session of one account is one person."""
    parts = actor.split(":")
    if parts[0] == "user" and len(parts) > 1:
        return f"user:{parts[1]}"
    if parts[0] == "token" and len(parts) > 1:
        token = session.get(ApiToken, parts[1])
        user = session.get(User, token.user_id) if token is not None else None
        return f"user:{user.login}" if user is not None else f"token:{parts[1]}"
    return actor


def same_hands(session: Session, disposal: DisposalList, actor: str) -> bool:
    """Whether ``actor`` built or submitted the list (a list built by the scheduler has no
    builder: then its submitter is the one who put it forward)."""
    me = person(session, actor)
    return any(
        other is not None and person(session, other) == me
        for other in (disposal.created_by, disposal.submitted_by)
    )


def approve(
    session: Session,
    disposal: DisposalList,
    *,
    actor: str,
    comment: str,
    four_eyes: bool = True,
) -> None:
    """The archivist approves: the rules and holds of every line are fingerprinted now and
    re-checked at execution.

    With ``four_eyes`` (``SAE_DISPOSAL_FOUR_EYES``, on by default), a destruction list is not
    approved by the archivist who built or submitted it: ``FourEyes``. Whether the rule held is
    journaled (``four_eyes`` in the event), and a certificate says when it did not."""
    _require(disposal, "draft", "submitted", action="approval")
    own = same_hands(session, disposal, actor)
    if four_eyes and own and disposal.final_action == "Destroy":
        raise FourEyes(
            f"list {disposal.reference} was built or submitted by {actor}: another archivist "
            "must approve it (SAE_DISPOSAL_FOUR_EYES)"
        )
    day = dates.today()
    lines = fingerprint_lines(session, disposal, day)
    disposal.state = "approved"
    disposal.decided_at = db.utcnow()
    disposal.decided_by = actor
    disposal.decision_comment = comment
    session.flush()
    append_event(
        session,
        type="disposal.approved",
        actor=actor,
        payload={
            "list_id": disposal.id,
            "reference": disposal.reference,
            "comment": comment,
            # The fingerprints are recomputed by the replay (fingerprint_lines on the day they
            # were taken) and checked against the digest, rather than 64 hex per line here.
            "decided_at": disposal.decided_at.isoformat(),
            "fingerprint_day": day.isoformat(),
            "lines_sha256": lines_digest(lines),
            # False when one person built (or submitted) and approved the list.
            "four_eyes": not own,
        },
    )


def fingerprint_lines(session: Session, disposal: DisposalList, day: date) -> list[DisposalLine]:
    """Fingerprint every line of ``disposal`` as its unit stands on ``day`` (approval, and its
    replay); returns the lines."""
    lines = lines_of(session, disposal.id)
    for line in lines:
        line.fingerprint = dates.fingerprint(session, line.unit_id, day)
    session.flush()
    return lines


def reject(session: Session, disposal: DisposalList, *, actor: str, comment: str) -> None:
    """The archivist (or the departmental archives, before the visa) rejects the list."""
    _require(disposal, "draft", "submitted", "approved", action="rejection")
    if not comment.strip():
        raise InvalidVisa("a rejection needs a reason")
    disposal.state = "rejected"
    disposal.decided_at = db.utcnow()
    disposal.decided_by = actor
    disposal.decision_comment = comment
    session.flush()
    append_event(
        session,
        type="disposal.rejected",
        actor=actor,
        payload={
            "list_id": disposal.id,
            "reference": disposal.reference,
            "comment": comment,
            "decided_at": disposal.decided_at.isoformat(),
        },
    )


def validate_visa(
    session: Session,
    disposal: DisposalList,
    *,
    reference: str,
    decision_date: date,
    excluded: Sequence[str],
) -> None:
    """Refuse a visa the list cannot take (wrong state, no reference, future date, unknown
    excluded unit) — before anything is archived."""
    _require(disposal, "approved", action="recording the visa")
    if disposal.final_action != "Destroy":
        raise WrongState("permanent-keeping lists need no visa")
    if not reference.strip():
        raise InvalidVisa("the visa needs the decision's reference")
    if decision_date > dates.today():
        raise InvalidVisa(f"the decision date {decision_date.isoformat()} is in the future")
    on_list = {line.unit_id for line in lines_of(session, disposal.id)}
    unknown = [u for u in excluded if u not in on_list]
    if unknown:
        raise InvalidVisa(f"excluded units not on the list: {', '.join(unknown)}", unit_ids=unknown)


def record_visa(
    session: Session,
    disposal: DisposalList,
    *,
    actor: str,
    reference: str,
    decision_date: date,
    excluded: Sequence[str],
    visa_unit_id: str,
    visa_object_id: str,
    visa_sha512: str,
) -> None:
    """Record the departmental archives' visa (the signed document is already archived)."""
    validate_visa(
        session, disposal, reference=reference, decision_date=decision_date, excluded=excluded
    )
    exclude_at_visa(session, disposal, excluded, reference)
    disposal.state = "visa_recorded"
    disposal.visa_reference = reference
    disposal.visa_decision_date = decision_date
    disposal.visa_recorded_at = db.utcnow()
    disposal.visa_recorded_by = actor
    disposal.visa_unit_id = visa_unit_id
    disposal.visa_object_id = visa_object_id
    session.flush()
    append_event(
        session,
        type="disposal.visa_recorded",
        actor=actor,
        unit_id=visa_unit_id,
        object_id=visa_object_id,
        object_digests={visa_object_id: visa_sha512},
        payload={
            "list_id": disposal.id,
            "reference": disposal.reference,
            "visa_reference": reference,
            "decision_date": decision_date.isoformat(),
            "excluded": list(excluded),
            "visa_recorded_at": disposal.visa_recorded_at.isoformat(),
        },
    )


def exclude_at_visa(
    session: Session, disposal: DisposalList, excluded: Sequence[str], visa_reference: str
) -> None:
    """The lines the visa excludes (a visa, and its replay)."""
    lines = {line.unit_id: line for line in lines_of(session, disposal.id)}
    for uid in excluded:
        lines[uid].state = "excluded"
        lines[uid].exclusion_reason = f"Exclu par le visa {visa_reference}"


def list_lists(session: Session, *, state: str | None = None) -> list[DisposalList]:
    """Lists, newest first."""
    stmt = select(DisposalList).order_by(DisposalList.created_at.desc())
    if state:
        stmt = stmt.where(DisposalList.state == state)
    return list(session.scalars(stmt))


BORDEREAU_COLUMNS = [
    "Bordereau",
    "Service producteur",
    "Identifiant de l'unité",
    "Intitulé",
    "Date de début",
    "Date de fin",
    "Volume (octets)",
    "Nombre de fichiers",
    "DUA",
    "Règles",
    "Fin de DUA",
    "Référence réglementaire",
    "Sort proposé",
    "Observations du service",
    "Décision des Archives départementales",
]


def line_action(disposal: DisposalList, line: DisposalLine) -> str:
    """What the line proposes, in French."""
    if disposal.final_action == "Keep":
        return "Conservation définitive"
    if line.state == "sampled":
        return "Conservation (échantillon)"
    return "Élimination"


def bordereau_csv(session: Session, disposal: DisposalList) -> str:
    """The bordereau as CSV (UTF-8, one line per unit), for the producer and the AD."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(BORDEREAU_COLUMNS)
    for line in lines_of(session, disposal.id):
        writer.writerow(
            [
                disposal.reference,
                line.producer,
                line.unit_id,
                line.title,
                line.date_start or "",
                line.date_end or "",
                line.bytes,
                line.object_count,
                line.dua,
                " ".join(line.rule_ids),
                line.appraisal_end.isoformat() if line.appraisal_end else "",
                line.legal_reference,
                line_action(disposal, line),
                line.sampling_note or "",
                line.exclusion_reason
                or ("" if disposal.state in ("draft", "submitted", "approved") else "Accepté"),
            ]
        )
    return out.getvalue()


def bordereau_document(session: Session, d: DisposalList, fmt: str) -> tuple[bytes, str, str]:
    """The bordereau as ``(content, media type, file name)``: PDF (to sign) or CSV (to review).

    Raises :class:`InvalidBordereauFormat` for any other format.
    """
    from sae.retention import documents

    name = f"bordereau-{d.reference}"
    if fmt == "csv":
        return bordereau_csv(session, d).encode("utf-8"), "text/csv; charset=utf-8", f"{name}.csv"
    if fmt != "pdf":
        raise InvalidBordereauFormat("format must be pdf or csv")
    cfg = retention_settings()
    pdf = documents.bordereau_pdf(
        d,
        lines_of(session, d.id),
        documents.Parties(cfg.archives_service, cfg.archives_service_name, cfg.control_authority),
    )
    return pdf, "application/pdf", f"{name}.pdf"


def read_certificate(
    session: Session, offers: dict[str, StorageOffer], d: DisposalList, *, actor: str
) -> tuple[bytes, str]:
    """The destruction certificate (PDF) as archived, digest checked, and its file name.

    The certificate is itself an archived record: its read is journaled like any other
    (``access.object_read``); the caller commits.
    """
    from sae.storage.repository import copies_of_objects
    from sae.storage.service import open_verified

    if d.certificate_object_id is None:
        raise NotFound(f"list {d.reference} has no destruction certificate (state {d.state})")
    obj = session.get(DataObject, d.certificate_object_id)
    if obj is None or obj.sha512 is None:
        raise NotFound(f"the certificate of list {d.reference} is missing")
    copies = [
        (offers[c.offer], c.key) for c in copies_of_objects(session, [obj.id]) if c.offer in offers
    ]
    data = b"".join(open_verified(copies, obj.sha512, expected_size=obj.size))
    append_event(
        session,
        type="access.object_read",
        actor=actor,
        object_id=obj.id,
        transfer_id=obj.transfer_id,
        payload={"size": obj.size, "via": "certificate", "list_id": d.id},
    )
    return data, f"certificat-destruction-{d.reference}.pdf"
