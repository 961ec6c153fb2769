"""Console pages of the disposal circuit: lists, approval, the departmental visa, execution.

Each step calls the same retention functions as ``/api/v1/disposal-lists`` and is refused the
same way: a list that is not approved and visa'd, or whose units became held or changed, is not
executed, and the archivist reads why in French.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from sae.console.routes import CsrfField, UserDep, check_csrf, parse_date
from sae.console.security import allowed, require
from sae.console.web import ConsoleRoute, render
from sae.deps import RuntimeDep, SessionDep
from sae.downloads import attachment
from sae.errors import BadRequest, PayloadTooLarge
from sae.retention import disposal, execution
from sae.retention.config import retention_settings
from sae.retention.errors import InvalidVisa
from sae.retention.models import DisposalList
from sae.retention.visa import MAX_VISA_BYTES, record_visa_with_document
from sae.runtime import Runtime

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

# As the API: the archivist decides and executes; the auditor reads.
READ = ("archivist", "auditor")
DECIDE = ("archivist",)


class ReasonRequired(BadRequest):
    """A rejection without its reason (the law wants the refusal explained)."""

    code = "console.reason_required"


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


@router.get("/console/eliminations")
def lists_page(
    request: Request,
    user: UserDep,
    session: SessionDep,
    etat: Annotated[str | None, Query(max_length=16)] = None,
    preparees: Annotated[int | None, Query(ge=0)] = None,
) -> Response:
    """Disposal and permanent-keeping lists, newest first, and the form to build one
    (``preparees``: how many lists the form just built, one per service)."""
    require(user, *READ)
    return render(
        request,
        "disposals.html",
        {
            "nav": "eliminations",
            "lists": disposal.list_lists(session, state=etat or None),
            "state": etat or "",
            "prepared": preparees,
            "may_decide": allowed(user, *DECIDE),
            "today": date.today().isoformat(),
        },
    )


@router.post("/console/eliminations")
def create_list(
    request: Request,
    user: UserDep,
    session: SessionDep,
    csrf: CsrfField = "",
    sort_final: Annotated[str, Form()] = "Destroy",
    producteur: Annotated[str, Form()] = "",
    echeance: Annotated[str, Form()] = "",
    par_service: Annotated[str, Form()] = "",
) -> Response:
    """Build a draft list from the units due before the given date; with ``par_service``,
    every list that is due, one per producing service (as ``sae retention run``)."""
    check_csrf(request, csrf)
    require(user, *DECIDE)
    if sort_final not in ("Destroy", "Keep"):
        raise BadRequest(f"final action must be Destroy or Keep, not {sort_final!r}")
    if par_service:
        made = disposal.build_due_lists(
            session,
            actor=user.actor,
            final_actions=[sort_final],
            producer=producteur.strip() or None,
            due_before=parse_date(echeance, "echeance"),
        )
        session.commit()
        return _see_other(f"/console/eliminations?etat=draft&preparees={len(made)}")
    d = disposal.build_list(
        session,
        final_action=sort_final,
        producer=producteur.strip() or None,
        due_before=parse_date(echeance, "echeance"),
        actor=user.actor,
    )
    session.commit()
    return _see_other(f"/console/eliminations/{d.id}")


@router.get("/console/eliminations/{list_id}")
def list_page(request: Request, list_id: str, user: UserDep, session: SessionDep) -> Response:
    """A list: its units, state, decisions, and the next step the archivist may take."""
    require(user, *READ)
    d = disposal.get_list(session, list_id)
    lines = disposal.lines_of(session, d.id)
    return render(
        request,
        "disposal.html",
        {
            "nav": "eliminations",
            "d": d,
            "lines": lines,
            "may_decide": allowed(user, *DECIDE),
            "total_bytes": sum(ln.bytes for ln in lines),
            "control_authority": retention_settings().control_authority,
            "today": date.today().isoformat(),
        },
    )


def _decision(list_id: str, session: SessionDep) -> DisposalList:
    return disposal.get_list(session, list_id, for_update=True)


@router.post("/console/eliminations/{list_id}/soumettre")
def submit(
    request: Request,
    list_id: str,
    user: UserDep,
    session: SessionDep,
    csrf: CsrfField = "",
    commentaire: Annotated[str, Form()] = "",
) -> Response:
    """Draft → submitted to the producing service."""
    check_csrf(request, csrf)
    require(user, *DECIDE)
    disposal.submit(session, _decision(list_id, session), actor=user.actor, comment=commentaire)
    session.commit()
    return _see_other(f"/console/eliminations/{list_id}")


@router.post("/console/eliminations/{list_id}/approuver")
def approve(
    request: Request,
    list_id: str,
    user: UserDep,
    session: SessionDep,
    runtime: RuntimeDep,
    csrf: CsrfField = "",
    commentaire: Annotated[str, Form()] = "",
) -> Response:
    """The archivist approves the list (rules and holds of every unit are fingerprinted)."""
    check_csrf(request, csrf)
    require(user, *DECIDE)
    disposal.approve(
        session,
        _decision(list_id, session),
        actor=user.actor,
        comment=commentaire,
        four_eyes=runtime.settings.disposal_four_eyes,
    )
    session.commit()
    return _see_other(f"/console/eliminations/{list_id}")


@router.post("/console/eliminations/{list_id}/rejeter")
def reject(
    request: Request,
    list_id: str,
    user: UserDep,
    session: SessionDep,
    csrf: CsrfField = "",
    commentaire: Annotated[str, Form()] = "",
) -> Response:
    """Reject the list, with a reason (required)."""
    check_csrf(request, csrf)
    require(user, *DECIDE)
    if not commentaire.strip():
        raise ReasonRequired("a rejection needs a reason")
    disposal.reject(session, _decision(list_id, session), actor=user.actor, comment=commentaire)
    session.commit()
    return _see_other(f"/console/eliminations/{list_id}")


@router.post("/console/eliminations/{list_id}/visa")
async def visa(
    request: Request,
    list_id: str,
    user: UserDep,
    runtime: RuntimeDep,
    csrf: CsrfField = "",
    document: Annotated[UploadFile | None, File()] = None,
    reference: Annotated[str, Form()] = "",
    date_decision: Annotated[str, Form()] = "",
    exclues: Annotated[list[str] | None, Form()] = None,
) -> Response:
    """Record the departmental archives' visa: the signed PDF is archived, refused units are
    excluded from the list."""
    check_csrf(request, csrf)
    require(user, *DECIDE)
    if document is None or not document.filename:
        raise InvalidVisa("attach the signed visa (PDF)")
    data = await document.read(MAX_VISA_BYTES + 1)
    if len(data) > MAX_VISA_BYTES:
        raise PayloadTooLarge(f"the visa document is over {MAX_VISA_BYTES} bytes")
    if not data.startswith(b"%PDF-"):
        raise InvalidVisa("the visa document must be a PDF (the signed bordereau)")
    decision_date = parse_date(date_decision, "date_decision")
    if decision_date is None:
        raise InvalidVisa("the visa needs the decision's date")
    await run_in_threadpool(
        _record_visa, runtime, user.actor, list_id, reference, decision_date, exclues or [], data
    )
    return _see_other(f"/console/eliminations/{list_id}")


def _record_visa(
    runtime: Runtime,
    actor: str,
    list_id: str,
    reference: str,
    decision_date: date,
    excluded: list[str],
    data: bytes,
) -> None:
    with runtime.sessions() as session:
        record_visa_with_document(
            session,
            settings=runtime.settings,
            offers=runtime.strategy_offers,
            actor=actor,
            list_id=list_id,
            reference=reference,
            decision_date=decision_date,
            excluded=excluded,
            document=data,
        )
        session.commit()


@router.post("/console/eliminations/{list_id}/executer")
async def execute(
    request: Request, list_id: str, user: UserDep, runtime: RuntimeDep, csrf: CsrfField = ""
) -> Response:
    """Execute the list; refused unless approved (and visa'd for a destruction) and unchanged."""
    check_csrf(request, csrf)
    require(user, *DECIDE)
    ctx = execution.ExecutionContext(
        sessions=runtime.sessions,
        settings=runtime.settings,
        offers=runtime.offer_set.offers,
        strategy=runtime.strategy_offers,
    )
    await run_in_threadpool(execution.execute_list, ctx, list_id, user)
    return _see_other(f"/console/eliminations/{list_id}")


@router.get("/console/eliminations/{list_id}/bordereau")
def bordereau(
    list_id: str,
    user: UserDep,
    session: SessionDep,
    format: Annotated[str, Query(max_length=8)] = "pdf",
) -> Response:
    """The bordereau, as PDF (to sign) or CSV (to review in a spreadsheet)."""
    require(user, *READ)
    content, media_type, filename = disposal.bordereau_document(
        session, disposal.get_list(session, list_id), format
    )
    return attachment(content, media_type, filename)


@router.get("/console/eliminations/{list_id}/certificat")
def certificate(list_id: str, user: UserDep, session: SessionDep, runtime: RuntimeDep) -> Response:
    """The destruction certificate (PDF), read back from storage with its digest checked."""
    require(user, *READ)
    data, filename = disposal.read_certificate(
        session, runtime.offer_set.offers, disposal.get_list(session, list_id), actor=user.actor
    )
    session.commit()
    return attachment(data, "application/pdf", filename)
