"""API shapes of accounts and tokens (never a password, a hash or a stored token)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from sae.auth.models import ApiToken, User

Role = Literal["admin", "archivist", "auditor", "depositor", "reader"]


class UserOut(BaseModel):
    id: str
    login: str
    display_name: str
    email: str
    kind: str
    role: str
    producers: list[str]
    source: str
    has_password: bool
    disabled_at: datetime | None
    created_at: datetime
    last_login_at: datetime | None

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(
            id=user.id,
            login=user.login,
            display_name=user.display_name,
            email=user.email,
            kind=user.kind,
            role=user.role,
            producers=list(user.producers),
            source=user.source,
            has_password=user.password_hash is not None,
            disabled_at=user.disabled_at,
            created_at=user.created_at,
            last_login_at=user.last_login_at,
        )


class UserIn(BaseModel):
    """``POST /users``: a local account (a password to sign in to the console, or none for a
    service that only holds tokens)."""

    login: str = Field(min_length=1, max_length=255)
    role: Role
    producers: list[str] = Field(default_factory=list)
    kind: Literal["person", "service"] = "person"
    display_name: str = Field(default="", max_length=255)
    email: str = Field(default="", max_length=255)
    password: str | None = Field(default=None, max_length=1024)


class UserPatch(BaseModel):
    """``PATCH /users/{id}``: what is given changes; ``disabled`` true disables, false enables."""

    role: Role | None = None
    producers: list[str] | None = None
    display_name: str | None = Field(default=None, max_length=255)
    email: str | None = Field(default=None, max_length=255)
    disabled: bool | None = None


class PasswordIn(BaseModel):
    """``PUT /users/{id}/password`` (an administrator sets it)."""

    password: str = Field(max_length=1024)


class OwnPasswordIn(BaseModel):
    """``PUT /auth/password``: one's own password, the current one proving it is oneself."""

    current_password: str = Field(max_length=1024)
    new_password: str = Field(max_length=1024)


class TokenOut(BaseModel):
    id: str
    user_id: str
    login: str
    label: str
    role: str
    producers: list[str]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    session: bool

    @classmethod
    def of(cls, token: ApiToken, user: User) -> TokenOut:
        return cls(
            id=token.id,
            user_id=user.id,
            login=user.login,
            label=token.label,
            role=token.role,
            producers=list(token.producers),
            created_at=token.created_at,
            expires_at=token.expires_at,
            last_used_at=token.last_used_at,
            revoked_at=token.revoked_at,
            session=token.idle_minutes is not None,
        )


class TokenIn(BaseModel):
    """``POST /auth/tokens``: a token of one's own account (an administrator: of ``user_id``)."""

    label: str = Field(default="", max_length=255)
    expires_at: datetime | None = None
    expires_in_days: int | None = Field(default=None, ge=1, le=3660)
    user_id: str | None = None


class TokenCreated(TokenOut):
    """The new token, with its secret: shown this once, never stored."""

    token: str


class MeOut(BaseModel):
    user: UserOut | None
    token_id: str
    role: str
    producers: list[str]
