"""HTTP route serving an object's bytes."""

from __future__ import annotations

import base64

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, StreamingResponse
from starlette.background import BackgroundTask

from sae.access.reading import open_for_reading
from sae.auth.deps import PrincipalDep
from sae.deps import RuntimeDep
from sae.downloads import download_headers

router = APIRouter(tags=["access"])


@router.get(
    "/objects/{object_id}/content",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}, "description": "The bytes."}},
)
async def get_content(
    object_id: str, runtime: RuntimeDep, principal: PrincipalDep
) -> StreamingResponse:
    """The object's bytes, streamed from the first healthy copy, SHA-512 checked on the way.

    ``Repr-Digest`` (RFC 9530) and ``Digest`` carry the SHA-512. A mismatch found at the end
    of a large stream aborts the response (the client sees a truncated transfer, never a
    complete damaged file) and is journaled as ``integrity.failed``.
    """
    stream = await run_in_threadpool(
        open_for_reading,
        runtime.sessions,
        runtime.offer_set.offers,
        principal,
        object_id,
    )
    obj = stream.obj
    assert obj.sha512 is not None
    b64 = base64.b64encode(bytes.fromhex(obj.sha512)).decode()
    headers = download_headers(
        obj.filename or obj.sip_id,
        {
            "Repr-Digest": f"sha-512=:{b64}:",
            "Digest": f"sha-512={b64}",
            "Content-Length": str(obj.size),
        },
    )
    return StreamingResponse(
        iter(stream), media_type=obj.mime_type or "application/octet-stream", headers=headers
    )


@router.get(
    "/units/{unit_id}/dip",
    response_class=FileResponse,
    responses={200: {"content": {"application/zip": {}}, "description": "The DIP (zip)."}},
)
async def get_dip(unit_id: str, runtime: RuntimeDep, principal: PrincipalDep) -> FileResponse:
    """The DIP of a unit: a SEDA ArchiveDeliveryRequestReply manifest (each unit's Content as
    received), the objects of the unit and its descendants (SHA-512 checked while copied), and
    a proof bundle per object under ``proofs/``. Journaled as ``access.dip_exported``.
    """
    from sae.access.dip import build_dip

    dip = await run_in_threadpool(
        build_dip,
        runtime.sessions,
        runtime.settings,
        runtime.offer_set.offers,
        principal,
        unit_id,
    )
    return FileResponse(
        dip.path,
        media_type="application/zip",
        filename=f"dip-{unit_id}.zip",
        background=BackgroundTask(dip.path.unlink, missing_ok=True),
    )
