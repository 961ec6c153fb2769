"""Console pages of holds (gels), the referential import with its preview, and the DIP.

The same domain functions as the API (``sae.retention.holds.place_hold`` / ``lift_hold``,
``sae.retention.referential.preview_import`` / ``import_rules``, ``sae.access.dip.build_dip``)
with the same roles: the archivist places and lifts holds and imports the referential; the
auditor reads the holds; whoever may see a unit may take its DIP (what it may read of it).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, RedirectResponse, Response
from starlette.background import BackgroundTask
from starlette.datastructures import UploadFile as StarletteUpload

from sae.console.routes import CsrfField, UserDep, check_csrf, parse_date
from sae.console.security import allowed, require
from sae.console.web import ConsoleRoute, error_page, render
from sae.deps import RuntimeDep, SessionDep
from sae.errors import BadRequest
from sae.retention import dates, holds, referential
from sae.retention.errors import DurationBelowMinimum, InvalidReferential, WrongState

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

#: As the API: ``POST /holds``, ``DELETE /holds/{id}`` and ``PUT /rules`` are the archivist's;
#: ``GET /holds`` the archivist's and the auditor's.
WRITE = ("archivist",)
READ_HOLDS = ("archivist", "auditor")
#: The largest referential file accepted (the API's limit).
MAX_REFERENTIAL_BYTES = 5 * 1024 * 1024
#: The formats a referential may come in (the form's choice; "" guesses from the first line).
FORMATS = {"csv": "text/csv", "yaml": "application/yaml", "": ""}


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _return_to(target: str, default: str) -> str:
    # A form names the page to come back to; only our own unit and hold pages.
    if target.startswith(("/console/unites/", "/console/gels")) and "//" not in target:
        return target
    return default


# --- holds -----------------------------------------------------------------------------------


@router.get("/console/gels")
def holds_page(
    request: Request,
    user: UserDep,
    session: SessionDep,
    tous: Annotated[str | None, Query(max_length=8)] = None,
) -> Response:
    """The legal holds: those in force (or all, lifted and ended too), with their units."""
    require(user, *READ_HOLDS)
    listed = holds.list_holds(session, active_only=not tous)
    today = dates.today()
    rows = [
        {
            "hold": h,
            "units": holds.units_of_hold(session, h.id),
            "active": h.lifted_at is None and (h.until is None or h.until >= today),
        }
        for h in listed
    ]
    return render(
        request,
        "holds.html",
        {
            "nav": "gels",
            "rows": rows,
            "all": bool(tous),
            "may_write": allowed(user, *WRITE),
        },
    )


def _unit_ids(text: str) -> list[str]:
    return [v.strip() for line in text.splitlines() for v in line.split(",") if v.strip()]


@router.post("/console/gels")
def place(
    request: Request,
    user: UserDep,
    session: SessionDep,
    runtime: RuntimeDep,
    csrf: CsrfField = "",
    unites: Annotated[str, Form(max_length=100_000)] = "",
    motif: Annotated[str, Form(max_length=2000)] = "",
    jusqu_au: Annotated[str, Form(max_length=32)] = "",
    retour: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """Place a hold on units (and their descendants), as ``POST /api/v1/holds``."""
    check_csrf(request, csrf)
    require(user, *WRITE)
    if len(motif.strip()) < 3:
        raise BadRequest("indiquez le motif du gel (au moins 3 caractères)")
    ids = _unit_ids(unites)
    if not ids:
        raise BadRequest("indiquez au moins une unité d'archives à geler")
    holds.place_hold(
        session,
        ids,
        reason=motif.strip(),
        owner=user.actor,
        until=parse_date(jusqu_au.strip(), "jusqu_au"),
        actor=user.actor,
        offers=runtime.offer_set.offers,
    )
    session.commit()
    return _see_other(_return_to(retour, "/console/gels"))


@router.post("/console/gels/{hold_id}/levee")
def lift(
    request: Request,
    hold_id: str,
    user: UserDep,
    session: SessionDep,
    runtime: RuntimeDep,
    csrf: CsrfField = "",
    retour: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """Lift a hold (kept in the history), as ``DELETE /api/v1/holds/{id}``."""
    check_csrf(request, csrf)
    require(user, *WRITE)
    try:
        holds.lift_hold(session, hold_id, actor=user.actor, offers=runtime.offer_set.offers)
    except WrongState as exc:
        # The domain's "wrong state" is the disposal circuit's wording; say it of a hold.
        return error_page(request, 409, "holds.already_lifted", exc.detail)
    session.commit()
    return _see_other(_return_to(retour, "/console/gels"))


# --- referential import ----------------------------------------------------------------------


def _import_form(
    request: Request, *, problems: list[str] | None = None, status: int = 200
) -> Response:
    return render(
        request,
        "rules_import.html",
        {"nav": "referentiel", "problems": problems or []},
        status=status,
    )


@router.get("/console/referentiel/import")
def import_form(request: Request, user: UserDep) -> Response:
    """The upload form of a new referential (Vitam CSV or YAML, as ``sae rules import``)."""
    require(user, *WRITE)
    return _import_form(request)


def _decode(data: bytes) -> str:
    if len(data) > MAX_REFERENTIAL_BYTES:
        raise BadRequest(f"the referential is over {MAX_REFERENTIAL_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("le fichier doit être encodé en UTF-8") from None


def _content_type(fmt: str, filename: str = "") -> str:
    if fmt in FORMATS and fmt:
        return FORMATS[fmt]
    lowered = filename.lower()
    if lowered.endswith(".csv"):
        return "text/csv"
    if lowered.endswith((".yaml", ".yml")):
        return "application/yaml"
    return ""


@router.post("/console/referentiel/apercu")
async def preview(request: Request, user: UserDep, session: SessionDep) -> Response:
    """Read the uploaded referential and show what importing it would change (nothing
    written): rules added, changed, removed, and the units whose end dates change."""
    require(user, *WRITE)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_REFERENTIAL_BYTES + 64 * 1024:
        raise BadRequest(f"the referential is over {MAX_REFERENTIAL_BYTES} bytes")
    async with request.form(max_files=1, max_fields=4) as form:
        given = form.get("csrf")
        check_csrf(request, given if isinstance(given, str) else "")
        upload = form.get("fichier")
        fmt = form.get("format")
        if not isinstance(upload, StarletteUpload) or not upload.filename:
            return _import_form(
                request, problems=["Choisissez un fichier de référentiel."], status=400
            )
        data = await upload.read(MAX_REFERENTIAL_BYTES + 1)
        filename = upload.filename
    text = _decode(data)
    ctype = _content_type(fmt if isinstance(fmt, str) else "", filename)
    try:
        specs = referential.parse(text, ctype)
    except InvalidReferential as exc:
        found = exc.extra.get("problems")
        problems = [str(p) for p in found] if isinstance(found, list) else [exc.detail]
        return _import_form(request, problems=problems, status=422)
    result = await run_in_threadpool(referential.preview_import, session, specs)
    return render(
        request,
        "rules_preview.html",
        {
            "nav": "referentiel",
            "preview": result,
            "text": text,
            "content_type": ctype,
            "filename": filename,
            "version": referential.version(session),
        },
    )


@router.post("/console/referentiel/appliquer")
def apply(
    request: Request,
    user: UserDep,
    session: SessionDep,
    runtime: RuntimeDep,
    csrf: CsrfField = "",
    contenu: Annotated[str, Form(max_length=MAX_REFERENTIAL_BYTES)] = "",
    type_contenu: Annotated[str, Form(max_length=64)] = "",
    version: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """Apply the referential shown by the preview: ``import_rules``, as ``PUT /api/v1/rules``
    and ``sae rules import`` (its guards, journal events and recomputation)."""
    check_csrf(request, csrf)
    require(user, *WRITE)
    if not contenu.strip():
        raise BadRequest("the form carries no referential")
    specs = referential.parse(contenu, type_contenu)
    # What the archivist saw is what gets applied: not over a referential changed since.
    referential.check_version(session, version)
    try:
        summary = referential.import_rules(
            session, specs, actor=user, offers=runtime.offer_set.offers
        )
    except DurationBelowMinimum:
        session.commit()  # the alert must outlive the refusal
        raise
    session.commit()
    return render(request, "rules_imported.html", {"nav": "referentiel", "summary": summary})


# --- DIP ---------------------------------------------------------------------------------------


@router.get("/console/unites/{unit_id}/dip")
async def dip(unit_id: str, user: UserDep, runtime: RuntimeDep) -> Response:
    """The unit's DIP (zip), as ``GET /api/v1/units/{id}/dip``: what this user may read of
    the unit and its descendants, journaled ``access.dip_exported`` before it is handed out."""
    from sae.access.dip import build_dip

    built = await run_in_threadpool(
        build_dip,
        runtime.sessions,
        runtime.settings,
        runtime.offer_set.offers,
        user,
        unit_id,
    )
    return FileResponse(
        built.path,
        media_type="application/zip",
        filename=f"dip-{unit_id}.zip",
        headers={"Cache-Control": "no-store"},
        background=BackgroundTask(built.path.unlink, missing_ok=True),
    )
