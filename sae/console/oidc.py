"""Console sign-in with the commune's OpenID Connect provider (``SAE_OIDC_*``, docs/sso.md).

``GET /console/login/oidc`` sends the browser to the provider with a fresh state, nonce and
PKCE challenge, kept in a signed cookie of this browser; ``GET /console/login/oidc/callback``
takes the provider's answer, checks it (``sae.auth.oidc``), maps the person's groups to a role
(``SAE_GROUP_ROLES``), brings their account up to date and opens a console session.

The state cookie is ``SameSite=Lax``: the provider sends the browser back by a cross-site
navigation, which a ``Strict`` cookie would not follow. The session cookie is ``Strict``, so
the callback answers with a page that moves on to the console by itself (a ``Strict`` cookie set
on a cross-site navigation is not sent on a redirect that follows it at once).
"""

from __future__ import annotations

import logging
import threading

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from sae.auth.accounts import record_sign_in, upsert_external
from sae.auth.errors import DirectoryUnavailable, InvalidCredentials, SignInRefused
from sae.auth.groups import NoMappedGroup, resolve_role
from sae.auth.oidc import STATE_TTL_SECONDS, OidcClient, state_key
from sae.console.security import is_https, open_console_session
from sae.console.web import ConsoleRoute, render
from sae.db import transaction
from sae.deps import RuntimeDep
from sae.errors import NotFound, SAEError
from sae.runtime import Runtime

log = logging.getLogger("sae.console")
router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

STATE_COOKIE = "sae_oidc"
STATE_COOKIE_PATH = "/console/login/oidc"
_lock = threading.Lock()


def oidc_client(request: Request, runtime: Runtime) -> OidcClient:
    """The app's OIDC client (its discovery document and keys cached), or a 404 without one."""
    if runtime.settings.oidc_issuer is None:
        raise NotFound("OpenID Connect sign-in is not configured (SAE_OIDC_ISSUER)")
    with _lock:
        client: OidcClient | None = getattr(request.app.state, "oidc_client", None)
        if client is None:
            client = OidcClient(runtime.settings, state_key(runtime.settings))
            request.app.state.oidc_client = client
    return client


def oidc_button(runtime: Runtime) -> str | None:
    """The sign-in page's button label when OIDC is configured, else None."""
    if runtime.settings.oidc_issuer is None:
        return None
    return runtime.settings.oidc_button_label


def _safe_next(target: str | None) -> str:
    # Only our own pages: an open redirect would let a phishing link borrow SAE's address.
    if target and target.startswith("/console/") and not target.startswith("//"):
        return target
    return "/console/"


def _forget_state(request: Request, response: Response) -> None:
    response.delete_cookie(
        STATE_COOKIE,
        path=STATE_COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=is_https(request),
    )


def _refused(request: Request, message: str, status: int) -> HTMLResponse:
    response = render(request, "oidc_refused.html", {"message": message}, status=status)
    _forget_state(request, response)
    return response


@router.get("/console/login/oidc")
def oidc_start(request: Request, runtime: RuntimeDep, suite: str | None = None) -> Response:
    """Send the browser to the commune's identity provider."""
    client = oidc_client(request, runtime)
    redirect_uri = runtime.settings.oidc_redirect_url or str(request.url_for("oidc_callback"))
    try:
        url, cookie = client.begin(redirect_uri, _safe_next(suite))
    except DirectoryUnavailable as exc:
        return _refused(request, exc.detail, 503)
    response = RedirectResponse(url, status_code=303)
    response.set_cookie(
        STATE_COOKIE,
        cookie,
        max_age=STATE_TTL_SECONDS,
        httponly=True,
        samesite="lax",
        secure=is_https(request),
        path=STATE_COOKIE_PATH,
    )
    return response


@router.get("/console/login/oidc/callback", name="oidc_callback")
def oidc_callback(request: Request, runtime: RuntimeDep) -> Response:
    """The provider's answer: check it, map the groups to a role, open the session."""
    client = oidc_client(request, runtime)
    try:
        identity, state = client.finish(
            request.cookies.get(STATE_COOKIE), dict(request.query_params)
        )
        grant = resolve_role(identity.login, identity.groups, runtime.settings.group_roles)
    except SignInRefused as exc:
        return _refused(request, exc.detail, 401)
    except NoMappedGroup as exc:
        log.info("auth.no_mapped_group: %r (oidc)", exc.login)
        return _refused(request, str(exc), 403)
    except DirectoryUnavailable as exc:
        return _refused(request, exc.detail, 503)
    address = request.client.host if request.client else ""
    try:
        with transaction(runtime.sessions) as session:
            user = upsert_external(session, identity, role=grant.role, producers=grant.producers)
            if user.disabled_at is not None:
                raise InvalidCredentials("the account is disabled")
            record_sign_in(session, user, method="oidc", address=address)
    except SAEError as exc:
        # A local account of the same login, a disabled account: refused, as the password
        # sign-in would.
        log.info("auth.oidc_refused: %r: %s", identity.login, exc.detail)
        return _refused(
            request,
            "Ce compte ne peut pas se connecter au service d'archives. Adressez-vous à "
            "l'administrateur de SAE.",
            403,
        )
    response = render(request, "oidc_done.html", {"next": _safe_next(state.next)})
    open_console_session(runtime, request, response, user)
    _forget_state(request, response)
    return response
