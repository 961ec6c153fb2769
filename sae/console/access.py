"""Console pages of access by dérogation (Code du patrimoine L213-3) and the register of
communications.

The same domain functions as ``/api/v1/derogations`` and ``/api/v1/communications``
(``sae.access.derogations``, ``sae.access.register``), with the same roles:

- a reader (or a depositor) asks for a dérogation — which units, for what — and follows its own
  requests;
- the archivist lists them all, grants one until a date with the authorisation's reference, or
  refuses it with a reason; the auditor reads;
- the archivist and the auditor read the register of communications, filter it and export it
  (CSV, the annual report's PDF).

A refused form comes back filled in, with the problem said in French.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from sae.access import derogations, register
from sae.access.errors import InvalidDerogation, InvalidRegisterQuery
from sae.console.routes import CsrfField, UserDep, check_csrf, parse_date
from sae.console.security import allowed, require
from sae.console.web import ConsoleRoute, render
from sae.db import utcnow
from sae.deps import SessionDep
from sae.downloads import attachment
from sae.errors import BadRequest

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

#: Who asks for dérogations, who decides them, who reads them all and the register.
REQUEST = ("reader", "depositor")
DECIDE = ("archivist",)
OVERSEE = ("archivist", "auditor")

STATE_FR = {"requested": "En attente", "granted": "Accordée", "refused": "Refusée"}
#: What the archivist reads for a refused decision (the domain's English detail stays below).
_INVALID_FR = "La demande n'a pas été acceptée : vérifiez les unités, la date et la référence."


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _units(text: str) -> list[str]:
    """Unit ids, one per line (or separated by commas or spaces)."""
    return [v for line in text.splitlines() for v in line.replace(",", " ").split() if v]


def _common(user: Any) -> dict[str, Any]:
    return {
        "nav": "acces",
        "STATE_FR": STATE_FR,
        "may_request": allowed(user, *REQUEST) and user.role != "admin",
        "may_decide": allowed(user, *DECIDE),
        "may_oversee": allowed(user, *OVERSEE),
    }


# --- dérogations -------------------------------------------------------------------------------


@router.get("/console/derogations")
def derogations_page(
    request: Request,
    user: UserDep,
    session: SessionDep,
    etat: str = "",
    lecteur: str = "",
) -> Response:
    """The archivist's list (every request, by state and reader), or a reader's own."""
    state = etat if etat in STATE_FR else None
    found = derogations.list_derogations(session, user, state=state, login=lecteur.strip() or None)
    return render(
        request,
        "derogations.html",
        {**_common(user), "derogations": found, "etat": state or "", "lecteur": lecteur},
    )


def _request_form(
    request: Request,
    user: Any,
    *,
    unites: str = "",
    objet: str = "",
    problem: str | None = None,
    status: int = 200,
) -> Response:
    return render(
        request,
        "derogation_form.html",
        {**_common(user), "unites": unites, "objet": objet, "problem": problem},
        status=status,
    )


@router.get("/console/derogations/nouvelle")
def new_derogation_form(request: Request, user: UserDep, unite: str = "") -> Response:
    """A reader's request form (``?unite=`` fills in a unit)."""
    require(user, *REQUEST)
    return _request_form(request, user, unites=unite)


@router.post("/console/derogations")
def request_derogation(
    request: Request,
    user: UserDep,
    session: SessionDep,
    csrf: CsrfField = "",
    unites: Annotated[str, Form()] = "",
    objet: Annotated[str, Form()] = "",
) -> Response:
    """Record the reader's request, for its own account."""
    check_csrf(request, csrf)
    require(user, *REQUEST)
    try:
        d = derogations.request(session, user, unit_ids=_units(unites), purpose=objet)
    except InvalidDerogation as exc:
        session.rollback()
        problem = (
            "Indiquez au moins une unité et l'objet de la consultation."
            if "unit" in exc.detail or "purpose" in exc.detail
            else _INVALID_FR
        )
        return _request_form(request, user, unites=unites, objet=objet, problem=problem, status=422)
    session.commit()
    return _see_other(f"/console/derogations/{d.id}")


@router.get("/console/derogations/{derogation_id}")
def derogation_page(
    request: Request, derogation_id: str, user: UserDep, session: SessionDep
) -> Response:
    """One request: the units, the purpose, the decision (and its forms, for the archivist)."""
    d = derogations.get(session, user, derogation_id)
    titles: dict[str, str] = {}
    if allowed(user, *OVERSEE):  # the reader is not told which ids exist, nor their titles
        from sae.console import queries

        titles = queries.unit_titles(session, list(d.units))
    return render(
        request,
        "derogation.html",
        {
            **_common(user),
            "d": d,
            "titles": titles,
            "today": utcnow().date().isoformat(),
            "problem": None,
        },
    )


def _decision_refused(
    request: Request, user: Any, session: Any, derogation_id: str, problem: str
) -> Response:
    session.rollback()
    d = derogations.get(session, user, derogation_id)
    from sae.console import queries

    return render(
        request,
        "derogation.html",
        {
            **_common(user),
            "d": d,
            "titles": queries.unit_titles(session, list(d.units)),
            "today": utcnow().date().isoformat(),
            "problem": problem,
        },
        status=422,
    )


@router.post("/console/derogations/{derogation_id}/accorder")
def grant_derogation(
    request: Request,
    derogation_id: str,
    user: UserDep,
    session: SessionDep,
    csrf: CsrfField = "",
    jusqu_au: Annotated[str, Form()] = "",
    reference: Annotated[str, Form()] = "",
) -> Response:
    """Grant until a date, with the authorisation's reference."""
    check_csrf(request, csrf)
    require(user, *DECIDE)
    d = derogations.get(session, user, derogation_id)
    try:
        until = parse_date(jusqu_au, "jusqu_au")
    except BadRequest:
        until = None
    if until is None:
        return _decision_refused(
            request, user, session, derogation_id, "Indiquez la date de fin (AAAA-MM-JJ)."
        )
    try:
        derogations.grant(session, d, actor=user.actor, until=until, reference=reference)
    except InvalidDerogation as exc:
        missing = exc.extra.get("unit_ids")
        if missing:
            problem = "Unités inexistantes : " + ", ".join(missing) + ". Refusez la demande."
        elif "past" in exc.detail:
            problem = "La date de fin est déjà passée."
        elif "reference" in exc.detail:
            problem = "Indiquez la référence de l'autorisation."
        else:
            problem = _INVALID_FR
        return _decision_refused(request, user, session, derogation_id, problem)
    session.commit()
    return _see_other(f"/console/derogations/{d.id}")


@router.post("/console/derogations/{derogation_id}/refuser")
def refuse_derogation(
    request: Request,
    derogation_id: str,
    user: UserDep,
    session: SessionDep,
    csrf: CsrfField = "",
    motif: Annotated[str, Form()] = "",
) -> Response:
    """Refuse, with the reason."""
    check_csrf(request, csrf)
    require(user, *DECIDE)
    d = derogations.get(session, user, derogation_id)
    try:
        derogations.refuse(session, d, actor=user.actor, reason=motif)
    except InvalidDerogation:
        return _decision_refused(
            request, user, session, derogation_id, "Indiquez le motif du refus."
        )
    session.commit()
    return _see_other(f"/console/derogations/{d.id}")


# --- the register of communications ------------------------------------------------------------


@dataclass(frozen=True)
class RegisterFilters:
    """The register's filters as the page's form and the export links send them (one
    dependency for both routes, so the export is always filtered as the page is)."""

    lecteur: str = ""
    unite: str = ""
    du: str = ""
    au: str = ""
    fondement: str = ""
    nature: str = ""

    def query(self) -> register.RegisterQuery:
        return register.RegisterQuery(
            login=self.lecteur.strip() or None,
            unit_id=self.unite.strip() or None,
            date_from=parse_date(self.du, "du"),
            date_to=parse_date(self.au, "au"),
            basis=self.fondement or None,
            kind=self.nature or None,
        )


FiltersDep = Annotated[RegisterFilters, Depends()]


@router.get("/console/communications")
def register_page(
    request: Request,
    user: UserDep,
    session: SessionDep,
    chosen: FiltersDep,
    suite: str = "",
) -> Response:
    """The register of communications, filtered, 100 entries a page, with the exports."""
    require(user, *OVERSEE)
    filters = asdict(chosen)
    problem = None
    entries: list[register.Entry] = []
    next_cursor = None
    try:
        query = chosen.query()
        entries, next_cursor = register.list_page(session, query, cursor=suite or None)
    except (InvalidRegisterQuery, BadRequest):
        problem = "Filtre invalide : vérifiez les dates (AAAA-MM-JJ, la fin après le début)."
    from urllib.parse import urlencode

    shown = {k: v for k, v in filters.items() if v}
    return render(
        request,
        "communications.html",
        {
            **_common(user),
            "nav": "acces",
            "filters": filters,
            "entries": entries,
            "problem": problem,
            "BASIS_FR": register.BASIS_FR,
            "KIND_FR": register.KIND_FR,
            "next_url": (
                f"/console/communications?{urlencode({**shown, 'suite': next_cursor})}"
                if next_cursor
                else None
            ),
            "export_query": urlencode(shown),
        },
        status=400 if problem else 200,
    )


@router.get("/console/communications/export")
def register_export(
    user: UserDep,
    session: SessionDep,
    chosen: FiltersDep,
    format: str = "csv",
) -> Response:
    """The register filtered as on the page: CSV, or the annual report's PDF."""
    require(user, *OVERSEE)
    if format not in ("csv", "pdf"):
        raise BadRequest(f"format: csv or pdf, not {format!r}")
    query = chosen.query()
    entries = list(register.all_entries(session, query))
    if format == "pdf":
        body = register.pdf(
            entries, query, archives_service_name=register.service_name(), created=utcnow()
        )
        return attachment(body, "application/pdf", "registre-communications.pdf")
    text = "".join(register.csv_lines(entries))
    return attachment(
        text.encode("utf-8"), "text/csv; charset=utf-8", "registre-communications.csv"
    )
