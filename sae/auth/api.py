"""HTTP routes of accounts and tokens: ``/auth/…`` (each caller, for itself) and ``/users``
(administrators)."""

from __future__ import annotations

from datetime import UTC, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.orm import Session

from sae.auth import accounts, signin
from sae.auth.deps import PrincipalDep, require_role
from sae.auth.errors import InvalidAccount, InvalidCredentials, RoleNotAllowed, UnknownToken
from sae.auth.models import ApiToken, User
from sae.auth.schemas import (
    MeOut,
    OwnPasswordIn,
    PasswordIn,
    TokenCreated,
    TokenIn,
    TokenOut,
    UserIn,
    UserOut,
    UserPatch,
)
from sae.auth.service import Principal, revoke_token
from sae.db import utcnow
from sae.deps import RuntimeDep, SessionDep

router = APIRouter(tags=["accounts"])
Admin = Annotated[Principal, Depends(require_role())]


def _own_user(session: Session, principal: Principal) -> User:
    if principal.user_id is None:
        raise InvalidAccount("this caller has no account")
    return accounts.get_user(session, principal.user_id)


@router.get("/auth/me", response_model=MeOut)
def me(session: SessionDep, principal: PrincipalDep) -> MeOut:
    """Who the caller is: its account, the token used, role and producers."""
    user = session.get(User, principal.user_id) if principal.user_id else None
    return MeOut(
        user=UserOut.of(user) if user is not None else None,
        token_id=principal.token_id,
        role=principal.role,
        producers=list(principal.producers),
    )


@router.get("/auth/tokens", response_model=list[TokenOut])
def list_tokens(
    session: SessionDep,
    principal: PrincipalDep,
    user_id: str | None = None,
    include_revoked: bool = False,
) -> list[TokenOut]:
    """Tokens, newest first: one's own; an administrator's, every account's (or ``user_id``'s)."""
    if principal.role != "admin":
        if user_id is not None and user_id != principal.user_id:
            raise RoleNotAllowed("only an administrator lists the tokens of another account")
        user_id = principal.user_id or "-"
    rows = accounts.list_tokens(session, user_id=user_id, include_revoked=include_revoked)
    return [TokenOut.of(token, user) for token, user in rows]


@router.post("/auth/tokens", status_code=201, response_model=TokenCreated)
def create_token(session: SessionDep, principal: PrincipalDep, body: TokenIn) -> TokenCreated:
    """A new token of one's own account (an administrator: of ``user_id``'s); the secret is in
    the answer only."""
    if body.user_id is not None and body.user_id != principal.user_id:
        if principal.role != "admin":
            raise RoleNotAllowed("only an administrator creates tokens for another account")
        user = accounts.get_user(session, body.user_id)
    else:
        user = _own_user(session, principal)
    expires_at = body.expires_at
    if expires_at is not None and expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)
    if body.expires_in_days is not None:
        if expires_at is not None:
            raise InvalidAccount("give expires_at or expires_in_days, not both")
        expires_at = utcnow() + timedelta(days=body.expires_in_days)
    token, secret = accounts.create_token(
        session, user=user, expires_at=expires_at, label=body.label, actor=principal
    )
    session.commit()
    return TokenCreated(**TokenOut.of(token, user).model_dump(), token=secret)


@router.delete("/auth/tokens/{token_id}", response_model=TokenOut)
def revoke(session: SessionDep, principal: PrincipalDep, token_id: str) -> TokenOut:
    """Revoke a token: one's own; an administrator, any (another's answers 404 to others)."""
    token = session.get(ApiToken, token_id)
    if token is None or (principal.role != "admin" and token.user_id != principal.user_id):
        raise UnknownToken(f"no token {token_id}")
    revoke_token(session, token_id, actor=principal)
    session.commit()
    return TokenOut.of(token, accounts.get_user(session, token.user_id))


@router.put("/auth/password", status_code=204)
def change_own_password(
    request: Request, runtime: RuntimeDep, principal: PrincipalDep, body: OwnPasswordIn
) -> None:
    """Change one's own password (local accounts), proving the current one; a wrong one counts
    as a refused sign-in (the same rate limit: 429 past it)."""
    if principal.user_id is None:
        raise InvalidAccount("this caller has no account")
    try:
        signin.change_own_password(
            runtime.sessions,
            principal.user_id,
            body.current_password,
            body.new_password,
            address=request.client.host if request.client is not None else "",
            limits=signin.Limits.of(runtime.settings),
        )
    except InvalidCredentials:
        raise InvalidAccount("the current password is wrong") from None


@router.get("/users", response_model=list[UserOut])
def list_users(
    session: SessionDep, principal: Admin, include_disabled: Annotated[bool, Query()] = True
) -> list[UserOut]:
    """Every account, by login (administrators)."""
    return [UserOut.of(u) for u in accounts.list_users(session, include_disabled=include_disabled)]


@router.post("/users", status_code=201, response_model=UserOut)
def create_user(session: SessionDep, principal: Admin, body: UserIn) -> UserOut:
    """Create a local account (administrators); LDAP and OIDC accounts appear at sign-in."""
    user = accounts.create_user(
        session,
        login=body.login,
        role=body.role,
        producers=body.producers,
        kind=body.kind,
        password=body.password,
        display_name=body.display_name,
        email=body.email,
        actor=principal,
    )
    session.commit()
    return UserOut.of(user)


@router.get("/users/{user_id}", response_model=UserOut)
def get_user(session: SessionDep, principal: Admin, user_id: str) -> UserOut:
    """One account (administrators)."""
    return UserOut.of(accounts.get_user(session, user_id))


@router.patch("/users/{user_id}", response_model=UserOut)
def update_user(session: SessionDep, principal: Admin, user_id: str, body: UserPatch) -> UserOut:
    """Change an account's role, producers, names; disable or enable it (administrators)."""
    user = accounts.get_user(session, user_id)
    if body.disabled is True and user.id == principal.user_id:
        raise InvalidAccount("an administrator does not disable their own account")
    if any(v is not None for v in (body.role, body.producers, body.display_name, body.email)):
        accounts.update_user(
            session,
            user,
            role=body.role,
            producers=body.producers,
            display_name=body.display_name,
            email=body.email,
            actor=principal,
        )
    if body.disabled is True:
        accounts.disable_user(session, user, actor=principal)
    elif body.disabled is False:
        accounts.enable_user(session, user, actor=principal)
    session.commit()
    return UserOut.of(user)


@router.put("/users/{user_id}/password", status_code=204)
def set_password(session: SessionDep, principal: Admin, user_id: str, body: PasswordIn) -> None:
    """Set a local account's password (administrators): for a forgotten one."""
    user = accounts.get_user(session, user_id)
    accounts.set_password(session, user, body.password, actor=principal)
    session.commit()
