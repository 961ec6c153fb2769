"""HTTP routes of the catalogue: search units, read a unit, read an object's description."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query

from sae.access import register
from sae.auth.deps import PrincipalDep
from sae.catalog import service, views
from sae.catalog.errors import ObjectNotFound
from sae.catalog.models import DataObject
from sae.catalog.schemas import (
    FacetValueOut,
    ObjectOut,
    UnitOut,
    UnitPage,
)
from sae.deps import RuntimeDep, SessionDep

router = APIRouter(tags=["catalog"])


@router.get("/units", response_model=UnitPage)
def search_units(
    session: SessionDep,
    principal: PrincipalDep,
    runtime: RuntimeDep,
    q: Annotated[str | None, Query(max_length=500, description="Full text")] = None,
    producer: Annotated[str | None, Query(max_length=255)] = None,
    title: Annotated[str | None, Query(max_length=500)] = None,
    date_from: Annotated[str | None, Query(max_length=32)] = None,
    date_to: Annotated[str | None, Query(max_length=32)] = None,
    status: Annotated[str | None, Query(max_length=16)] = None,
    due_before: date | None = None,
    record_type: Annotated[
        str | None, Query(max_length=255, description="AppraisalRule id declared on the unit")
    ] = None,
    facets: Annotated[
        str | None,
        Query(max_length=100, description="Comma-separated: producer, year, record_type, status"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> UnitPage:
    """Search archive units: with ``q``, the most relevant first (full text: words in any
    order, prefixes, "phrases" in quotes, no case or accent); else the newest first.
    ``next_cursor`` gives the following page; ``facets`` adds the total and the counts.
    A reader finds only what is communicable today (and, with ``SAE_FINDING_AID_FIELDS``,
    the finding aid of the rest, see docs/access.md); a depositor its producers' units."""
    finding_aid = runtime.settings.finding_aid_fields
    query = service.SearchQuery(
        q=q,
        producer=producer,
        title=title,
        date_from=date_from,
        date_to=date_to,
        status=status,
        due_before=due_before,
        record_type=record_type,
        limit=limit,
        cursor=cursor,
    )
    names = None
    if facets is not None:
        names = tuple(name.strip() for name in facets.split(",") if name.strip()) or service.FACETS
    found = service.search(session, query, principal, finding_aid, names)
    page = UnitPage(
        items=views.summaries(session, principal, found.units, finding_aid),
        next_cursor=found.next_cursor,
    )
    if found.facets is not None:
        counted = found.facets
        page.total = counted.total
        page.total_exact = counted.exact
        page.facets = {
            name: [FacetValueOut(value=v.value, count=v.count, label=v.label) for v in values]
            for name, values in counted.counts.items()
        }
    return page


@router.get("/units/{unit_id}", response_model=UnitOut)
def get_unit(
    unit_id: str, session: SessionDep, principal: PrincipalDep, runtime: RuntimeDep
) -> UnitOut:
    """An archive unit: metadata, graph, declared and inherited rules, end dates, objects.
    A unit the caller may not see answers exactly as one that does not exist (404)."""
    finding_aid = runtime.settings.finding_aid_fields
    unit, seen = service.visible_unit(session, principal, unit_id, finding_aid)
    if seen == service.FINDING_AID:
        return views.finding_aid_view(session, principal, unit, finding_aid)
    view = views.unit_view(session, unit, principal, finding_aid)
    # A reader's or a depositor's read is a communication: journaled and in the register.
    register.unit_read(session, principal, unit, via="api")
    session.commit()
    return view


@router.get("/objects/{object_id}", response_model=ObjectOut)
def get_object(object_id: str, session: SessionDep, principal: PrincipalDep) -> ObjectOut:
    """A data object: size, formats (declared and measured), SHA-512, copies per offer."""
    obj = session.get(DataObject, object_id)
    if obj is None:
        raise ObjectNotFound(f"no data object {object_id}")
    units = service.units_of_object(session, obj)
    if units and not any(service.may_see_unit(session, principal, u) for u in units):
        raise ObjectNotFound(f"no data object {object_id}")
    known = set(service.visible_ids(session, principal, [u.id for u in units]))
    return views.object_view(session, obj, [u for u in units if u.id in known])
