"""Rendering for the console: the Jinja2 environment, pages, and French error pages.

Console routes use :class:`ConsoleRoute`, which turns every error raised by a route or its
dependencies into an HTML page in French (or, for a missing session, a redirect to the sign-in
page) instead of the API's problem+json: an archivist never sees a traceback or a JSON body.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException

from sae.auth.service import Principal
from sae.console import format as fmt
from sae.console.security import LoginRequired, allowed
from sae.errors import SAEError

log = logging.getLogger("sae.console")

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

# No script, no style attribute, nothing from elsewhere: the console works offline and a
# injected tag could not run even if escaping ever failed.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        date=fmt.fr_date,
        datetime=fmt.fr_datetime,
        size=fmt.fr_size,
        int=fmt.fr_int,
        fault=fmt.fault_text,
        actor=fmt.fr_actor,
        event=fmt.event_label,
    )
    env.globals.update(
        label=fmt.label,
        duration=fmt.fr_duration,
        date_range=fmt.fr_date_range,
        TRANSFER_STATUS=fmt.TRANSFER_STATUS,
        UNIT_STATUS=fmt.UNIT_STATUS,
        OBJECT_STATUS=fmt.OBJECT_STATUS,
        AUDIT_STATUS=fmt.AUDIT_STATUS,
        PROBLEM_KIND=fmt.PROBLEM_KIND,
        DISPOSAL_STATE=fmt.DISPOSAL_STATE,
        LINE_STATE=fmt.LINE_STATE,
        FINAL_ACTION=fmt.FINAL_ACTION,
        RULE_CATEGORY=fmt.RULE_CATEGORY,
        ROLE=fmt.ROLE,
        LEVEL=fmt.LEVEL,
        allowed=allowed,
        quote=quote,
    )
    return env


ENV = _environment()


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status: int = 200,
) -> HTMLResponse:
    """Render a console page; ``me`` and ``csrf`` come from the request's sign-in."""
    principal: Principal | None = getattr(request.state, "principal", None)
    values: dict[str, Any] = {
        "me": principal,
        "csrf": getattr(request.state, "csrf", ""),
        "path": request.url.path,
    }
    values.update(context or {})
    html = ENV.get_template(template).render(values)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


# What the archivist reads for each kind of refusal. The technical detail (English) is shown
# under it, small, for whoever has to fix the cause.
_STATUS_TEXT = {
    400: ("Demande invalide", "La demande n'a pas pu être traitée : une valeur est invalide."),
    401: ("Connexion requise", "Connectez-vous avec votre identifiant et votre mot de passe."),
    403: ("Accès refusé", "Votre rôle ne permet pas d'accéder à cette page ou à cette action."),
    404: ("Introuvable", "La page ou l'élément demandé n'existe pas, ou vous n'y avez pas accès."),
    409: ("Action refusée", "Cette action n'est pas possible dans l'état actuel."),
    410: ("Élément éliminé", "Cet élément a été éliminé réglementairement ; il n'existe plus."),
    413: ("Fichier trop volumineux", "Le fichier dépasse la taille maximale acceptée."),
    415: ("Format non accepté", "Ce type de fichier n'est pas accepté ici."),
    422: ("Demande refusée", "Les informations fournies ne sont pas acceptables."),
    503: (
        "Service momentanément indisponible",
        "Un composant (stockage, base de données, horodatage) ne répond pas. Réessayez plus "
        "tard ou prévenez l'exploitation.",
    ),
}
_CODE_TEXT = {
    "auth.user_exists": ("Identifiant déjà pris", "Un compte porte déjà cet identifiant."),
    "auth.invalid_account": (
        "Compte refusé",
        "Une valeur du compte n'est pas acceptable : identifiant (lettres, chiffres, . _ @ + ' -, "
        "sans espace), mot de passe (10 caractères au moins), rôle ou services producteurs.",
    ),
    "auth.unknown_role": ("Rôle inconnu", "Ce rôle n'existe pas dans le SAE."),
    "console.csrf_refused": (
        "Formulaire expiré",
        "Ce formulaire n'est plus valable (jeton de sécurité absent ou périmé). Rechargez la "
        "page et recommencez.",
    ),
    "access.not_communicable": (
        "Document non communicable",
        "Ce document n'est pas encore communicable au public (délais du Code du patrimoine).",
    ),
    "disposal.four_eyes": (
        "Approbation refusée : contrôle à quatre yeux",
        "Vous avez établi ou transmis cette liste d'élimination : un autre archiviste doit "
        "l'approuver. Personne ne détruit seul des archives.",
    ),
    "catalog.object_destroyed": (
        "Document éliminé ou retiré",
        "Ce document a été éliminé réglementairement, ou retiré avec son versement pendant sa "
        "quarantaine ; son contenu n'existe plus.",
    ),
    "transfer.withdrawal_refused": (
        "Retrait impossible",
        "Ce versement ne peut plus être retiré : la quarantaine de ses copies est terminée "
        "(seule une élimination réglementaire peut désormais les supprimer), ou une unité est "
        "gelée, inscrite sur une liste d'élimination, ou porte des unités d'un autre versement.",
    ),
    "transfer.withdrawal_incomplete": (
        "Retrait inachevé",
        "Un espace de stockage n'a pas répondu : une partie des copies est supprimée. "
        "Relancez le retrait pour l'achever.",
    ),
    "storage.no_healthy_copy": (
        "Document momentanément illisible",
        "Aucune copie saine de ce document n'a pu être lue. L'incident est enregistré au "
        "journal ; un audit avec réparation doit être lancé.",
    ),
    "disposal.wrong_state": (
        "Étape impossible",
        "La liste n'est pas dans l'état qui permet cette étape du circuit d'élimination.",
    ),
    "disposal.execution_refused": (
        "Élimination refusée",
        "L'élimination est refusée : la liste doit être approuvée et visée par les Archives "
        "départementales, et aucune unité ne doit être gelée, modifiée ou non échue.",
    ),
    "disposal.execution_in_progress": (
        "Élimination déjà en cours",
        "Une autre exécution de cette liste est en cours ; attendez qu'elle se termine.",
    ),
    "disposal.invalid_visa": (
        "Visa incomplet",
        "Le visa est incomplet ou incohérent : joignez le document signé (PDF), sa référence "
        "et une date de décision qui n'est pas dans le futur.",
    ),
    "disposal.storage_refused": (
        "Suppression refusée par le stockage",
        "Un espace de stockage a refusé de supprimer une copie ; l'élimination s'est arrêtée "
        "et pourra être reprise.",
    ),
    "console.reason_required": (
        "Motif obligatoire",
        "Indiquez le motif du rejet : il est enregistré au journal avec la décision.",
    ),
    "auth.producer_forbidden": (
        "Service producteur non autorisé",
        "Votre jeton ne permet pas de verser pour le service producteur indiqué dans le bordereau.",
    ),
    "ingest.duplicate_transfer": (
        "Versement déjà reçu",
        "Un versement portant le même identifiant de message a déjà été accepté.",
    ),
    "holds.invalid": (
        "Gel refusé",
        "Le gel est incohérent : indiquez au moins une unité et, si le gel a une fin, une date "
        "qui n'est pas passée.",
    ),
    "holds.not_found": ("Gel introuvable", "Ce gel n'existe pas."),
    "holds.already_lifted": ("Gel déjà levé", "Ce gel a déjà été levé ; rien n'a été modifié."),
    "rules.rule_in_use": (
        "Référentiel refusé",
        "Le référentiel supprimerait une règle que des unités d'archives citent encore, ou "
        "changerait la nature d'une règle de gel utilisée. Rien n'a été modifié.",
    ),
    "rules.referential_changed": (
        "Référentiel modifié entre-temps",
        "Le référentiel a été modifié depuis l'aperçu. Rien n'a été appliqué : refaites "
        "l'aperçu du fichier pour voir ce qui changerait maintenant.",
    ),
    "rules.duration_below_minimum": (
        "Référentiel refusé",
        "Une durée est inférieure au minimum configuré pour sa catégorie. Rien n'a été "
        "modifié ; le refus est enregistré au journal comme une alerte.",
    ),
    "rules.invalid_referential": (
        "Référentiel illisible",
        "Le fichier du référentiel contient des erreurs. Rien n'a été modifié.",
    ),
    "storage.audit_invalid": (
        "Audit impossible",
        "La demande d'audit est invalide (espace de stockage inconnu ou taux d'échantillon hors "
        "de ]0 ; 1]).",
    ),
}


# Why a disposal execution refuses a unit (``ExecutionRefused.problems[].reason``).
REFUSAL_REASONS = {
    "held": "l'unité est gelée (contentieux, contrôle…) : elle ne peut pas être éliminée",
    "changed": "ses règles, échéances ou gels ont changé depuis l'approbation de la liste",
    "not_due": "sa durée d'utilité administrative n'est pas échue, ou son sort final a changé",
    "not_active": "l'unité n'est plus en conservation (déjà éliminée ou absente)",
}


def error_page(
    request: Request,
    status: int,
    code: str,
    detail: str,
    problems: list[dict[str, Any]] | None = None,
) -> HTMLResponse:
    """The French page for an error of HTTP ``status`` and SAE ``code``."""
    title, text = _CODE_TEXT.get(code) or _STATUS_TEXT.get(
        status, ("Erreur", "Une erreur est survenue.")
    )
    if status >= 500 and code not in _CODE_TEXT and status != 503:
        title, text = (
            "Erreur interne",
            "Une erreur inattendue est survenue. Elle a été enregistrée ; prévenez "
            "l'administrateur si elle se reproduit.",
        )
        detail = ""
    return render(
        request,
        "error.html",
        {
            "title": title,
            "text": text,
            "detail": detail,
            "code": code,
            "status": status,
            "back": _back(request),
            "problems": [
                {
                    "unit_id": str(p.get("unit_id", "")),
                    "text": REFUSAL_REASONS.get(str(p.get("reason")), str(p.get("detail", ""))),
                }
                for p in problems or []
                if isinstance(p, dict)
            ],
        },
        status=status,
    )


def _back(request: Request) -> str | None:
    # After a refused form, offer the page the form was on (our own pages only).
    if request.method != "POST":
        return None
    path = urlsplit(request.headers.get("referer", "")).path
    return path if path.startswith("/console/") else None


def login_redirect(request: Request) -> RedirectResponse:
    """Send the browser to the sign-in page, coming back here afterwards (GET only)."""
    target = "/console/connexion"
    if request.method == "GET" and request.url.path not in ("/console/connexion",):
        back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        target += "?suite=" + quote(back, safe="")
    return RedirectResponse(target, status_code=303)


class ConsoleRoute(APIRoute):
    """A route whose errors become French HTML pages (never problem+json, never a 500 dump)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await original(request)
            except LoginRequired:
                return login_redirect(request)
            except SAEError as exc:
                problems = exc.extra.get("problems")
                return error_page(
                    request,
                    exc.status,
                    exc.code,
                    exc.detail,
                    problems if isinstance(problems, list) else None,
                )
            except RequestValidationError as exc:
                detail = "; ".join(
                    f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}"
                    for e in exc.errors()
                )
                return error_page(request, 400, "request.invalid_parameters", detail)
            except StarletteHTTPException as exc:
                return error_page(request, exc.status_code, "http_error", str(exc.detail))
            except Exception:
                log.exception("console: unexpected error on %s %s", request.method, request.url)
                return error_page(request, 500, "internal", "")

        return handler
