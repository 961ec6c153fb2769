"""Security headers on every HTTP response, and CORS closed unless configured.

Every answer (API, console, errors, health) carries ``X-Content-Type-Options: nosniff``,
``X-Frame-Options: DENY``, a ``Referrer-Policy`` and a ``Content-Security-Policy`` with
``frame-ancestors 'none'`` and no inline script anywhere (a route that sets its own, the
console's, keeps it). The interactive API documentation (``/docs``) is the one page that loads
scripts: Swagger UI from its CDN and its start-up script from SAE (``/docs/swagger-init.js``),
never an inline one.

CORS: a browser page from another origin may call the API only when its origin is listed in
``SAE_CORS_ORIGINS`` (bearer tokens only: no cookie is ever accepted cross-origin). Empty (the
default): no CORS header is ever sent, so browsers refuse every cross-origin call.
"""

from __future__ import annotations

from typing import Any

from starlette.middleware.cors import CORSMiddleware
from starlette.responses import HTMLResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Answers that are data, not pages: nothing may run, load or frame them.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
SWAGGER = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5"
DOCS_CSP = (
    f"default-src 'none'; script-src 'self' {SWAGGER}/; style-src {SWAGGER}/; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'none'"
)
HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)


class SecurityHeadersMiddleware:
    """Plain ASGI: adds the headers a response lacks (streamed bodies are not buffered), and
    puts the CORS middleware of ``SAE_CORS_ORIGINS`` in front of the app when it is set."""

    def __init__(self, app: ASGIApp, owner: Any) -> None:
        self.app = app
        self.owner = owner  # the FastAPI app: its runtime (settings) is known at startup
        self._inner: ASGIApp | None = None

    def _app(self) -> ASGIApp:
        if self._inner is None:
            runtime = getattr(self.owner.state, "runtime", None)
            origins: list[str] = list(runtime.settings.cors_origins) if runtime else []
            if not origins:
                return self.app  # not cached: the runtime may not be open yet
            self._inner = CORSMiddleware(
                self.app,
                allow_origins=origins,
                allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                allow_headers=["Authorization", "Content-Type", "Accept", "X-Request-ID"],
                expose_headers=["X-Request-ID", "Retry-After", "Content-Disposition"],
                allow_credentials=False,
                max_age=600,
            )
        return self._inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = DOCS_CSP if scope.get("path") == "/docs" else API_CSP

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                for name, value in HEADERS:
                    if name not in present:
                        headers.append((name, value))
                if b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", csp.encode()))
                message["headers"] = headers
            await send(message)

        await self._app()(scope, receive, send_with_headers)


DOCS_HTML = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>SAE — API</title>
<link rel="stylesheet" href="{SWAGGER}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{SWAGGER}/swagger-ui-bundle.js"></script>
<script src="/docs/swagger-init.js"></script>
</body>
</html>
"""

DOCS_INIT_JS = """window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
});
"""


def docs_page() -> HTMLResponse:
    """``/docs``: Swagger UI, without inline script."""
    return HTMLResponse(DOCS_HTML, headers={"Cache-Control": "no-store"})


def docs_init() -> Response:
    """``/docs/swagger-init.js``: Swagger UI's start-up, a file so the CSP allows no inline."""
    return Response(
        DOCS_INIT_JS,
        media_type="text/javascript",
        headers={"Cache-Control": "public, max-age=3600"},
    )
