"""Authentication for HTTP routes: ``Authorization: Bearer <token>`` and role checks."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from sae.auth.errors import MissingToken, RoleNotAllowed
from sae.auth.service import Principal, authenticate_and_record
from sae.deps import RuntimeDep

log = logging.getLogger("sae.auth")


def current_principal(request: Request, runtime: RuntimeDep) -> Principal:
    """The caller, from its bearer token (401 when missing or unknown)."""
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise MissingToken("send 'Authorization: Bearer <token>'")
    principal = authenticate_and_record(runtime.sessions, secret.strip(), reads=runtime.reads)
    request.state.principal = principal
    # Who made the request, by the token's id (never its secret): with the request id, an
    # operator ties an access-log line to a caller.
    log.debug("auth.ok %s %s as %s", request.method, request.url.path, principal.actor)
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def require_role(*roles: str) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency that lets through only the given roles (admin always passes)."""
    allowed = set(roles) | {"admin"}

    async def check(principal: PrincipalDep) -> Principal:  # no I/O: not worth a thread
        if principal.role not in allowed:
            raise RoleNotAllowed(
                f"role {principal.role!r} may not do this; allowed: {', '.join(sorted(allowed))}"
            )
        return principal

    return check
