"""The catalogue's representations of units and objects, as the API serves them.

Built here, in the domain, so that every reader shares them: the API routes return them, and
the restore drill (``sae.recovery.drill``) compares a rebuilt catalogue with the live one by
them (issue 17: "each unit's and object's API representation").
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from sae.auth.service import SYSTEM, Principal
from sae.catalog import service
from sae.catalog.models import ArchiveUnit, DataObject
from sae.catalog.schemas import (
    AppliedRuleOut,
    CopyOut,
    ObjectOut,
    ObjectSummary,
    ScanChainOut,
    UnitOut,
    UnitSummary,
)


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


def finding_aid_summary(unit: ArchiveUnit, fields: Sequence[str]) -> UnitSummary:
    """What a reader sees of a unit not yet communicable, in a list: only the fields
    ``SAE_FINDING_AID_FIELDS`` names (``sae.config.FINDING_AID_FIELDS``), never its title."""
    dates = "dates" in fields
    return UnitSummary(
        id=unit.id,
        sip_id=unit.sip_id if "identifier" in fields else None,
        title=None,
        producer=unit.producer if "producer" in fields else None,
        description_level=unit.description_level if "level" in fields else None,
        start_date=unit.start_date if dates else None,
        end_date=unit.end_date if dates else None,
        status=unit.status,
        transfer_id=None,
        created_at=unit.created_at,
        url=f"/api/v1/units/{unit.id}",
        finding_aid_only=True,
    )


def summaries(
    session: Session,
    principal: Principal,
    units: Sequence[ArchiveUnit],
    finding_aid: Sequence[str] = (),
) -> list[UnitSummary]:
    """A list of units as ``principal`` sees them (those it may not see are left out)."""
    seen = service.visibilities(session, principal, units, finding_aid)
    return [
        unit_summary(u) if seen[u.id] == service.FULL else finding_aid_summary(u, finding_aid)
        for u in units
        if seen[u.id] != service.NOTHING
    ]


def finding_aid_view(
    session: Session, principal: Principal, unit: ArchiveUnit, fields: Sequence[str]
) -> UnitOut:
    """A unit not yet communicable as a reader reads it when the finding aid shows it: the
    ``fields`` of :func:`finding_aid_summary`, the parents and children the reader may know
    of, and the date it becomes communicable; no rules, objects, description or Content."""
    return UnitOut(
        **finding_aid_summary(unit, fields).model_dump(),
        description=None,
        parents=service.visible_ids(
            session, principal, service.parents_of(session, unit.id), fields
        ),
        children=service.visible_ids(
            session, principal, service.children_of(session, unit.id), fields
        ),
        declared_rules={},
        rules={},
        end_dates={},
        appraisal_end=None,
        access_end=service.unit_rules(session, unit).access_end,
        final_action=None,
        held=None,
        communicable=False,
        objects=[],
        content_xml=None,
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
        scan_chain=ScanChainOut.model_validate(obj.scan_chain) if obj.scan_chain else None,
    )


def unit_view(
    session: Session,
    unit: ArchiveUnit,
    principal: Principal = SYSTEM,
    finding_aid: Sequence[str] = (),
) -> UnitOut:
    """A unit as ``GET /api/v1/units/{id}`` shows it to ``principal`` (who may see all of it):
    the parents and children it may not know of are left out."""
    rules = service.unit_rules(session, unit)
    declared = {k: v for k, v in unit.management.items() if k != "_defaults"}
    return UnitOut(
        **unit_summary(unit).model_dump(),
        description=unit.description,
        parents=service.visible_ids(
            session, principal, service.parents_of(session, unit.id), finding_aid
        ),
        children=service.visible_ids(
            session, principal, service.children_of(session, unit.id), finding_aid
        ),
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


def object_view(session: Session, obj: DataObject, units: list[ArchiveUnit]) -> ObjectOut:
    """An object as ``GET /api/v1/objects/{id}`` shows it (``units``: those it belongs to)."""
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
        format_puid=obj.format_puid,
        format_name=obj.format_name,
        format_version=obj.format_version,
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
