"""HTTP routes of the referential: list and replace the management rules."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from sae.auth.deps import PrincipalDep, require_role
from sae.auth.service import Principal
from sae.deps import SessionDep
from sae.errors import BadRequest
from sae.retention import referential
from sae.retention.schemas import ImportSummary, RuleOut

router = APIRouter(tags=["rules"])

MAX_REFERENTIAL_BYTES = 5 * 1024 * 1024


@router.get("/rules", response_model=list[RuleOut])
def list_rules(session: SessionDep, principal: PrincipalDep, request: Request) -> Response:
    """The referential as JSON, or as Vitam CSV with ``Accept: text/csv``."""
    rules = referential.list_rules(session)
    if "text/csv" in request.headers.get("accept", ""):
        return Response(referential.export_csv(rules), media_type="text/csv; charset=utf-8")
    body = [
        RuleOut(
            id=r.id,
            type=r.type,
            value=r.value,
            description=r.description,
            duration=r.duration,
            measurement=r.measurement,
            updated_at=r.updated_at,
        ).model_dump(mode="json")
        for r in rules
    ]
    import json

    return Response(json.dumps(body), media_type="application/json")


@router.put("/rules", response_model=ImportSummary)
async def put_rules(
    request: Request,
    session: SessionDep,
    principal: Annotated[Principal, Depends(require_role("archivist"))],
) -> ImportSummary:
    """Replace the referential (Vitam CSV ``text/csv`` or YAML ``application/yaml``).

    The import replaces the referential as a whole; it is refused if a rule still used by an
    archive unit would disappear, and every problem of the file is listed.
    """
    body = await request.body()
    if len(body) > MAX_REFERENTIAL_BYTES:
        raise BadRequest(f"the referential is over {MAX_REFERENTIAL_BYTES} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the referential must be UTF-8") from None
    specs = referential.parse(text, request.headers.get("content-type", ""))
    summary = referential.import_rules(session, specs, actor=principal)
    session.commit()
    return ImportSummary(**summary)
