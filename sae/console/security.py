"""Console sign-in: an API token in an HttpOnly cookie, CSRF tokens, role checks.

The console holds no session state of its own: the cookie carries an API token (``HttpOnly``
so scripts never read it, ``SameSite=Strict`` so no other site's page sends it, ``Secure`` over
https), and every request authenticates it exactly as the API does. That keeps the console
stateless like the API, so any instance answers any request.

A sign-in with a login and a password (or through OIDC: :func:`open_console_session`) makes a
*session token*: a token of the account that expires ``SAE_CONSOLE_SESSION_HOURS`` after the
sign-in, or ``SAE_CONSOLE_IDLE_MINUTES`` after its last use, and is revoked at sign-out. A token
pasted into the sign-in form (an API token the user holds) is used as it is and not revoked at
sign-out.

CSRF: each POST form carries a token that only the holder of the session can compute, an HMAC
of the API token under a fixed label. It needs no server-side store and is the same on every
instance. Before sign-in there is no API token yet, so the login form uses a random
double-submit cookie instead.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from fastapi import Request
from fastapi.responses import Response
from sqlalchemy import select

from sae.auth import accounts
from sae.auth.errors import InvalidToken
from sae.auth.models import ApiToken, User
from sae.auth.service import (
    Principal,
    authenticate,
    authenticate_and_record,
    hash_token,
    revoke_token,
)
from sae.db import transaction, utcnow
from sae.errors import Forbidden, Unauthorized
from sae.runtime import Runtime

SESSION_COOKIE = "sae_console"
LOGIN_CSRF_COOKIE = "sae_console_login"
CSRF_FIELD = "csrf"
COOKIE_PATH = "/console"
_CSRF_LABEL = b"sae-console-csrf-v1"
#: The label of the tokens made by a console sign-in (revoked at sign-out).
SESSION_LABEL = "console session"


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
        principal = authenticate_and_record(runtime.sessions, secret, reads=runtime.reads)
    except InvalidToken:
        raise LoginRequired("unknown or revoked token") from None
    request.state.principal = principal
    return principal, csrf_for_session(secret)


def open_console_session(
    runtime: Runtime, request: Request, response: Response, user: User
) -> ApiToken:
    """Sign ``user`` in to the console: a session token in the cookie of ``response``.

    For every sign-in that has vouched for the person (password here, OIDC's callback in
    ``sae.auth.oidc``). The token expires after ``SAE_CONSOLE_SESSION_HOURS`` and after
    ``SAE_CONSOLE_IDLE_MINUTES`` unused; journaled as any token (``auth.token_created``).
    """
    settings = runtime.settings
    hours = settings.console_session_hours
    with transaction(runtime.sessions) as session:
        owner = session.get(User, user.id)
        if owner is None:
            raise LoginRequired("the account no longer exists")
        token, secret = accounts.create_token(
            session,
            user=owner,
            expires_at=utcnow() + timedelta(hours=hours),
            idle_minutes=settings.console_idle_minutes,
            label=SESSION_LABEL,
            actor=accounts.principal_of(owner),
        )
    # A browser-session cookie (no Max-Age): closing the browser forgets it; the token's own
    # expiry and idle limit end the session on the server whatever the browser does.
    set_cookie(request, response, SESSION_COOKIE, secret)
    return token


def close_console_session(runtime: Runtime, request: Request, principal: Principal) -> None:
    """At sign-out: revoke the cookie's token if a console sign-in made it (a pasted API token
    is the user's own, and stays valid)."""
    secret = request.cookies.get(SESSION_COOKIE, "").strip()
    if not secret:
        return
    with transaction(runtime.sessions) as session:
        token = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(secret)))
        if token is not None and token.label == SESSION_LABEL and token.idle_minutes is not None:
            revoke_token(session, token.id, actor=principal)


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
