"""Logging: configured once per process, a request id on every line, no secret in any line.

``configure_logging`` is called at the start of every process (``sae serve`` and each of its
workers, every CLI command, ``sae witness serve``): one handler on the root logger, writing to
stderr at ``SAE_LOG_LEVEL`` (default INFO for the servers; WARNING for the other commands,
whose output is for a person, unless the variable is set), as readable text or one JSON object
per line (``SAE_LOG_FORMAT``). Uvicorn's own loggers (its access log included) lose their
handlers and propagate to it, so that the whole process writes one format (``sae.process`` runs
uvicorn with ``log_config=None``).

While a request is served, :class:`RequestIdMiddleware` puts its id in a context variable that
:class:`RequestIdFilter` adds to every record (``request_id``), whichever logger wrote it, and
answers it in the ``X-Request-ID`` header: an operator follows one request from the reverse
proxy's log to SAE's. A sane incoming ``X-Request-ID`` (the proxy's) is kept, any other replaced.

Secrets: SAE never formats a token, a password or a key into a log message (``Principal.actor``
names a token by its id). The formatter still scrubs what looks like one — a ``sae_`` token, an
``Authorization`` value, a URL's ``user:password@``, the configured secrets — from the finished
line, traceback included, so that a mistake in a message or an exception's text cannot leak one.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sae.config import Settings

#: The id of the request being served by this task or thread (None outside a request).
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "sae_request_id", default=None
)
REQUEST_ID_HEADER = "X-Request-ID"
#: What an incoming request id may look like: short, printable, no spaces (a log line's field).
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")

#: What a secret looks like in a line: SAE's tokens, and any credential after a scheme.
_TOKEN = re.compile(r"sae_[A-Za-z0-9_-]{16,}")
_CREDENTIAL = re.compile(r"(?i)\b(bearer|basic)(\s+|%20|\+)[A-Za-z0-9._~+/=-]{8,}")
#: A URL's user information (``https://user:password@host``).
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@:]+:[^/\s@]+@")
REDACTED = "[redacted]"

_UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
#: The handler this module installed on the root logger (replaced by a new configuration).
_installed: logging.Handler | None = None


def request_id() -> str | None:
    """The id of the request this code serves, if any."""
    return REQUEST_ID.get()


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id`` (``-`` outside a request) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get() or "-"
        return True


class Redactor:
    """Scrubs tokens, credentials and the configured secrets out of a finished line."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so that a secret containing another is replaced whole.
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def __call__(self, line: str) -> str:
        for secret in self.secrets:
            if secret in line:
                line = line.replace(secret, REDACTED)
        line = _TOKEN.sub("sae_" + REDACTED, line)
        line = _URL_USERINFO.sub(lambda m: f"{m.group(1)}{REDACTED}@", line)
        return _CREDENTIAL.sub(lambda m: f"{m.group(1)} {REDACTED}", line)


class TextFormatter(logging.Formatter):
    """``time level logger [request id] message``, scrubbed."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s",
        )
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get() or "-"
        return self.redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, ``message``, ``request_id``
    (when serving a request), ``exception`` (a traceback), scrubbed."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None) or REQUEST_ID.get()
        if rid and rid != "-":
            doc["request_id"] = rid
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        return self.redact(json.dumps(doc, ensure_ascii=False))


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record comes (as ``logging.lastResort``):
    a command run in-process by a test runner swaps it, and must not leave a closed one here."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> Any:
        return sys.stderr


def _configured_secrets(settings: Settings) -> list[str]:
    values = (
        settings.metrics_token,
        settings.alert_smtp_password,
        settings.alert_webhook_secret,
        settings.tsa_password,
        settings.tsa_bearer_token,
        settings.ldap_service_password,
        settings.oidc_client_secret,
    )
    return [v.get_secret_value() for v in values if v is not None]


def configure_logging(
    settings: Settings, *, stream: Any = None, quiet_by_default: bool = False
) -> logging.Handler:
    """Configure this process's logging from the settings (again: replaces the last one).

    ``quiet_by_default``: WARNING unless ``SAE_LOG_LEVEL`` was set — for the commands, whose
    output is for a person at a terminal (the servers log at INFO by default). The chatty
    libraries stay at WARNING unless SAE_LOG_LEVEL=DEBUG asks for everything."""
    global _installed
    level = settings.log_level
    if quiet_by_default and "log_level" not in settings.model_fields_set:
        level = "WARNING"
    redact = Redactor(_configured_secrets(settings))
    formatter: logging.Formatter = (
        JsonFormatter(redact) if settings.log_format == "json" else TextFormatter(redact)
    )
    handler: logging.Handler = (
        logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    )
    handler.setFormatter(formatter)
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    if _installed is not None:
        root.removeHandler(_installed)
    root.addHandler(handler)
    root.setLevel(level)
    _installed = handler
    for name in _UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    # Libraries whose INFO and DEBUG lines are the wire (each request of the S3 and HTTP
    # clients, the multipart parser's steps): WARNING, INFO under SAE_LOG_LEVEL=DEBUG. SQL
    # statements never (their parameters are records' metadata): an operator asks the database.
    wire = logging.INFO if level == "DEBUG" else logging.WARNING
    for name in ("urllib3", "httpx", "httpcore", "multipart", "python_multipart", "asyncio"):
        logging.getLogger(name).setLevel(wire)
    logging.getLogger("sqlalchemy").setLevel(logging.WARNING)
    return handler


# --------------------------------------------------------------------------- request ids

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _incoming_id(scope: Scope) -> str | None:
    wanted = REQUEST_ID_HEADER.lower().encode()
    for name, value in scope.get("headers", ()):
        if name == wanted:
            try:
                text = value.decode("ascii")
            except UnicodeDecodeError:
                return None
            return text if _SANE_REQUEST_ID.fullmatch(text) else None
    return None


class RequestIdMiddleware:
    """Gives each HTTP request an id (the caller's when sane), for every line logged while it
    is served and in the response's ``X-Request-ID`` header.

    Plain ASGI, outermost (``sae.app`` wraps the whole middleware stack with it): streamed
    responses are not buffered, and a 500 written by the error middleware carries it too."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _incoming_id(scope) or uuid.uuid4().hex
        token = REQUEST_ID.set(rid)
        header = (REQUEST_ID_HEADER.lower().encode(), rid.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *(h for h in message.get("headers", ()) if h[0] != header[0]),
                    header,
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)
