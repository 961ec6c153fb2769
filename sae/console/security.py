"""Console sign-in: the API token in an HttpOnly cookie, CSRF tokens, role checks.

The console holds no session state of its own: the cookie carries the API token itself
(``HttpOnly`` so scripts never read it, ``SameSite=Strict`` so no other site's page sends it,
``Secure`` over https), and every request authenticates it exactly as the API does. That keeps
the console stateless like the API, so any instance answers any request.

CSRF: each POST form carries a token that only the holder of the session can compute, an HMAC
of the API token under a fixed label. It needs no server-side store and is the same on every
instance. Before sign-in there is no API token yet, so the login form uses a random
double-submit cookie instead.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from fastapi import Request
from fastapi.responses import Response

from sae.auth.errors import InvalidToken
from sae.auth.service import Principal, authenticate, authenticate_and_record
from sae.errors import Forbidden, Unauthorized
from sae.runtime import Runtime

SESSION_COOKIE = "sae_console"
LOGIN_CSRF_COOKIE = "sae_console_login"
CSRF_FIELD = "csrf"
COOKIE_PATH = "/console"
_CSRF_LABEL = b"sae-console-csrf-v1"


class LoginRequired(Unauthorized):
    """No valid session cookie: the console sends the browser to the sign-in page."""

    code = "console.login_required"


class CsrfRefused(Forbidden):
    """A POST without the right CSRF token (a forged or stale form)."""

    code = "console.csrf_refused"


class ConsoleForbidden(Forbidden):
    """This role may not see or do this in the console (the same rule as the API)."""

    code = "auth.role_forbidden"


def csrf_for_session(token: str) -> str:
    """The CSRF token of the session whose API token is ``token``."""
    return hmac.new(token.encode(), _CSRF_LABEL, hashlib.sha256).hexdigest()


def new_login_csrf() -> str:
    """A random value for the login form's double-submit cookie."""
    return secrets.token_urlsafe(32)


def same(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison that refuses empty values."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def is_https(request: Request) -> bool:
    """Whether the browser reached us over https (directly or through a proxy that says so)."""
    if request.url.scheme == "https":
        return True
    return request.headers.get("x-forwarded-proto", "").lower() == "https"


def set_cookie(request: Request, response: Response, name: str, value: str) -> None:
    """Set a console cookie with the attributes every console cookie must have."""
    response.set_cookie(
        name,
        value,
        httponly=True,
        samesite="strict",
        secure=is_https(request),
        path=COOKIE_PATH,
    )


def clear_cookie(request: Request, response: Response, name: str) -> None:
    """Remove a console cookie."""
    response.delete_cookie(
        name, path=COOKIE_PATH, httponly=True, samesite="strict", secure=is_https(request)
    )


def session_principal(request: Request, runtime: Runtime) -> tuple[Principal, str]:
    """The signed-in principal and its CSRF token; :class:`LoginRequired` otherwise."""
    secret = request.cookies.get(SESSION_COOKIE, "").strip()
    if not secret:
        raise LoginRequired("not signed in")
    try:
        principal = authenticate_and_record(runtime.sessions, secret)
    except InvalidToken:
        raise LoginRequired("unknown or revoked token") from None
    request.state.principal = principal
    return principal, csrf_for_session(secret)


def check_login(runtime: Runtime, secret: str) -> Principal:
    """Authenticate a token typed into the sign-in form."""
    with runtime.sessions() as session:
        return authenticate(session, secret.strip())


def require(principal: Principal, *roles: str) -> None:
    """Let through only ``roles`` (admin always passes), as ``sae.auth.deps.require_role``."""
    if principal.role == "admin" or principal.role in roles:
        return
    raise ConsoleForbidden(f"role {principal.role!r} may not do this")


def allowed(principal: Principal, *roles: str) -> bool:
    """Whether :func:`require` would let ``principal`` through (for menus and buttons)."""
    return principal.role == "admin" or principal.role in roles
