"""The console's pages for accounts and tokens: « Comptes » (administrators) and « Jetons
d'accès » (everyone: their own; administrators: every account's).

The same domain functions as the API (:mod:`sae.auth.accounts`), the same rules: a user sees
and revokes their own tokens only; only an administrator creates, changes or disables accounts.
A new token's secret is shown once, on the page that answers its creation (never stored).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from sae.auth import accounts, signin
from sae.auth.errors import InvalidAccount, InvalidCredentials, TooManyAttempts, UnknownToken
from sae.auth.models import ApiToken
from sae.auth.service import ROLES, revoke_token
from sae.console.format import fr_wait
from sae.console.routes import CsrfField, UserDep, check_csrf
from sae.console.security import require
from sae.console.web import ConsoleRoute, render
from sae.db import utcnow
from sae.deps import RuntimeDep, SessionDep

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _producers(text: str) -> list[str]:
    return [p.strip() for p in text.replace(";", ",").replace("\n", ",").split(",") if p.strip()]


# --- accounts (administrators) ----------------------------------------------------------------


@router.get("/console/comptes")
def users_page(request: Request, user: UserDep, session: SessionDep) -> Response:
    """Every account, and a form to create a local one."""
    require(user)
    return render(
        request,
        "users.html",
        {"nav": "comptes", "users": accounts.list_users(session), "roles": ROLES},
    )


@router.post("/console/comptes")
def create_user(
    request: Request,
    user: UserDep,
    session: SessionDep,
    csrf: CsrfField = "",
    identifiant: Annotated[str, Form()] = "",
    nom: Annotated[str, Form()] = "",
    courriel: Annotated[str, Form()] = "",
    role: Annotated[str, Form()] = "",
    services: Annotated[str, Form()] = "",
    nature: Annotated[str, Form()] = "person",
    mot_de_passe: Annotated[str, Form()] = "",
) -> Response:
    """Create a local account (with a password for a person who signs in to the console)."""
    check_csrf(request, csrf)
    require(user)
    producers = _producers(services)
    if role == "depositor" and not producers:
        raise InvalidAccount("a depositor needs at least one producing service")
    accounts.create_user(
        session,
        login=identifiant,
        role=role,
        producers=producers,
        kind=nature,
        password=mot_de_passe or None,
        display_name=nom,
        email=courriel,
        actor=user,
    )
    session.commit()
    return _see_other("/console/comptes")


@router.post("/console/comptes/{user_id}/etat")
def set_user_state(
    request: Request,
    user: UserDep,
    session: SessionDep,
    user_id: str,
    csrf: CsrfField = "",
    action: Annotated[str, Form()] = "",
) -> Response:
    """Disable (``desactiver``) or enable (``reactiver``) an account."""
    check_csrf(request, csrf)
    require(user)
    target = accounts.get_user(session, user_id)
    if action == "desactiver":
        if target.id == user.user_id:
            raise InvalidAccount("an administrator does not disable their own account")
        accounts.disable_user(session, target, actor=user)
    elif action == "reactiver":
        accounts.enable_user(session, target, actor=user)
    else:
        raise InvalidAccount(f"unknown action {action!r}")
    session.commit()
    return _see_other("/console/comptes")


@router.post("/console/comptes/{user_id}/mot-de-passe")
def set_user_password(
    request: Request,
    user: UserDep,
    session: SessionDep,
    user_id: str,
    csrf: CsrfField = "",
    mot_de_passe: Annotated[str, Form()] = "",
) -> Response:
    """Set a local account's password (a forgotten one)."""
    check_csrf(request, csrf)
    require(user)
    accounts.set_password(session, accounts.get_user(session, user_id), mot_de_passe, actor=user)
    session.commit()
    return _see_other("/console/comptes")


# --- tokens (everyone, their own) -------------------------------------------------------------


def _tokens_page(
    request: Request,
    user: UserDep,
    session: SessionDep,
    *,
    created: tuple[ApiToken, str] | None = None,
    status: int = 200,
    message: str | None = None,
) -> Response:
    rows = accounts.list_tokens(
        session, user_id=None if user.role == "admin" else (user.user_id or "-")
    )
    me = accounts.get_user(session, user.user_id) if user.user_id else None
    return render(
        request,
        "tokens.html",
        {
            "nav": "jetons",
            "rows": rows,
            "created": created,
            "account": me,
            "current_token": user.token_id,
            "message": message,
        },
        status=status,
    )


@router.get("/console/jetons")
def tokens_page(request: Request, user: UserDep, session: SessionDep) -> Response:
    """One's tokens (an administrator: every account's), their expiry and last use."""
    return _tokens_page(request, user, session)


@router.post("/console/jetons")
def create_token(
    request: Request,
    user: UserDep,
    session: SessionDep,
    csrf: CsrfField = "",
    libelle: Annotated[str, Form()] = "",
    duree: Annotated[str, Form()] = "90",
) -> Response:
    """A new token of one's own account; its secret is shown on the answer, once."""
    check_csrf(request, csrf)
    if user.user_id is None:
        raise InvalidAccount("this session has no account")
    owner = accounts.get_user(session, user.user_id)
    expires_at = None
    if duree.strip() and duree.strip() != "0":
        try:
            days = int(duree)
        except ValueError:
            raise InvalidAccount(f"duration {duree!r} is not a number of days") from None
        if not 1 <= days <= 3660:
            raise InvalidAccount("a token lasts 1 to 3660 days")
        expires_at = utcnow() + timedelta(days=days)
    made = accounts.create_token(
        session, user=owner, expires_at=expires_at, label=libelle, actor=user
    )
    session.commit()
    return _tokens_page(request, user, session, created=made, status=201)


@router.post("/console/jetons/{token_id}/revoquer")
def revoke(
    request: Request, user: UserDep, session: SessionDep, token_id: str, csrf: CsrfField = ""
) -> Response:
    """Revoke one's token (an administrator: any)."""
    check_csrf(request, csrf)
    token = session.get(ApiToken, token_id)
    if token is None or (user.role != "admin" and token.user_id != user.user_id):
        raise UnknownToken(f"no token {token_id}")
    revoke_token(session, token_id, actor=user)
    session.commit()
    return _see_other("/console/jetons")


@router.post("/console/mot-de-passe")
def change_own_password(
    request: Request,
    user: UserDep,
    session: SessionDep,
    runtime: RuntimeDep,
    csrf: CsrfField = "",
    actuel: Annotated[str, Form()] = "",
    nouveau: Annotated[str, Form()] = "",
) -> Response:
    """Change one's own password (local accounts), proving the current one (rate-limited as a
    sign-in)."""
    check_csrf(request, csrf)
    if user.user_id is None:
        raise InvalidAccount("this session has no account")
    try:
        signin.change_own_password(
            runtime.sessions,
            user.user_id,
            actuel,
            nouveau,
            address=request.client.host if request.client is not None else "",
            limits=signin.Limits.of(runtime.settings),
        )
    except InvalidCredentials:
        return _tokens_page(
            request, user, session, status=400, message="Le mot de passe actuel est incorrect."
        )
    except TooManyAttempts as exc:
        wait = int(exc.extra.get("retry_after", 60))
        response = _tokens_page(
            request,
            user,
            session,
            status=429,
            message=f"Trop de tentatives refusées pour ce compte. Réessayez dans {fr_wait(wait)}.",
        )
        response.headers["Retry-After"] = str(wait)
        return response
    return _tokens_page(request, user, session, message="Votre mot de passe a été changé.")
