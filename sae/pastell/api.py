"""The as@lae REST routes Pastell's connector calls, under ``$SAE_PASTELL_PREFIX``.

Thin: each route reads what the connector really sends (Basic auth with the hex SHA-256 of the
password, multipart parts whose content types vary, ``//`` in paths, ``urlencode``d or raw
ACK/ATR segments) and calls :mod:`sae.pastell.service`. Success is exactly HTTP 200 with a
truthy JSON body (or the XML reply); anything else is a problem+json error.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import IO, Annotated, Any
from urllib.parse import parse_qs, unquote_plus

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from starlette.datastructures import FormData, UploadFile
from starlette.types import ASGIApp, Receive, Scope, Send

from sae import __version__
from sae.auth import signin
from sae.auth.models import User
from sae.deps import RuntimeDep
from sae.pastell import service
from sae.pastell.errors import (
    PastellBadMessage,
    PastellNotFound,
    PastellTooLarge,
    PastellUnauthorized,
)
from sae.runtime import Runtime

router = APIRouter(tags=["pastell"])

XML = "application/xml"
#: Room for the bordereau and the multipart framing beside the archive itself.
_FORM_MARGIN = 256 * 1024 * 1024


def _authenticate(runtime: Runtime, header: str, address: str) -> User:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        raise PastellUnauthorized("send HTTP Basic credentials (the connector's login/password)")
    try:
        login, sep, secret = (
            base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        )
    except (binascii.Error, UnicodeDecodeError):
        raise PastellUnauthorized("malformed Basic credentials") from None
    if not sep or not login:
        raise PastellUnauthorized("malformed Basic credentials")
    login = login.strip().casefold()  # as accounts store it: no way round the throttle
    return service.sign_in(
        runtime.sessions,
        login,
        secret,
        address=address,
        limits=signin.Limits.of(runtime.settings),
        recent=runtime.verified_secrets,
    )


async def pastell_account(request: Request, runtime: RuntimeDep) -> User:
    """The Pastell account of the request (argon2id: verified in a thread)."""
    header = request.headers.get("authorization", "")
    address = request.client.host if request.client is not None else ""
    return await run_in_threadpool(_authenticate, runtime, header, address)


AccountDep = Annotated[User, Depends(pastell_account)]


async def _form(request: Request, runtime: Runtime) -> FormData:
    declared = request.headers.get("content-length")
    limit = runtime.settings.max_sip_bytes + _FORM_MARGIN
    if declared and declared.isdigit() and int(declared) > limit:
        raise PastellTooLarge(f"the request is {declared} bytes; the limit is {limit}")
    try:
        return await request.form(max_files=8, max_fields=32)
    except Exception as error:  # starlette's MultiPartException / a malformed body
        raise PastellBadMessage(f"the request body is not a readable form: {error}") from None


def _field(form: FormData, name: str) -> str | UploadFile | None:
    """A field, also under PHP's array name (``name[]``)."""
    value = form.get(name)
    if value is None:
        value = form.get(name + "[]")
    return value


def _text(form: FormData, name: str) -> str | None:
    value = _field(form, name)
    if isinstance(value, UploadFile):
        data = value.file.read(4096)
        value.file.seek(0)
        return data.decode("utf-8", "replace").strip()
    return value.strip() if value is not None else None


def _file(form: FormData, name: str) -> IO[bytes] | None:
    value = _field(form, name)
    if isinstance(value, UploadFile):
        return value.file
    if isinstance(value, str):  # a client that sent the part without a filename
        import io

        return io.BytesIO(value.encode("utf-8"))
    return None


def _int(form: FormData, name: str) -> int:
    value = _text(form, name)
    if value is None or not re.fullmatch(r"[0-9]{1,9}", value):
        raise PastellBadMessage(f"the field {name} must be a positive integer")
    return int(value)


@router.get("/ping")
def ping() -> JSONResponse:
    """Pastell's "Tester la connexion (réseau)": 200 and a truthy JSON string."""
    return JSONResponse("webservices as@lae accessibles (SAE)")


@router.get("/versions")
def versions(account: AccountDep) -> JSONResponse:
    """Pastell's "Tester la connexion (authentification)": 401 on bad credentials."""
    return JSONResponse(
        {"application": "SAE", "denomination": "SAE (compatible as@lae)", "version": __version__}
    )


@router.post("/sedaMessages")
async def seda_messages(request: Request, runtime: RuntimeDep, account: AccountDep) -> JSONResponse:
    """A transfer sent in one go (``seda_message`` + ``attachments``), or the opening of a
    chunked upload (``seda_message`` + ``send_chunked_attachments=true``)."""
    form = await _form(request, runtime)
    try:
        bordereau_file = _file(form, "seda_message")
        if bordereau_file is None:
            raise PastellBadMessage("send the bordereau as the 'seda_message' part")
        limit = runtime.settings.max_manifest_bytes
        bordereau = await run_in_threadpool(bordereau_file.read, limit + 1)
        if len(bordereau) > limit:
            raise PastellTooLarge(f"the bordereau exceeds {limit} bytes")
        chunked = (_text(form, "send_chunked_attachments") or "").lower() in ("true", "1", "on")
        received = await run_in_threadpool(
            service.receive,
            runtime,
            account,
            bordereau,
            None if chunked else _file(form, "attachments"),
            chunked=chunked,
        )
    finally:
        await form.close()
    if received.chunk_session is not None:
        return JSONResponse(
            {
                "chunk_session_identifier": received.chunk_session,
                "chunk_security_identifier": received.chunk_security,
            }
        )
    _poke(runtime)
    return JSONResponse(
        {
            "status": "ok",
            "message": "Transfert reçu ; il sera traité sous peu.",
            "transfer_identifier": received.identifier,
        }
    )


def _poke(runtime: Runtime) -> None:
    if runtime.pastell_worker is not None:
        runtime.pastell_worker.poke()


@router.post("/sedaAttachmentsChunkFiles")
async def chunk_files(request: Request, runtime: RuntimeDep, account: AccountDep) -> JSONResponse:
    """One chunk (1-based ``chunk_index``, in order); the last one completes the transfer."""
    form = await _form(request, runtime)
    try:
        content = _file(form, "chunk_content")
        if content is None:
            raise PastellBadMessage("send the chunk as the 'chunk_content' part")
        chunk = service.Chunk(
            session_identifier=_text(form, "session_identifier") or "",
            security_identifier=_text(form, "security_identifier") or "",
            number_of_chunks=_int(form, "number_of_chunks"),
            chunk_index=_int(form, "chunk_index"),
        )
        last = await run_in_threadpool(service.receive_chunk, runtime, account, chunk, content)
    finally:
        await form.close()
    if last:
        _poke(runtime)
    return JSONResponse({"status": "ok", "chunk_index": chunk.chunk_index, "complete": last})


_KINDS = ("Acknowledgement", "ArchiveTransferReply")


def _segments(rest: str) -> dict[str, str]:
    """``sequence:X/message:Y/originOrganizationIdentification:AG/originMessageIdentifier:ID``:
    each segment split at its first ``:``, the value decoded as PHP's ``urlencode`` wrote it
    (``+`` is a space). A path encoded as a whole (``%3A``, ``%2F``) is decoded first."""
    if ":" not in rest:
        rest = unquote_plus(rest)
        return {
            key: value
            for key, _, value in (part.partition(":") for part in rest.split("/") if part)
        }
    found: dict[str, str] = {}
    for part in rest.split("/"):
        if not part:
            continue
        key, _, value = part.partition(":")
        found[unquote_plus(key)] = unquote_plus(value)
    return found


def _reply(runtime: Runtime, account: User, fields: dict[str, str]) -> Response:
    sequence = fields.get("sequence")
    kind = fields.get("message")
    agency = fields.get("originOrganizationIdentification")
    identifier = fields.get("originMessageIdentifier")
    if sequence != "ArchiveTransfer" or kind not in _KINDS or not agency or identifier is None:
        raise PastellNotFound(
            "ask for sequence:ArchiveTransfer/message:Acknowledgement|ArchiveTransferReply/"
            "originOrganizationIdentification:…/originMessageIdentifier:…"
        )
    document = service.reply(runtime, account, kind, agency, identifier)
    return Response(document, media_type=XML)


@router.get("/sedaMessages", response_class=Response)
def seda_message_query(request: Request, runtime: RuntimeDep, account: AccountDep) -> Response:
    """The ACK or ATR asked in the query form (``?sequence=…&message=…&…``)."""
    query = parse_qs(request.scope.get("query_string", b"").decode("latin-1"))
    return _reply(runtime, account, {k: v[0] for k, v in query.items() if v})


@router.get("/sedaMessages/{rest:path}", response_class=Response)
def seda_message(request: Request, runtime: RuntimeDep, account: AccountDep) -> Response:
    """The ACK or ATR of one of the account's transfers (200 only once it exists)."""
    raw = request.scope.get("raw_path") or request.url.path.encode()
    path = raw.decode("latin-1")
    rest = path[path.index("/sedaMessages/") + len("/sedaMessages/") :]
    return _reply(runtime, account, _segments(rest))


class CollapseSlashes:
    """ASGI middleware: ``//`` in a path under ``prefix`` is one ``/`` (the connector joins its
    URL and paths as strings, so ``https://sae/restservices/`` gives ``…/restservices//ping``)."""

    def __init__(self, app: ASGIApp, prefix: str) -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and "//" in scope.get("path", ""):
            path = re.sub(r"/{2,}", "/", scope["path"])
            if path == self.prefix or path.startswith(self.prefix + "/"):
                scope = dict(scope)
                scope["path"] = path
                raw: Any = scope.get("raw_path")
                if isinstance(raw, bytes):
                    scope["raw_path"] = re.sub(rb"/{2,}", b"/", raw)
        await self.app(scope, receive, send)
