"""The French web console for the archivist and the auditor (server-rendered, no script).

``console_router`` holds every page under ``/console`` and the redirect of ``/`` to it;
``sae.app.create_app`` includes it.
"""

from fastapi import APIRouter

from sae.console.access import router as access_router
from sae.console.accounts import router as accounts_router
from sae.console.contracts import router as contracts_router
from sae.console.disposal import router as disposal_router
from sae.console.oidc import router as oidc_router
from sae.console.retention import router as retention_router
from sae.console.routes import fallback, router


def _console_router() -> APIRouter:
    combined = APIRouter(include_in_schema=False)
    combined.include_router(router)
    combined.include_router(disposal_router)
    combined.include_router(accounts_router)
    combined.include_router(oidc_router)
    combined.include_router(contracts_router)
    combined.include_router(retention_router)
    combined.include_router(access_router)
    # The catch-all French 404 must come after every real page.
    combined.include_router(fallback)
    return combined


console_router = _console_router()

__all__ = ["console_router"]
