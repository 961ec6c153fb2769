"""Console pages of ingest contracts and archival profiles: list, detail, create/edit form.

The same domain functions as ``/api/v1/contracts`` and ``/api/v1/profiles`` (``save_contract``,
``set_status``, ``add_profile``), with the same roles: the archivist writes; everyone reads
within scope (a depositor, its producing services' contracts). A refused form comes back
filled in, with every problem listed.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import RedirectResponse, Response

from sae.console.routes import CsrfField, UserDep, check_csrf, parse_date
from sae.console.security import allowed, require
from sae.console.web import ConsoleRoute, render
from sae.contracts import service
from sae.contracts.errors import InvalidContract, InvalidProfile, ProfileTooLarge
from sae.deps import SessionDep
from sae.errors import BadRequest

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

WRITE = ("archivist",)


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _lines(text: str) -> list[str]:
    """One value per line (or separated by commas)."""
    return [v.strip() for line in text.splitlines() for v in line.split(",") if v.strip()]


def _bytes(text: str, field: str) -> int | None:
    text = text.strip().replace(" ", "").replace("\u202f", "")
    if not text:
        return None
    if not text.isdigit():
        raise BadRequest(f"{field}: a whole number of bytes, not {text!r}")
    return int(text)


def _form_values(clauses: dict[str, Any] | None) -> dict[str, Any]:
    """What the form shows: the contract's clauses, lists one per line."""
    c = clauses or {}
    return {
        "id": c.get("id", ""),
        "name": c.get("name", ""),
        "description": c.get("description", ""),
        "producers": "\n".join(c.get("producers", [])),
        "profiles": list(c.get("profiles", [])),
        "record_types": "\n".join(c.get("record_types", [])),
        "rules": "\n".join(c.get("rules", [])),
        "formats": "\n".join(c.get("formats", [])),
        "valid_from": c.get("valid_from") or "",
        "valid_until": c.get("valid_until") or "",
        "max_transfer_bytes": c.get("max_transfer_bytes") or "",
        "max_object_bytes": c.get("max_object_bytes") or "",
        "ocr_required": c.get("ocr_required", False),
        "antivirus_required": c.get("antivirus_required", False),
    }


def _form(
    request: Request,
    session: SessionDep,
    values: dict[str, Any],
    *,
    editing: bool,
    problems: list[str] | None = None,
    status: int = 200,
) -> Response:
    return render(
        request,
        "contract_form.html",
        {
            "nav": "contrats",
            "values": values,
            "editing": editing,
            "problems": problems or [],
            "all_profiles": [p.id for p in service.list_profiles(session)],
        },
        status=status,
    )


@router.get("/console/contrats")
def contracts_page(request: Request, user: UserDep, session: SessionDep) -> Response:
    """The contracts the user may read."""
    return render(
        request,
        "contracts.html",
        {
            "nav": "contrats",
            "contracts": [c.clauses() for c in service.list_contracts(session, user)],
            "may_write": allowed(user, *WRITE),
        },
    )


@router.get("/console/contrats/nouveau")
def new_contract_form(request: Request, user: UserDep, session: SessionDep) -> Response:
    """The form of a new contract."""
    require(user, *WRITE)
    return _form(request, session, _form_values(None), editing=False)


@router.post("/console/contrats")
def save_contract(
    request: Request,
    user: UserDep,
    session: SessionDep,
    csrf: CsrfField = "",
    identifiant: Annotated[str, Form()] = "",
    nom: Annotated[str, Form()] = "",
    description: Annotated[str, Form()] = "",
    producteurs: Annotated[str, Form()] = "",
    profils: Annotated[list[str] | None, Form()] = None,
    types: Annotated[str, Form()] = "",
    regles: Annotated[str, Form()] = "",
    formats: Annotated[str, Form()] = "",
    debut: Annotated[str, Form()] = "",
    fin: Annotated[str, Form()] = "",
    taille_versement: Annotated[str, Form()] = "",
    taille_objet: Annotated[str, Form()] = "",
    ocr: Annotated[str | None, Form()] = None,
    antivirus: Annotated[str | None, Form()] = None,
    modification: Annotated[str, Form()] = "",
) -> Response:
    """Create a contract, or (``modification``) replace the clauses of an existing one."""
    check_csrf(request, csrf)
    require(user, *WRITE)
    editing = bool(modification)
    current = service.get_contract(session, identifiant.strip()) if editing else None
    spec = service.ContractSpec(
        id=identifiant,
        name=nom,
        description=description,
        status=current.status if current is not None else "active",
        producers=_lines(producteurs),
        profiles=[p for p in profils or [] if p],
        record_types=_lines(types),
        rules=_lines(regles),
        formats=_lines(formats),
        valid_from=parse_date(debut, "debut"),
        valid_until=parse_date(fin, "fin"),
        max_transfer_bytes=_bytes(taille_versement, "taille_versement"),
        max_object_bytes=_bytes(taille_objet, "taille_objet"),
        ocr_required=ocr is not None,
        antivirus_required=antivirus is not None,
    )
    try:
        contract = service.save_contract(session, spec, actor=user, replace=editing)
    except InvalidContract as exc:
        session.rollback()
        values = _form_values(
            {**spec.__dict__, "valid_from": debut, "valid_until": fin}
            | {"max_transfer_bytes": taille_versement, "max_object_bytes": taille_objet}
        )
        problems = exc.extra.get("problems") or [exc.detail]
        return _form(request, session, values, editing=editing, problems=problems, status=422)
    session.commit()
    return _see_other(f"/console/contrats/{contract.id}")


@router.get("/console/contrats/{contract_id}")
def contract_page(
    request: Request, contract_id: str, user: UserDep, session: SessionDep
) -> Response:
    """One contract, every clause in French."""
    contract = service.read_contract(session, contract_id, user)
    return render(
        request,
        "contract.html",
        {
            "nav": "contrats",
            "c": contract.clauses(),
            "created_at": contract.created_at,
            "updated_at": contract.updated_at,
            "may_write": allowed(user, *WRITE),
        },
    )


@router.get("/console/contrats/{contract_id}/modifier")
def edit_contract_form(
    request: Request, contract_id: str, user: UserDep, session: SessionDep
) -> Response:
    """The form of an existing contract, filled in."""
    require(user, *WRITE)
    contract = service.get_contract(session, contract_id)
    return _form(request, session, _form_values(contract.clauses()), editing=True)


@router.post("/console/contrats/{contract_id}/statut")
def contract_status(
    request: Request,
    contract_id: str,
    user: UserDep,
    session: SessionDep,
    csrf: CsrfField = "",
    statut: Annotated[str, Form()] = "",
) -> Response:
    """Disable (``inactive``) or enable (``active``) a contract."""
    check_csrf(request, csrf)
    require(user, *WRITE)
    service.set_status(session, contract_id, statut, actor=user)
    session.commit()
    return _see_other(f"/console/contrats/{contract_id}")


@router.get("/console/profils")
def profiles_page(request: Request, user: UserDep, session: SessionDep) -> Response:
    """The archival profiles, and the form to add one."""
    return _profiles(request, user, session)


def _profiles(
    request: Request,
    user: Any,
    session: SessionDep,
    *,
    problems: list[str] | None = None,
    status: int = 200,
) -> Response:
    return render(
        request,
        "profiles.html",
        {
            "nav": "contrats",
            "profiles": service.list_profiles(session),
            "may_write": allowed(user, *WRITE),
            "problems": problems or [],
        },
        status=status,
    )


@router.post("/console/profils")
async def add_profile(
    request: Request,
    user: UserDep,
    session: SessionDep,
    csrf: CsrfField = "",
    identifiant: Annotated[str, Form()] = "",
    nom: Annotated[str, Form()] = "",
    remplacer: Annotated[str | None, Form()] = None,
    document: Annotated[UploadFile | None, File()] = None,
) -> Response:
    """Store an uploaded RelaxNG profile (refused with its problems when it cannot be used)."""
    check_csrf(request, csrf)
    require(user, *WRITE)
    if document is None:
        raise BadRequest("no profile file was sent")
    data = await document.read(service.MAX_PROFILE_BYTES + 1)
    if len(data) > service.MAX_PROFILE_BYTES:
        raise ProfileTooLarge(f"the profile is over {service.MAX_PROFILE_BYTES} bytes")
    try:
        service.add_profile(
            session,
            identifiant,
            nom,
            data,
            filename=document.filename or "",
            actor=user,
            replace=remplacer is not None,
        )
    except InvalidProfile as exc:
        session.rollback()
        problems = exc.extra.get("problems") or [exc.detail]
        return _profiles(request, user, session, problems=problems, status=422)
    session.commit()
    return _see_other("/console/profils")


@router.get("/console/profils/{profile_id}/document")
def profile_document(profile_id: str, user: UserDep, session: SessionDep) -> Response:
    """The profile's RelaxNG document, as stored."""
    profile = service.get_profile(session, profile_id)
    return Response(profile.document, media_type="application/xml")
