"""HTTP routes of the catalogue: search units, read a unit, read an object's description."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query

from sae.auth.deps import PrincipalDep
from sae.catalog import service, views
from sae.catalog.errors import ObjectNotFound, UnitNotFound
from sae.catalog.models import ArchiveUnit, DataObject
from sae.catalog.schemas import (
    ObjectOut,
    UnitOut,
    UnitPage,
)
from sae.deps import SessionDep

router = APIRouter(tags=["catalog"])


@router.get("/units", response_model=UnitPage)
def search_units(
    session: SessionDep,
    principal: PrincipalDep,
    q: Annotated[str | None, Query(max_length=500, description="Full text")] = None,
    producer: Annotated[str | None, Query(max_length=255)] = None,
    title: Annotated[str | None, Query(max_length=500)] = None,
    date_from: Annotated[str | None, Query(max_length=32)] = None,
    date_to: Annotated[str | None, Query(max_length=32)] = None,
    status: Annotated[str | None, Query(max_length=16)] = None,
    due_before: date | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> UnitPage:
    """Search archive units (newest first; ``next_cursor`` gives the following page)."""
    units, next_cursor = service.search_units(
        session,
        service.SearchQuery(
            q=q,
            producer=producer,
            title=title,
            date_from=date_from,
            date_to=date_to,
            status=status,
            due_before=due_before,
            limit=limit,
            cursor=cursor,
        ),
        principal,
    )
    return UnitPage(items=[views.unit_summary(u) for u in units], next_cursor=next_cursor)


@router.get("/units/{unit_id}", response_model=UnitOut)
def get_unit(unit_id: str, session: SessionDep, principal: PrincipalDep) -> UnitOut:
    """An archive unit: metadata, graph, declared and inherited rules, end dates, objects."""
    unit = session.get(ArchiveUnit, unit_id)
    if unit is None or not service.may_see_unit(principal, unit):
        raise UnitNotFound(f"no archive unit {unit_id}")
    return views.unit_view(session, unit)


@router.get("/objects/{object_id}", response_model=ObjectOut)
def get_object(object_id: str, session: SessionDep, principal: PrincipalDep) -> ObjectOut:
    """A data object: size, formats (declared and measured), SHA-512, copies per offer."""
    obj = session.get(DataObject, object_id)
    if obj is None:
        raise ObjectNotFound(f"no data object {object_id}")
    units = service.units_of_object(session, obj)
    if units and not any(service.may_see_unit(principal, u) for u in units):
        raise ObjectNotFound(f"no data object {object_id}")
    return views.object_view(session, obj, units)
