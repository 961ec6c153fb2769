"""FastAPI dependencies shared by every router: the runtime and the request's session.

The session is opened per request and rolled back at the end unless the route committed:
mutating routes commit explicitly *before* answering, so that a 2xx is never sent for work that
is not durable.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from sae.runtime import Runtime


async def get_runtime(request: Request) -> Runtime:
    """The process's runtime. ``async`` although it awaits nothing: FastAPI runs a plain
    ``def`` dependency in its thread pool, a round trip per request for a dictionary lookup."""
    runtime: Runtime = request.app.state.runtime
    return runtime


def get_session(runtime: Annotated[Runtime, Depends(get_runtime)]) -> Iterator[Session]:
    session = runtime.sessions()
    try:
        yield session
    finally:
        session.rollback()
        session.close()


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
SessionDep = Annotated[Session, Depends(get_session)]
