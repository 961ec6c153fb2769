"""HTTP routes of the catalogue: search units, read a unit, read an object's description."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query

from sae.auth.deps import PrincipalDep
from sae.catalog import service
from sae.catalog.errors import ObjectNotFound, UnitNotFound
from sae.catalog.models import ArchiveUnit, DataObject
from sae.catalog.schemas import (
    AppliedRuleOut,
    CopyOut,
    ObjectOut,
    ObjectSummary,
    UnitOut,
    UnitPage,
    UnitSummary,
)
from sae.deps import SessionDep

router = APIRouter(tags=["catalog"])


def unit_summary(unit: ArchiveUnit) -> UnitSummary:
    return UnitSummary(
        id=unit.id,
        sip_id=unit.sip_id,
        title=unit.title,
        producer=unit.producer,
        description_level=unit.description_level,
        start_date=unit.start_date,
        end_date=unit.end_date,
        status=unit.status,
        transfer_id=unit.transfer_id,
        created_at=unit.created_at,
        url=f"/api/v1/units/{unit.id}",
    )


def object_summary(obj: DataObject) -> ObjectSummary:
    return ObjectSummary(
        id=obj.id,
        sip_id=obj.sip_id,
        kind=obj.kind,
        filename=obj.filename,
        size=obj.size,
        mime_type=obj.mime_type,
        sha512=obj.sha512,
        status=obj.status,
        url=f"/api/v1/objects/{obj.id}",
    )


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
    return UnitPage(items=[unit_summary(u) for u in units], next_cursor=next_cursor)


@router.get("/units/{unit_id}", response_model=UnitOut)
def get_unit(unit_id: str, session: SessionDep, principal: PrincipalDep) -> UnitOut:
    """An archive unit: metadata, graph, declared and inherited rules, end dates, objects."""
    unit = session.get(ArchiveUnit, unit_id)
    if unit is None or not service.may_see_unit(principal, unit):
        raise UnitNotFound(f"no archive unit {unit_id}")
    rules = service.unit_rules(session, unit)
    declared = {k: v for k, v in unit.management.items() if k != "_defaults"}
    return UnitOut(
        **unit_summary(unit).model_dump(),
        description=unit.description,
        parents=service.parents_of(session, unit.id),
        children=service.children_of(session, unit.id),
        declared_rules=declared,
        rules={
            category: [
                AppliedRuleOut(
                    rule_id=r.rule_id,
                    start_date=r.start_date,
                    end_date=r.end_date,
                    inherited=r.origin != unit.id,
                    origin_unit=r.origin or None,
                )
                for r in applied
            ]
            for category, applied in rules.applied.items()
        },
        end_dates={k: v for k, v in rules.ends.items() if k in rules.applied},
        appraisal_end=rules.appraisal_end,
        access_end=rules.access_end,
        final_action=rules.final_action,
        held=rules.held,
        communicable=rules.communicable(),
        objects=[object_summary(o) for o in service.objects_of_unit(session, unit)],
        content_xml=unit.content_xml.decode("utf-8", errors="replace"),
    )


@router.get("/objects/{object_id}", response_model=ObjectOut)
def get_object(object_id: str, session: SessionDep, principal: PrincipalDep) -> ObjectOut:
    """A data object: size, formats (declared and measured), SHA-512, copies per offer."""
    obj = session.get(DataObject, object_id)
    if obj is None:
        raise ObjectNotFound(f"no data object {object_id}")
    units = service.units_of_object(session, obj)
    if units and not any(service.may_see_unit(principal, u) for u in units):
        raise ObjectNotFound(f"no data object {object_id}")
    return ObjectOut(
        **object_summary(obj).model_dump(),
        transfer_id=obj.transfer_id,
        group_id=obj.group_id,
        uri=obj.uri,
        data_object_version=obj.data_object_version,
        declared_digest=obj.declared_digest,
        declared_algorithm=obj.declared_algorithm,
        declared_mime_type=obj.declared_mime_type,
        format_id=obj.declared_format_id,
        format_litteral=obj.format_litteral,
        created_at=obj.created_at,
        units=[u.id for u in units],
        copies=[
            CopyOut(
                offer=c.offer,
                key=c.key,
                version_id=c.version_id,
                size=c.size,
                sha512=c.sha512,
                stored_at=c.stored_at,
                last_checked_at=c.last_checked_at,
                last_check_ok=c.last_check_ok,
            )
            for c in service.copies_of(session, obj.id)
        ],
        content_url=f"/api/v1/objects/{obj.id}/content",
        proof_url=f"/api/v1/objects/{obj.id}/proof",
    )
