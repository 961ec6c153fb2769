"""The console's pages: sign-in, dashboard, transfers, search, units, rules, audits, journal.

Each page calls the domain services with the request's session, exactly as the API routes do,
and enforces the same roles (see docs/api.md's matrix): what a role cannot do through the API,
it cannot do here either, and a depositor sees only its producing services' archives.
"""

from __future__ import annotations

import base64
import logging
import os
from datetime import date
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, BackgroundTasks, Depends, Form, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, RedirectResponse, Response, StreamingResponse
from starlette.datastructures import UploadFile as StarletteUpload

from sae.access import register
from sae.access.reading import open_for_reading
from sae.auth.errors import InvalidCredentials, InvalidToken, NoGroupAccess, TooManyAttempts
from sae.auth.service import Principal
from sae.auth.signin import Limits, sign_in_with_password
from sae.catalog import service as catalog
from sae.catalog import views
from sae.catalog.errors import UnitNotFound
from sae.catalog.models import ArchiveUnit
from sae.catalog.schemas import UnitSummary
from sae.console import queries
from sae.console.format import UNIT_STATUS, fr_wait, label
from sae.console.metadata import content_lines
from sae.console.oidc import oidc_button
from sae.console.security import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    CsrfRefused,
    allowed,
    check_login,
    clear_cookie,
    close_console_session,
    new_login_csrf,
    open_console_session,
    require,
    same,
    session_principal,
    set_cookie,
)
from sae.console.web import STATIC, ConsoleRoute, error_page, render
from sae.deps import RuntimeDep, SessionDep
from sae.downloads import attachment, download_headers
from sae.errors import BadRequest, NotFound, SAEError
from sae.fileio import spool_file
from sae.ingest.deposit import ingest_and_commit
from sae.ingest.errors import SipTooLarge
from sae.ingest.visibility import get_visible_transfer
from sae.journal import proofs, sealing
from sae.journal import service as journal
from sae.journal.bundle import VERIFY_MD
from sae.journal.witnessing import witness_status
from sae.recovery.drill import last_drill
from sae.retention import referential
from sae.runtime import Runtime
from sae.storage.audit import create_audit, get_audit, run_audit
from sae.storage.offers import offers_health

log = logging.getLogger("sae.console")
router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

# Who may do what: the same roles as the API routes (admin always passes).
DEPOSIT = ("depositor",)
TRANSFERS = ("archivist", "depositor")
OVERVIEW = ("archivist", "auditor")
JOURNAL = ("archivist", "auditor")
AUDITS = ("archivist", "auditor")
WITHDRAW = ("archivist",)

PAGE = 50


def console_user(request: Request, runtime: RuntimeDep) -> Principal:
    """The signed-in principal (a redirect to the sign-in page when there is none)."""
    principal, csrf = session_principal(request, runtime)
    request.state.csrf = csrf
    return principal


UserDep = Annotated[Principal, Depends(console_user)]
CsrfField = Annotated[str, Form(alias="csrf")]


def check_csrf(request: Request, given: str) -> None:
    """Refuse a POST whose form does not carry this session's CSRF token."""
    if not same(getattr(request.state, "csrf", ""), given):
        raise CsrfRefused("the form's CSRF token is missing or wrong")


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def parse_date(value: str | None, field: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"{field}: not a date (expected YYYY-MM-DD): {value!r}") from None


# --- sign-in -------------------------------------------------------------------------------


@router.get("/")
def root() -> RedirectResponse:
    """SAE's home is the console."""
    return RedirectResponse("/console/", status_code=307)


@router.get("/console")
def console_root() -> RedirectResponse:
    return RedirectResponse("/console/", status_code=307)


@router.get("/console/static/{name}")
def static(name: str) -> Response:
    """The console's own style sheet (nothing is loaded from elsewhere)."""
    allowed_files = {p.name: p for p in STATIC.iterdir() if p.is_file()}
    path = allowed_files.get(name)
    if path is None:
        raise NotFound(f"no static file {name}")
    return FileResponse(path, headers={"Cache-Control": "public, max-age=3600"})


def _safe_next(target: str | None) -> str:
    # Only our own pages: an open redirect would let a phishing link borrow SAE's address.
    if target and target.startswith("/console/") and not target.startswith("//"):
        return target
    return "/console/"


@router.get("/console/connexion")
def login_form(request: Request, suite: str | None = None, erreur: str | None = None) -> Response:
    """The sign-in form: a login and a password, or an API token pasted."""
    return _login_page(request, suite, erreur)


def _login_page(
    request: Request,
    suite: str | None,
    error: str | None,
    *,
    status: int = 200,
    login: str = "",
    headers: dict[str, str] | None = None,
) -> Response:
    fresh = new_login_csrf()
    response = render(
        request,
        "login.html",
        {
            "login_csrf": fresh,
            "suite": _safe_next(suite),
            "error": error,
            "login": login,
            "oidc_label": oidc_button(request.app.state.runtime),
        },
        status=status,
    )
    response.headers.update(headers or {})
    set_cookie(request, response, LOGIN_CSRF_COOKIE, fresh)
    return response


def _client_address(request: Request) -> str:
    return request.client.host if request.client is not None else ""


@router.post("/console/connexion")
def login(
    request: Request,
    runtime: RuntimeDep,
    token: Annotated[str, Form()] = "",
    identifiant: Annotated[str, Form()] = "",
    mot_de_passe: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
    suite: Annotated[str, Form()] = "/console/",
) -> Response:
    """Sign in: a login and a password open a session (a short-lived token of the account);
    a pasted API token is checked as the API would. Either way the token goes into an
    HttpOnly, SameSite=Strict cookie."""
    if not same(request.cookies.get(LOGIN_CSRF_COOKIE), csrf):
        raise CsrfRefused("the sign-in form's CSRF token is missing or wrong")
    done = _see_other(_safe_next(suite))
    if identifiant.strip() or not token.strip():
        try:
            user = sign_in_with_password(
                runtime.sessions,
                identifiant,
                mot_de_passe,
                address=_client_address(request),
                limits=Limits.of(runtime.settings),
                directories=runtime.password_directories,
            )
        except TooManyAttempts as exc:
            wait = int(exc.extra.get("retry_after", 60))
            return _login_page(
                request,
                suite,
                "Trop de tentatives de connexion refusées pour ce compte ou depuis ce poste. "
                f"Réessayez dans {fr_wait(wait)}.",
                status=429,
                login=identifiant,
                headers={"Retry-After": str(wait)},
            )
        except NoGroupAccess as exc:
            return _login_page(request, suite, exc.detail, status=403, login=identifiant)
        except InvalidCredentials:
            return _login_page(
                request,
                suite,
                "Identifiant ou mot de passe incorrect, ou compte désactivé.",
                status=401,
                login=identifiant,
            )
        open_console_session(runtime, request, done, user)
    else:
        try:
            principal = check_login(runtime, token)
        except InvalidToken:
            return _login_page(
                request,
                suite,
                "Jeton inconnu, expiré, révoqué ou mal copié. Vérifiez-le et réessayez.",
                status=401,
            )
        request.state.principal = principal
        set_cookie(request, done, SESSION_COOKIE, token.strip())
    clear_cookie(request, done, LOGIN_CSRF_COOKIE)
    return done


@router.post("/console/deconnexion")
def logout(request: Request, user: UserDep, runtime: RuntimeDep, csrf: CsrfField = "") -> Response:
    """Sign out: a console session's token is revoked, the cookie cleared."""
    check_csrf(request, csrf)
    close_console_session(runtime, request, user)
    response = _see_other("/console/connexion")
    clear_cookie(request, response, SESSION_COOKIE)
    return response


# --- dashboard -------------------------------------------------------------------------------


@router.get("/console/")
def dashboard(
    request: Request, user: UserDep, session: SessionDep, runtime: RuntimeDep
) -> Response:
    """Tableau de bord: what the archive holds, where, the journal, recent transfers and audits."""
    context: dict[str, object] = {"nav": "accueil"}
    if allowed(user, *OVERVIEW):
        context.update(
            totals=queries.totals(session),
            offers=offers_health(runtime.offer_set),
            strategy=runtime.offer_set.strategy,
            tree=queries.tree_state(session),
            audits=queries.recent_audits(session, 5),
            drill=last_drill(session),
            drill_interval_days=runtime.settings.drill_interval_days,
            witnessing=(
                witness_status(session, runtime.witnesses, runtime.settings)
                if runtime.witnesses is not None
                else None
            ),
        )
        if runtime.settings.ocr:
            from sae.extraction.ocr import MAX_ATTEMPTS, failed_jobs, ocr_counts

            context.update(
                ocr=ocr_counts(session),
                ocr_failures=failed_jobs(session, 10),
                ocr_max_attempts=MAX_ATTEMPTS,
            )
    if allowed(user, *TRANSFERS):
        context["transfers"], _ = queries.list_transfers(session, user, limit=10)
    return render(request, "dashboard.html", context)


# --- transfers -------------------------------------------------------------------------------


@router.get("/console/versements")
def transfers(
    request: Request,
    user: UserDep,
    session: SessionDep,
    statut: Annotated[str | None, Query(max_length=8)] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    """The transfers this user may see, newest first, with the deposit form."""
    require(user, *TRANSFERS)
    rows, more = queries.list_transfers(
        session, user, status=statut or None, limit=PAGE, offset=(page - 1) * PAGE
    )
    return render(
        request,
        "transfers.html",
        {
            "nav": "versements",
            "transfers": rows,
            "status": statut or "",
            "page": page,
            "more": more,
            "may_deposit": allowed(user, *DEPOSIT),
        },
    )


@router.get("/console/versements/{transfer_id}")
def transfer_page(
    request: Request, transfer_id: str, user: UserDep, session: SessionDep, runtime: RuntimeDep
) -> Response:
    """One transfer: status, counts, and every fault in plain French."""
    require(user, *TRANSFERS)
    transfer = get_visible_transfer(session, user, transfer_id)
    units = queries.transfer_units(session, transfer.id)
    ref = journal.journal_ref(session, transfer.id)
    return render(
        request,
        "transfer.html",
        {
            "nav": "versements",
            "t": transfer,
            "units": units,
            "journal_ref": ref,
            "withdrawable_until": queries.withdrawal_deadline(
                session, transfer, runtime.offer_set.offers
            )
            if user.role in ("admin", *WITHDRAW)
            else None,
        },
    )


@router.post("/console/versements/{transfer_id}/retrait")
def withdraw(
    request: Request,
    transfer_id: str,
    user: UserDep,
    runtime: RuntimeDep,
    csrf: CsrfField = "",
    motif: Annotated[str, Form()] = "",
) -> Response:
    """Withdraw a transfer deposited by mistake, within its quarantine (the API's route)."""
    from sae.ingest.withdrawal import withdraw_transfer

    check_csrf(request, csrf)
    require(user, *WITHDRAW)
    if len(motif.strip()) < 3:
        raise BadRequest("indiquez le motif du retrait (au moins 3 caractères)")
    withdraw_transfer(runtime.sessions, runtime.offer_set.offers, user, transfer_id, motif.strip())
    return _see_other(f"/console/versements/{transfer_id}")


@router.get("/console/versements/{transfer_id}/accuse")
def transfer_atr(transfer_id: str, user: UserDep, session: SessionDep) -> Response:
    """The transfer's ArchiveTransferReply (SEDA XML), as a download."""
    require(user, *TRANSFERS)
    transfer = get_visible_transfer(session, user, transfer_id)
    if transfer.atr is None:
        raise NotFound(f"transfer {transfer_id} has no reply yet")
    return attachment(transfer.atr, "application/xml", f"ATR-{transfer.id}.xml")


async def _spool_upload(upload: StarletteUpload, runtime: Runtime) -> Path:
    """Copy the uploaded SIP to a private temporary file, refusing it past the size limit."""
    limit = runtime.settings.max_sip_bytes
    size = 0
    with (
        spool_file(runtime.settings.data_dir / "tmp", "sip-", ".zip") as (fd, path),
        os.fdopen(fd, "wb") as fh,
    ):
        while chunk := await upload.read(1024 * 1024):
            size += len(chunk)
            if size > limit:
                raise SipTooLarge(f"the SIP exceeds the limit of {limit} bytes")
            fh.write(chunk)
    return path


@router.post("/console/versements")
async def deposit(request: Request, user: UserDep, runtime: RuntimeDep) -> Response:
    """Deposit a SIP zip from the browser; shows the transfer's page (accepted or refused)."""
    # The form is parsed here rather than by a File() parameter, so that an oversized upload
    # (by its Content-Length) and a role that may not deposit are refused before the body is
    # read and spooled to disk.
    require(user, *DEPOSIT)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > runtime.settings.max_sip_bytes + 1024 * 1024:
        raise SipTooLarge(f"the request is {declared} bytes")
    async with request.form(max_files=1, max_fields=4) as form:
        given = form.get("csrf")
        check_csrf(request, given if isinstance(given, str) else "")
        sip = form.get("sip")
        if not isinstance(sip, StarletteUpload) or not sip.filename:
            raise BadRequest("choose a SIP zip file to deposit")
        path = await _spool_upload(sip, runtime)
    try:
        outcome = await run_in_threadpool(ingest_and_commit, runtime, user, path)
        transfer = outcome.transfer
    finally:
        path.unlink(missing_ok=True)
    return _see_other(f"/console/versements/{transfer.id}")


# --- search and units ------------------------------------------------------------------------


@router.get("/console/recherche")
def search(
    request: Request,
    user: UserDep,
    session: SessionDep,
    runtime: RuntimeDep,
    q: Annotated[str | None, Query(max_length=500)] = None,
    producteur: Annotated[str | None, Query(max_length=255)] = None,
    du: Annotated[str | None, Query(max_length=32)] = None,
    au: Annotated[str | None, Query(max_length=32)] = None,
    type: Annotated[str | None, Query(max_length=255)] = None,  # noqa: A002 (the form's name)
    statut: Annotated[str | None, Query(max_length=16)] = None,
    suite: Annotated[str | None, Query(max_length=1000)] = None,
) -> Response:
    """Search archive units by words (the most relevant first), producing service, dates,
    record type and status, with the counts of each value to narrow the search by."""
    date_from = parse_date(du, "du")
    date_to = parse_date(au, "au")
    form = {
        "q": q or "",
        "producteur": producteur or "",
        "du": du or "",
        "au": au or "",
        "type": type or "",
        "statut": statut or "",
    }
    searched = any((*form.values(), suite)) or "q" in request.query_params
    units: list[UnitSummary] = []
    next_cursor: str | None = None
    facets: catalog.Facets | None = None
    if searched:
        query = catalog.SearchQuery(
            q=q or None,
            producer=producteur or None,
            date_from=date_from.isoformat() if date_from else None,
            date_to=date_to.isoformat() if date_to else None,
            record_type=type or None,
            status=statut or None,
            limit=PAGE,
            cursor=suite or None,
        )
        finding_aid = runtime.settings.finding_aid_fields
        found = catalog.search(session, query, user, finding_aid, catalog.FACETS)
        units = views.summaries(session, user, found.units, finding_aid)
        next_cursor, facets = found.next_cursor, found.facets
    params = {k: v for k, v in form.items() if v}
    next_url = None
    if next_cursor:
        next_url = f"/console/recherche?{_query_string(params)}&suite={quote(next_cursor)}"
    return render(
        request,
        "search.html",
        {
            "nav": "recherche",
            "units": units,
            "searched": searched,
            "form": form,
            "facets": facets,
            "refine": _refinements(params, facets),
            "applied": _applied_filters(session, params),
            "producers": queries.producers(session, user),
            "next_url": next_url,
        },
    )


def _applied_filters(session: SessionDep, params: dict[str, str]) -> list[tuple[str, str, str]]:
    """The filters a facet link set that the form does not show (record type, status): their
    name, their value in French, and the link that removes each."""
    applied = []
    if params.get("type"):
        applied.append(("Typologie", queries.record_type_label(session, params["type"]), "type"))
    if params.get("statut"):
        applied.append(("Statut", label(UNIT_STATUS, params["statut"]), "statut"))
    return [
        (
            name,
            shown,
            "/console/recherche?" + _query_string({k: v for k, v in params.items() if k != key}),
        )
        for name, shown, key in applied
    ]


def _query_string(params: dict[str, str]) -> str:
    return "&".join(f"{k}={quote(v)}" for k, v in params.items())


#: The console's name for each facet, and the form fields that narrow the search to a value.
_FACET_TITLES = {
    "producer": "Service producteur",
    "year": "Année",
    "record_type": "Typologie",
    "status": "Statut",
}


def _refinements(
    params: dict[str, str], facets: catalog.Facets | None
) -> list[tuple[str, list[tuple[str, int, str]]]]:
    """Per facet, its values with their counts and the link that narrows the search to each."""
    if facets is None:
        return []
    refined = []
    for name, values in facets.counts.items():
        links = []
        for value in values:
            narrowed = {**params}
            if name == "producer":
                narrowed["producteur"] = value.value
            elif name == "year":
                narrowed["du"], narrowed["au"] = f"{value.value}-01-01", f"{value.value}-12-31"
            elif name == "record_type":
                narrowed["type"] = value.value
            else:
                narrowed["statut"] = value.value
            shown = value.label or value.value
            if name == "status":
                shown = label(UNIT_STATUS, value.value)
            links.append((shown, value.count, f"/console/recherche?{_query_string(narrowed)}"))
        refined.append((_FACET_TITLES[name], links))
    return refined


@router.get("/console/unites/{unit_id}")
def unit_page(request: Request, unit_id: str, user: UserDep, session: SessionDep) -> Response:
    """An archive unit: description, graph, rules and end dates, holds, objects."""
    unit = session.get(ArchiveUnit, unit_id)
    # The console shows a unit whole or not at all: a reader finds a unit not yet communicable
    # only as a row of the finding aid (search), never by its page.
    if unit is None or not catalog.may_see_unit(session, user, unit):
        raise UnitNotFound(f"no archive unit {unit_id}")
    rules = catalog.unit_rules(session, unit)
    parents = catalog.visible_ids(session, user, catalog.parents_of(session, unit.id))
    children = catalog.visible_ids(session, user, catalog.children_of(session, unit.id))
    titles = queries.unit_titles(session, parents + children)
    objects = catalog.objects_of_unit(session, unit)
    holds = queries.unit_holds(session, unit.id)
    declared = {k: v for k, v in unit.management.items() if k != "_defaults"}
    # A reader's or a depositor's view is a communication: journaled and in the register.
    register.unit_read(session, user, unit, via="console")
    session.commit()
    return render(
        request,
        "unit.html",
        {
            "nav": "recherche",
            "unit": unit,
            "rules": rules,
            "communicable": rules.communicable(),
            "parents": [(p, titles.get(p, p)) for p in parents],
            "children": [(c, titles.get(c, c)) for c in children],
            "objects": objects,
            "copies": {o.id: catalog.copies_of(session, o.id) for o in objects},
            "holds": holds,
            "declared": declared,
            "metadata": content_lines(unit.content_xml),
            "may_proof": allowed(user, *JOURNAL),
            # A reader reads what is communicable today, or opened to it by a dérogation.
            "may_read": user.role != "reader"
            or not catalog.closed_units(session, [unit.id], user_id=catalog.user_of(user)),
            "may_hold": allowed(user, "archivist"),
        },
    )


@router.get("/console/objets/{object_id}/contenu")
async def object_content(object_id: str, user: UserDep, runtime: RuntimeDep) -> Response:
    """Download an object's bytes (access checked, journaled, digest checked while streaming)."""
    stream = await run_in_threadpool(
        open_for_reading,
        runtime.sessions,
        runtime.offer_set.offers,
        user,
        object_id,
        via="console",
    )
    obj = stream.obj
    assert obj.sha512 is not None
    b64 = base64.b64encode(bytes.fromhex(obj.sha512)).decode()
    return StreamingResponse(
        iter(stream),
        media_type=obj.mime_type or "application/octet-stream",
        headers=download_headers(
            obj.filename or obj.sip_id,
            {
                "Repr-Digest": f"sha-512=:{b64}:",
                "Content-Length": str(obj.size),
                "Cache-Control": "no-store",
            },
        ),
    )


# --- referential -----------------------------------------------------------------------------


@router.get("/console/referentiel")
def rules_page(request: Request, user: UserDep, session: SessionDep) -> Response:
    """The retention and access rules of the referential."""
    rules = referential.list_rules(session)
    by_type: dict[str, list[object]] = {}
    for rule in rules:
        by_type.setdefault(rule.type, []).append(rule)
    return render(request, "rules.html", {"nav": "referentiel", "by_type": by_type})


# --- audits ----------------------------------------------------------------------------------


@router.get("/console/audits")
def audits_page(
    request: Request, user: UserDep, session: SessionDep, runtime: RuntimeDep
) -> Response:
    """Fixity audits: the latest ones, and a form to launch one."""
    require(user, *AUDITS)
    return render(
        request,
        "audits.html",
        {
            "nav": "audits",
            "audits": queries.recent_audits(session, 50),
            "offers": list(runtime.offer_set.offers),
        },
    )


@router.post("/console/audits")
def launch_audit(
    request: Request,
    background: BackgroundTasks,
    user: UserDep,
    session: SessionDep,
    runtime: RuntimeDep,
    csrf: CsrfField = "",
    offres: Annotated[list[str] | None, Form()] = None,
    taux: Annotated[str, Form()] = "100",
    reparer: Annotated[str | None, Form()] = None,
) -> Response:
    """Launch a fixity audit (all offers, or some; all objects or a sample)."""
    check_csrf(request, csrf)
    require(user, *AUDITS)
    try:
        rate = float(taux.replace(",", ".")) / 100
    except ValueError:
        raise BadRequest(f"sample rate {taux!r} is not a number") from None
    audit = create_audit(
        session,
        runtime.offer_set,
        offers=[o for o in offres or [] if o] or None,
        sample_rate=rate,
        repair=reparer is not None,
        requested_by=user.actor,
    )
    session.commit()
    background.add_task(run_audit, runtime.sessions, runtime.offer_set, audit.id)
    return _see_other(f"/console/audits/{audit.id}")


@router.get("/console/audits/{audit_id}")
def audit_page(request: Request, audit_id: str, user: UserDep, session: SessionDep) -> Response:
    """One audit: progress and every problem found, with its repair."""
    require(user, *AUDITS)
    audit, problems = get_audit(session, audit_id)
    return render(request, "audit.html", {"nav": "audits", "audit": audit, "problems": problems})


# --- journal ---------------------------------------------------------------------------------


def _seal(runtime: Runtime) -> None:
    # As GET /api/v1/journal/head does: cover every committed leaf with a signed, time-stamped
    # head before showing it (waiting for a concurrent sealer rather than racing it).
    sealing.seal_now(runtime.sessions, runtime.settings, wait=True)


@router.get("/console/journal")
def journal_page(
    request: Request,
    user: UserDep,
    session: SessionDep,
    runtime: RuntimeDep,
    type: Annotated[str | None, Query(max_length=64)] = None,
    du: Annotated[str | None, Query(max_length=32)] = None,
    au: Annotated[str | None, Query(max_length=32)] = None,
    unite: Annotated[str | None, Query(max_length=36)] = None,
    objet: Annotated[str | None, Query(max_length=36)] = None,
    avant: Annotated[int | None, Query(ge=0)] = None,
) -> Response:
    """The journal: the latest signed tree head and events with their leaf index, filterable
    by type, dates, unit and object."""
    require(user, *JOURNAL)
    filters = queries.EventFilter(
        type=type or None,
        date_from=parse_date(du, "du"),
        date_to=parse_date(au, "au"),
        unit_id=unite or None,
        object_id=objet or None,
    )
    seal_error = None
    if queries.tree_state(session).unsealed > 0:
        try:
            _seal(runtime)
        except SAEError as exc:
            # The page still shows the journal; the auditor is told the head is behind.
            log.warning("console: sealing failed: %s", exc.detail)
            seal_error = exc.detail
        session.expire_all()
    events, more = queries.list_events(session, filters, limit=PAGE, before=avant)
    next_url = None
    if more is not None:
        pairs = (("type", type), ("du", du), ("au", au), ("unite", unite), ("objet", objet))
        query = "".join(f"{k}={quote(v)}&" for k, v in pairs if v)
        next_url = f"/console/journal?{query}avant={more}"
    return render(
        request,
        "journal.html",
        {
            "nav": "journal",
            "tree": queries.tree_state(session),
            "seal_error": seal_error,
            "events": events,
            "types": queries.event_types(session),
            "form": {
                "type": type or "",
                "du": du or "",
                "au": au or "",
                "unite": unite or "",
                "objet": objet or "",
            },
            "next_url": next_url,
        },
    )


HEAD_FILES = {
    "tree-head.json": "application/json",
    "tree-head.sig": "application/octet-stream",
    "tree-head.tsr": "application/timestamp-reply",
    "tsa-chain.pem": "application/x-pem-file",
    "sae-signing-key.pem": "application/x-pem-file",
}


@router.get("/console/journal/tetes/{tree_size}/{name}")
def head_file(tree_size: int, name: str, user: UserDep, session: SessionDep) -> Response:
    """One file of a signed head, named as in a proof bundle (checkable with openssl)."""
    require(user, *JOURNAL)
    if name not in HEAD_FILES:
        raise NotFound(f"no head file {name}")
    head = journal.head_of_size(session, tree_size)
    data = {
        "tree-head.json": head.checkpoint,
        "tree-head.sig": head.signature,
        "tree-head.tsr": head.tsr,
        "tsa-chain.pem": head.tsa_chain_pem,
        "sae-signing-key.pem": head.public_key_pem,
    }[name]
    return attachment(data, HEAD_FILES[name], f"{tree_size}-{name}")


@router.get("/console/objets/{object_id}/preuve")
def object_proof(
    object_id: str, user: UserDep, session: SessionDep, runtime: RuntimeDep
) -> Response:
    """The object's proof bundle (zip), as GET /api/v1/objects/{id}/proof."""
    require(user, *JOURNAL)
    event = proofs.ingest_event(session, object_id)
    if journal.covering_head(session, event.leaf_index) is None:
        _seal(runtime)
        session.expire_all()
    data = proofs.object_bundle(session, object_id, settings=runtime.settings)
    return attachment(data, "application/zip", f"preuve-{object_id}.zip")


@router.get("/console/journal/verifier")
def verify_help(request: Request, user: UserDep) -> Response:
    """How an auditor checks a proof bundle offline (the commands of VERIFY.md)."""
    require(user, *JOURNAL)
    return render(request, "verify.html", {"nav": "journal", "verify_md": VERIFY_MD})


# --- anything else under /console ------------------------------------------------------------


fallback = APIRouter(route_class=ConsoleRoute, include_in_schema=False)


@fallback.api_route("/console/{rest:path}", methods=["GET", "POST"])
def not_found(request: Request, rest: str) -> Response:
    """A French 404 for any other console address (included last)."""
    try:
        _, request.state.csrf = session_principal(request, request.app.state.runtime)
    except Exception:  # an anonymous visitor still gets the page, without the menu
        request.state.principal = None
    return error_page(request, 404, "not_found", f"/console/{rest}")
