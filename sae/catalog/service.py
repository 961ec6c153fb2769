"""Reading the catalogue: units with their computed rules, objects with their copies, search."""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Double,
    String,
    cast,
    exists,
    func,
    literal,
    null,
    or_,
    select,
    union_all,
)
from sqlalchemy.orm import Session

from sae import db
from sae.auth.service import Principal
from sae.catalog import fulltext
from sae.catalog.errors import InvalidQuery, ObjectNotFound, UnitNotFound
from sae.catalog.models import ArchiveUnit, DataObject, UnitLink, UnitRule
from sae.catalog.text import fold, parse_query
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


#: Roles that see every unit, communicable or not.
ALL_SEEING = ("admin", "archivist", "auditor")
#: How much of a unit a caller sees (:func:`visibility`): all of it; only the finding aid's
#: fields (``SAE_FINDING_AID_FIELDS``) of a unit not yet communicable; nothing (it answers 404
#: exactly as a unit that does not exist).
FULL, FINDING_AID, NOTHING = "full", "finding_aid", "nothing"
_CHUNK = 500


def closed_on(unit_id: Any, today: date, user_id: str | None = None) -> ColumnElement[bool]:
    """True for a unit not communicable on ``today`` (Code du patrimoine L213-2): an access
    rule applies to it whose end date is unknown or later than ``today`` — unless a dérogation
    (L213-3) opens it to the account ``user_id`` through ``today`` or later.

    Read from the materialised end dates (``unit_computed_rules``, maintained at ingest and on
    every rule change), so that search can filter inside its query: counts, facets and cursors
    never see what is filtered out. :meth:`UnitRules.communicable` is the same rule, computed.
    """
    from sae.access.models import DerogationUnit  # the access domain owns dérogations

    closed = exists(
        select(UnitComputedRule.unit_id).where(
            UnitComputedRule.unit_id == unit_id,
            UnitComputedRule.category == "AccessRule",
            or_(UnitComputedRule.end_date.is_(None), UnitComputedRule.end_date > today),
        )
    )
    if user_id is None:
        return closed
    granted = exists(
        select(DerogationUnit.unit_id).where(
            DerogationUnit.user_id == user_id,
            DerogationUnit.unit_id == unit_id,
            DerogationUnit.until >= today,
        )
    )
    return closed & ~granted


def user_of(principal: Principal) -> str | None:
    """The account behind ``principal`` (dérogations are granted to accounts), if any."""
    user_id = getattr(principal, "user_id", None)
    return str(user_id) if user_id else None


def today() -> date:
    return db.utcnow().date()


def closed_units(
    session: Session,
    unit_ids: Iterable[str],
    day: date | None = None,
    user_id: str | None = None,
) -> set[str]:
    """Which of ``unit_ids`` are not communicable on ``day`` (default: today) — to the account
    ``user_id`` when given (its dérogations count)."""
    day = day or today()
    ids = list(dict.fromkeys(unit_ids))
    closed: set[str] = set()
    for i in range(0, len(ids), _CHUNK):
        chunk = ids[i : i + _CHUNK]
        closed.update(
            session.scalars(
                select(ArchiveUnit.id).where(
                    ArchiveUnit.id.in_(chunk), closed_on(ArchiveUnit.id, day, user_id)
                )
            )
        )
    return closed


def visibilities(
    session: Session,
    principal: Principal,
    units: Sequence[ArchiveUnit],
    finding_aid: Sequence[str] = (),
) -> dict[str, str]:
    """How much ``principal`` sees of each unit (:data:`FULL`, :data:`FINDING_AID`,
    :data:`NOTHING`): archivists, auditors and admins everything; a depositor the units of its
    producing services, communicable or not, and nothing of the others; a reader what is
    communicable today, and of the rest the ``finding_aid`` fields if any are set, else
    nothing."""
    if principal.role in ALL_SEEING:
        return {unit.id: FULL for unit in units}
    if principal.role == "depositor":
        return {
            unit.id: FULL if principal.may_act_for(unit.producer) else NOTHING for unit in units
        }
    closed = closed_units(session, [unit.id for unit in units], user_id=user_of(principal))
    hidden = FINDING_AID if finding_aid else NOTHING
    return {unit.id: hidden if unit.id in closed else FULL for unit in units}


def visibility(
    session: Session, principal: Principal, unit: ArchiveUnit, finding_aid: Sequence[str] = ()
) -> str:
    """How much ``principal`` sees of ``unit`` (see :func:`visibilities`)."""
    return visibilities(session, principal, [unit], finding_aid)[unit.id]


def visible_unit(
    session: Session, principal: Principal, unit_id: str, finding_aid: Sequence[str] = ()
) -> tuple[ArchiveUnit, str]:
    """The unit and how much ``principal`` sees of it; ``UnitNotFound`` — the very answer
    for a unit that does not exist — when nothing."""
    unit = session.get(ArchiveUnit, unit_id)
    if unit is not None:
        seen = visibility(session, principal, unit, finding_aid)
        if seen != NOTHING:
            return unit, seen
    raise UnitNotFound(f"no archive unit {unit_id}")


def visible_ids(
    session: Session, principal: Principal, unit_ids: Sequence[str], finding_aid: Sequence[str] = ()
) -> list[str]:
    """``unit_ids`` less those ``principal`` may not know exist (order kept): for parent and
    child lists."""
    if principal.role in ALL_SEEING or not unit_ids:
        return list(unit_ids)
    rows = list(session.scalars(select(ArchiveUnit).where(ArchiveUnit.id.in_(unit_ids))))
    seen = visibilities(session, principal, rows, finding_aid)
    return [uid for uid in unit_ids if seen.get(uid, NOTHING) != NOTHING]


def may_see_unit(session: Session, principal: Principal, unit: ArchiveUnit) -> bool:
    """Whether ``principal`` may see all of ``unit`` (metadata and, by role, its objects)."""
    return visibility(session, principal, unit) == FULL


@dataclass(frozen=True)
class SearchQuery:
    q: str | None = None
    producer: str | None = None
    title: str | None = None
    date_from: str | None = None
    date_to: str | None = None
    status: str | None = None
    due_before: date | None = None
    #: The id of the AppraisalRule declared on the unit (a record type of the schedule).
    record_type: str | None = None
    limit: int = 50
    cursor: str | None = None


#: The facets ``search_facets`` counts: name → what a unit is counted under.
FACETS = ("producer", "year", "record_type", "status")
#: At most this many values per facet, the most frequent first.
FACET_VALUES = 20


@dataclass(frozen=True)
class FacetValue:
    value: str
    count: int
    label: str | None = None


@dataclass(frozen=True)
class Facets:
    #: How many units the search selects; when not ``exact``, at least that many
    #: (:data:`RANKED_AT_MOST`).
    total: int
    counts: dict[str, list[FacetValue]]
    #: False when a full-text search matched more units than it ranks: ``total`` and the
    #: counts are then those of the units ranked, lower bounds.
    exact: bool = True


def _decode_cursor(cursor: str, *, ranked: bool) -> list[object]:
    """The position a cursor holds: ``[created_at, id]``, or ``["score", score, id]`` for a
    full-text search (sorted by relevance)."""
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor.encode()).decode())
        if not isinstance(value, list):
            raise TypeError("not a list")
        if ranked and len(value) == 3 and value[0] == "score":
            return [float(value[1]), str(value[2])]
        if not ranked and len(value) == 2:
            return [str(value[0]), str(value[1])]
    except (ValueError, TypeError) as exc:
        raise InvalidQuery("the cursor is not one this server gave") from exc
    raise InvalidQuery("the cursor is not one this server gave for this search")


def _encode_cursor(position: list[object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode()


def _full_text(query: SearchQuery) -> bool:
    return query.q is not None and bool(query.q.strip())


def _shows_closed(query: SearchQuery, finding_aid: Sequence[str]) -> bool:
    """Whether a reader's search may list units not yet communicable (as their finding-aid
    fields only): when some fields are shown and the search filters on nothing else — a
    match on a hidden title, description or record type would tell what they hold."""
    if not finding_aid or query.q or query.title or query.record_type or query.due_before:
        return False
    if query.producer and "producer" not in finding_aid:
        return False
    return not ((query.date_from or query.date_to) and "dates" not in finding_aid)


def _filtered(
    session: Session,
    query: SearchQuery,
    principal: Principal,
    finding_aid: Sequence[str] = (),
    part: fulltext.Part = "all",
) -> tuple[fulltext.Selection, ColumnElement[bool] | None] | None:
    """What a search selects, before ordering and paging (``sae.catalog.fulltext.Selection``:
    with a relevance score when ``q`` is given, ``part`` saying which of its matches); None
    when ``q`` holds nothing searchable (no letter, no digit). With it, the condition true of
    the units selected that ``principal`` sees as a finding aid only, None when the selection
    has none.

    What a caller may not see is filtered here, inside the query: pages, totals, facets and
    cursors are those of what the caller may see (:func:`visibilities`)."""
    selection = fulltext.catalogue()
    if _full_text(query):
        terms = parse_query(query.q or "")
        if not terms:
            return None
        selection = fulltext.matching(session.get_bind().dialect.name, terms, part)
    conditions: list[ColumnElement[bool]] = []
    if principal.role == "depositor":
        conditions.append(selection.producer.in_(principal.producers or ("",)))
    closed: ColumnElement[bool] | None = None
    if principal.role not in ALL_SEEING and principal.role != "depositor":
        closed = closed_on(selection.id, today(), user_of(principal))
        if not _shows_closed(query, finding_aid):
            conditions.append(~closed)
            closed = None
    if query.producer:
        conditions.append(selection.producer == query.producer)
    if query.status:
        conditions.append(selection.status == query.status)
    if query.record_type:
        conditions.append(
            exists(
                select(UnitRule.unit_id).where(
                    UnitRule.unit_id == selection.id,
                    UnitRule.category == "AppraisalRule",
                    UnitRule.rule_id == query.record_type,
                )
            )
        )
    if query.due_before is not None:
        # The materialised end dates (maintained at ingest and on every rule change): an index
        # range scan, and paging stays exact.
        conditions.append(
            exists(
                select(UnitComputedRule.unit_id).where(
                    UnitComputedRule.unit_id == selection.id,
                    UnitComputedRule.category == "AppraisalRule",
                    UnitComputedRule.unbounded.is_(False),
                    UnitComputedRule.end_date <= query.due_before,
                )
            )
        )
    if query.title or query.date_from or query.date_to:
        selection = fulltext.widened(selection)
    if query.title:
        # Folded on both sides (no case, no accents), a substring of the title.
        like = f"%{_escape_like(fold(query.title))}%"
        conditions.append(ArchiveUnit.title_folded.like(like, escape="\\"))
    if query.date_from:
        conditions.append(
            or_(ArchiveUnit.end_date >= query.date_from, ArchiveUnit.start_date >= query.date_from)
        )
    if query.date_to:
        conditions.append(
            or_(ArchiveUnit.start_date <= query.date_to, ArchiveUnit.end_date <= query.date_to)
        )
    return replace(selection, stmt=selection.stmt.where(*conditions)), closed


#: A full-text search ranks and counts at most this many matches (and one more, to know there
#: are more), as search engines do: a common word's hundreds of thousands of matches are not
#: all scored and counted. Those whose title holds every term come first (ranked above the
#: others anyway); beyond, the total is "at least" (``Facets.exact`` false).
RANKED_AT_MOST = 2_000


def _candidates(
    session: Session,
    query: SearchQuery,
    principal: Principal,
    finding_aid: Sequence[str] = (),
    *,
    scored: bool,
) -> tuple[fulltext.Selection, ColumnElement[bool] | None] | None:
    """What a search ranks and counts: without ``q``, every unit the filters select; with
    ``q``, the first :data:`RANKED_AT_MOST` + 1 matches the filters keep — the title matches,
    then the others — with their score when ``scored``. Paging (the cursor) applies to
    these, outside their limit, so that every page is cut from the same candidates. With the
    condition of the units seen as a finding aid only, as :func:`_filtered` (never with
    ``q``: a match on a hidden title would tell what it holds)."""
    if not _full_text(query):
        return _filtered(session, query, principal, finding_aid)
    limit = RANKED_AT_MOST + 1
    branches = []
    parts: tuple[fulltext.Part, ...] = ("title", "rest")
    for part in parts:
        filtered = _filtered(session, query, principal, finding_aid, part)
        if filtered is None:
            return None
        selection, _closed = filtered  # None: with q, _shows_closed is false
        columns: list[ColumnElement[Any]] = [
            selection.id.label("id"),
            selection.producer.label("producer"),
            selection.year.label("year"),
            selection.status.label("status"),
        ]
        if scored and selection.score is not None:
            columns.append(selection.score.label("score"))
        branch = selection.stmt.with_only_columns(*columns).limit(limit).subquery(part)
        branches.append(select(branch))
    found = union_all(*branches).limit(limit).subquery("candidates")
    candidates = fulltext.Selection(
        stmt=select(found.c.id).select_from(found),
        id=found.c.id,
        producer=found.c.producer,
        year=found.c.year,
        status=found.c.status,
        score=found.c.score if scored else None,
        wide=False,
    )
    return candidates, None


@dataclass(frozen=True)
class SearchResult:
    """A page of a search, its cursor, and its facets when they were asked for."""

    units: list[ArchiveUnit]
    next_cursor: str | None
    facets: Facets | None = None


def search(
    session: Session,
    query: SearchQuery,
    principal: Principal,
    finding_aid: Sequence[str] = (),
    facets: tuple[str, ...] | None = None,
) -> SearchResult:
    """Units matching the filters — the most relevant first when ``q`` is given
    (``sae.catalog.fulltext``), else the newest first — keyset-paginated; only those
    ``principal`` may see (:func:`visibilities`; ``finding_aid``: ``SAE_FINDING_AID_FIELDS``);
    with ``facets`` (names among :data:`FACETS`), the total and those facets' counts too.

    With ``q``, the page and the facets come from one statement over the full-text index
    (:func:`_ranked`)."""
    if facets is not None:
        unknown = [name for name in facets if name not in FACETS]
        if unknown:
            raise InvalidQuery(f"unknown facet {unknown[0]!r}: choose among {', '.join(FACETS)}")
    if not _full_text(query):
        units, next_cursor = _newest_first(session, query, principal, finding_aid)
        counted = (
            None
            if facets is None
            else _catalogue_facets(session, query, principal, facets, finding_aid)
        )
        return SearchResult(units, next_cursor, counted)
    return _ranked(session, query, principal, finding_aid, facets)


def search_units(
    session: Session, query: SearchQuery, principal: Principal, finding_aid: Sequence[str] = ()
) -> tuple[list[ArchiveUnit], str | None]:
    """The page and cursor of :func:`search`, without the facets."""
    found = search(session, query, principal, finding_aid)
    return found.units, found.next_cursor


def search_facets(
    session: Session,
    query: SearchQuery,
    principal: Principal,
    names: tuple[str, ...] = FACETS,
    finding_aid: Sequence[str] = (),
) -> Facets:
    """How many units the search selects, and how many under each value of each facet
    (:data:`FACETS`; at most :data:`FACET_VALUES` values each, the most frequent first).
    A unit seen as a finding aid only counts in the total, the status, and the facets of its
    shown fields (producer, year with ``dates``); never under a record type. A page and its
    facets are cheaper asked together (:func:`search`)."""
    counted = search(session, query, principal, finding_aid, names).facets
    assert counted is not None  # asked for
    return counted


def _newest_first(
    session: Session, query: SearchQuery, principal: Principal, finding_aid: Sequence[str]
) -> tuple[list[ArchiveUnit], str | None]:
    """A page of a search without ``q``: the newest units first."""
    filtered = _filtered(session, query, principal, finding_aid)
    if filtered is None:  # pragma: no cover - without q every query is searchable
        return [], None
    selection = filtered[0]
    limit = max(1, min(query.limit, 500))
    # Without q the selection is archive_units itself (fulltext.catalogue): its rows.
    stmt = selection.stmt.with_only_columns(ArchiveUnit)
    if query.cursor:
        created, last_id = _decode_cursor(query.cursor, ranked=False)
        created_at = datetime.fromisoformat(str(created))
        stmt = stmt.where(
            or_(
                ArchiveUnit.created_at < created_at,
                (ArchiveUnit.created_at == created_at) & (ArchiveUnit.id < last_id),
            )
        )
    stmt = stmt.order_by(ArchiveUnit.created_at.desc(), ArchiveUnit.id.desc())
    units = list(session.scalars(stmt.limit(limit + 1)).all())
    more = len(units) > limit
    units = units[:limit]
    last = units[-1] if units else None
    position: list[object] = [last.created_at.isoformat(), last.id] if last else []
    return units, _encode_cursor(position) if more and last else None


#: The kinds of rows :func:`_ranked` reads: a row of the page, a group of the total and three
#: facets, a record type's count.
_PAGE, _GROUP, _RECORD_TYPE = 0, 1, 2


def _ranked(
    session: Session,
    query: SearchQuery,
    principal: Principal,
    finding_aid: Sequence[str],
    facets: tuple[str, ...] | None,
) -> SearchResult:
    """A full-text search: a page of its candidates (:func:`_candidates`) by relevance then
    id, after the cursor, and with ``facets`` their total and counts — in one statement.

    Each statement over the index builds the bitmap of every match again (a limit bounds the
    rows read, not the bitmap): a faceted search used to run three (the page, the grouped
    counts, the record types), 214 ms of CPU at p95 on a million units against 75 for the page
    alone. The candidates are a common table expression the page and the counts read; the
    page is still ranked and cut by the database, so that a page asked with or without the
    facets is the same, and only its rows leave it."""
    filtered = _candidates(session, query, principal, finding_aid, scored=True)
    if filtered is None:
        empty = None if facets is None else Facets(0, {name: [] for name in facets})
        return SearchResult([], None, empty)
    selection = filtered[0]  # with q, nothing is shown as a finding aid (_candidates)
    score = selection.score
    assert score is not None  # scored
    limit = max(1, min(query.limit, 500))
    ranked_id: ColumnElement[Any] = selection.id
    if facets is not None:
        # Read by the page and by each count: materialised, so computed once (PostgreSQL
        # materialises a CTE read twice anyway, SQLite from 3.35; the hint says it).
        candidates = (
            selection.stmt.with_only_columns(
                selection.id.label("id"),
                score.label("score"),
                selection.producer.label("producer"),
                selection.year.label("year"),
                selection.status.label("status"),
            )
            .cte("ranked")
            .prefix_with("MATERIALIZED")
        )
        ranked_id, score = candidates.c.id, candidates.c.score
        page = select(candidates.c.id, candidates.c.score)
    else:
        page = selection.stmt.with_only_columns(selection.id, score)
    if query.cursor:
        last_score, last_id = _decode_cursor(query.cursor, ranked=True)
        page = page.where(or_(score < last_score, (score == last_score) & (ranked_id > last_id)))
    order = (score.desc(), ranked_id)
    # Ranked on (id, score) alone, then the page's rows read by id: sorting the whole rows of
    # every match (descriptions, Content XML) cost more than the search itself.
    page = page.order_by(*order).limit(limit + 1)
    hits: list[tuple[str, float]] = []
    tallies: dict[str, Counter[str]] = {name: Counter() for name in FACETS}
    total = 0
    if facets is None:
        hits = [(str(unit_id), float(value)) for unit_id, value in session.execute(page)]
    else:
        text_null = cast(null(), String)
        # The page's rows carry their place (a union keeps no order), the counts a kind.
        ranked_rows = page.add_columns(func.row_number().over(order_by=order).label("n"))
        cut = ranked_rows.subquery("page")
        branches = [
            select(
                literal(_PAGE).label("kind"),
                cut.c.id,
                cut.c.score,
                text_null.label("producer"),
                text_null.label("year"),
                text_null.label("status"),
                cut.c.n,
            ),
            select(
                literal(_GROUP),
                text_null,
                cast(null(), Double),
                candidates.c.producer,
                candidates.c.year,
                candidates.c.status,
                func.count(),
            ).group_by(candidates.c.producer, candidates.c.year, candidates.c.status),
        ]
        if "record_type" in facets:
            # Joined to the candidates after their limit: one look-up by unit for each of them,
            # never the rules of every match. A unit declaring two counts under both. An outer
            # join, so that the candidates stay the outer loop: joined, SQLite's planner read
            # every row of unit_rules in rule_id order (its GROUP BY) and probed the candidates
            # (364 ms at 200,000 units); the units without one form a group left out below.
            branches.append(
                select(
                    literal(_RECORD_TYPE),
                    text_null,
                    cast(null(), Double),
                    UnitRule.rule_id,
                    text_null,
                    text_null,
                    func.count(),
                )
                .select_from(candidates)
                .outerjoin(
                    UnitRule,
                    (UnitRule.unit_id == candidates.c.id) & (UnitRule.category == "AppraisalRule"),
                )
                .group_by(UnitRule.rule_id)
            )
        placed: list[tuple[int, str, float]] = []
        for kind, unit_id, value, producer, year, status, number in session.execute(
            union_all(*branches)
        ):
            if kind == _PAGE:
                placed.append((number, str(unit_id), float(value)))
            elif kind == _GROUP:
                total += number
                tallies["producer"][producer] += number
                if year:
                    tallies["year"][year] += number
                tallies["status"][status] += number
            elif producer is not None:  # a record type (none: the units declaring none)
                tallies["record_type"][producer] += number
        hits = [(unit_id, value) for _, unit_id, value in sorted(placed)]
    more = len(hits) > limit
    hits = hits[:limit]
    found = {
        unit.id: unit
        for unit in session.scalars(
            select(ArchiveUnit).where(ArchiveUnit.id.in_([unit_id for unit_id, _ in hits]))
        )
    }
    units = [found[unit_id] for unit_id, _ in hits if unit_id in found]
    next_cursor = _encode_cursor(["score", hits[-1][1], hits[-1][0]]) if more and hits else None
    counted = None
    if facets is not None:
        # More matches than a search ranks: the total is "at least", the counts those of the
        # units ranked (each a lower bound).
        counted = _facets(session, tallies, total, facets, exact=total <= RANKED_AT_MOST)
    return SearchResult(units, next_cursor, counted)


def _catalogue_facets(
    session: Session,
    query: SearchQuery,
    principal: Principal,
    names: tuple[str, ...],
    finding_aid: Sequence[str],
) -> Facets:
    """The facets of a search without ``q``: over every unit the filters select, exact."""
    filtered = _filtered(session, query, principal, finding_aid)
    if filtered is None:  # pragma: no cover - without q every query is searchable
        return Facets(0, {name: [] for name in names})
    selection, closed = filtered
    # One pass over the selected units for the total and three facets (a few hundred groups at
    # most: producers x years x statuses), summed here; one more for the record types, which
    # come from another table.
    tallies: dict[str, Counter[str]] = {name: Counter() for name in FACETS}
    total = 0
    keys: list[ColumnElement[Any]] = [selection.producer, selection.year, selection.status]
    if closed is not None:
        keys.append(closed.label("closed"))
    grouped = selection.stmt.with_only_columns(*keys, func.count()).group_by(*keys)
    for row in session.execute(grouped):
        producer, year, status, number = row[0], row[1], row[2], row[-1]
        hidden = closed is not None and bool(row[3])
        total += number
        if not hidden or "producer" in finding_aid:
            tallies["producer"][producer] += number
        if year and (not hidden or "dates" in finding_aid):
            tallies["year"][year] += number
        tallies["status"][status] += number
    if "record_type" in names and total:
        stmt = selection.stmt if closed is None else selection.stmt.where(~closed)
        selected = stmt.with_only_columns(selection.id).subquery("selected")
        for rule_id, number in session.execute(
            select(UnitRule.rule_id, func.count())
            .select_from(selected)
            .join(
                UnitRule,
                (UnitRule.unit_id == selected.c.id) & (UnitRule.category == "AppraisalRule"),
            )
            .group_by(UnitRule.rule_id)
        ):
            tallies["record_type"][rule_id] += number
    return _facets(session, tallies, total, names, exact=True)


def _facets(
    session: Session,
    tallies: dict[str, Counter[str]],
    total: int,
    names: tuple[str, ...],
    *,
    exact: bool,
) -> Facets:
    """The :data:`FACET_VALUES` most frequent values of each facet of ``names``; when not
    ``exact``, every count capped at :data:`RANKED_AT_MOST` (they are lower bounds)."""
    ceiling = total if exact else RANKED_AT_MOST
    counts: dict[str, list[FacetValue]] = {}
    for name in names:
        top = sorted(tallies[name].items(), key=lambda item: (-item[1], item[0]))[:FACET_VALUES]
        labels = _record_type_labels(session, [v for v, _ in top]) if name == "record_type" else {}
        counts[name] = [
            FacetValue(value, min(number, ceiling), labels.get(value)) for value, number in top
        ]
    return Facets(min(total, ceiling), counts, exact)


def _record_type_labels(session: Session, rule_ids: list[str]) -> dict[str, str]:
    """What the schedule calls each rule (its record type), else the rule's own value."""
    labels = {}
    for rule in session.scalars(select(Rule).where(Rule.id.in_(rule_ids))):
        meta = rule.meta or {}
        labels[rule.id] = str(meta.get("record_type") or rule.value)
    return labels


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
