"""HTTP routes of ingest: deposit a SIP, read a transfer and its ATR."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from starlette.background import BackgroundTask

from sae.auth.deps import require_role
from sae.auth.service import Principal
from sae.deps import RuntimeDep, SessionDep
from sae.errors import NotFound
from sae.fileio import TrailingDigest, write_all
from sae.ingest import service
from sae.ingest.deposit import ingest_and_commit
from sae.ingest.errors import NotAZip, Refusal, SipTooLarge
from sae.ingest.schemas import (
    FaultOut,
    JournalRef,
    TransferObjectOut,
    TransferOut,
    TransferReply,
    TransferUnitOut,
    WithdrawalIn,
    WithdrawalOut,
    WithdrawnCopy,
)
from sae.ingest.visibility import get_visible_transfer
from sae.journal.service import TransferLeaf, journal_ref
from sae.runtime import Runtime

router = APIRouter(tags=["transfers"])
log = logging.getLogger("sae.ingest")

ZIP_TYPES = {"application/zip", "application/x-zip-compressed", "application/octet-stream"}
XML = "application/xml"


#: The body is written to the spool file this many bytes at a time (one ``writev`` of the
#: chunks received meanwhile).
WRITE_BLOCK = 1024 * 1024


async def _spool(request: Request, runtime: Runtime) -> tuple[Path, TrailingDigest]:
    """Stream the request body to a private temporary file, refusing it past the size limit.

    Returns the file and its SHA-512 on the way: past 8 MiB a thread hashes what is written as
    it lands (no second read of a large SIP from the disk), without holding the upload back;
    the ingest starts as soon as the last byte is written and asks for the digest once it has
    stored the files, so that hashing the SIP and reading its files back share the two cores.
    A smaller SIP is hashed then, from the page cache. At most one block is held in memory.
    """
    limit = runtime.settings.max_sip_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise SipTooLarge(f"the SIP is {declared} bytes; the limit is {limit}")
    with runtime.sip_spool.file() as (fd, path):
        size = 0
        block: list[bytes] = []
        block_size = 0
        digest: TrailingDigest | None = None
        try:
            digest = TrailingDigest(fd)
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise SipTooLarge(f"the SIP exceeds the limit of {limit} bytes")
                block.append(chunk)
                block_size += len(chunk)
                if block_size >= WRITE_BLOCK:
                    _write_block(fd, block, block_size)
                    digest.advance(size)
                    block, block_size = [], 0
            _write_block(fd, block, block_size)
            # A kept spool file (runtime.sip_spool) may hold a longer upload: cut before the
            # digest reads to the end and the zip reader looks for the end of the archive.
            os.ftruncate(fd, size)
            digest.advance(size)
        except BaseException:
            if digest is not None:
                digest.abandon()
            raise
        finally:
            os.close(fd)
    return path, digest


#: The most buffers one ``writev`` takes (Linux's IOV_MAX).
_IOV_MAX = 1024


def _write_block(fd: int, chunks: list[bytes], size: int) -> None:
    """Write the chunks in one system call (without joining them), the rest if it fell short."""
    if len(chunks) > _IOV_MAX:  # a client sending tiny pieces: more than writev takes at once
        chunks = [b"".join(chunks)]
    if chunks and (written := os.writev(fd, chunks)) < size:
        write_all(fd, b"".join(chunks)[written:])


def _wants_xml(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return XML in accept or "text/xml" in accept


@router.post(
    "/transfers",
    status_code=201,
    response_model=TransferReply,
    responses={
        201: {"description": "Accepted: every object stored, catalogued and journaled."},
        400: {"description": "Refused: the SIP could not be read (ATR with ReplyCode KO)."},
        409: {"description": "This MessageIdentifier was already accepted."},
        422: {"description": "Refused: the SIP is invalid (ATR with ReplyCode KO)."},
    },
)
async def deposit_transfer(
    request: Request,
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(require_role("depositor"))],
) -> Response:
    """Deposit a SIP (zip: ``manifest.xml`` SEDA ArchiveTransfer at the root + files).

    Answers the ArchiveTransferReply as XML with ``Accept: application/xml``, else JSON. All or
    nothing: on refusal nothing of the transfer is stored; the refusal itself is recorded.
    """
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in ZIP_TYPES:
        raise NotAZip(f"send the SIP as application/zip, not {ctype or 'nothing'}")
    path, sip_digest = await _spool(request, runtime)
    try:
        outcome, journal = await run_in_threadpool(
            _ingest_and_refer, runtime, principal, path, sip_digest
        )
    except BaseException:
        sip_digest.abandon()  # when the ingest failed before asking for it
        path.unlink(missing_ok=True)
        raise
    response = _reply(request, outcome, journal)
    # Once the reply is sent: removing a large file takes a while (the filesystem frees and
    # may discard every block), and the depositor need not wait for it. A small one is kept
    # for a next deposit (sae.fileio.SpoolFiles).
    response.background = BackgroundTask(runtime.sip_spool.release, path)
    return response


def _ingest_and_refer(
    runtime: Runtime, principal: Principal, path: Path, sip_digest: TrailingDigest
) -> tuple[service.IngestOutcome, JournalRef]:
    """The ingest, then where its decisive leaf is: one trip to the thread pool, not two."""
    outcome = ingest_and_commit(runtime, principal, path, sip_digest)
    with runtime.reads() as session:  # one look-up: in autocommit
        return outcome, _journal_out(journal_ref(session, outcome.transfer.id, outcome.leaf_index))


def _journal_out(ref: TransferLeaf) -> JournalRef:
    """The API's shape of where a transfer's decision stands in the journal."""
    if ref.tree_size is None or ref.root_hash is None or ref.timestamp is None:
        return JournalRef(leaf_index=ref.leaf_index)
    return JournalRef(
        leaf_index=ref.leaf_index,
        tree_size=ref.tree_size,
        root_hash=ref.root_hash.hex(),
        timestamp=ref.timestamp.isoformat().replace("+00:00", "Z"),
        head_url=f"/api/v1/journal/heads/{ref.tree_size}",
    )


_REFUSAL_STATUS = {
    Refusal.UNREADABLE: 400,
    Refusal.INVALID: 422,
    Refusal.STORAGE_UNAVAILABLE: 503,
}


def _reply(
    request: Request, outcome: service.IngestOutcome, journal: JournalRef | None = None
) -> Response:
    transfer = outcome.transfer
    headers = {"Location": f"/api/v1/transfers/{transfer.id}"}
    status = 201 if outcome.refusal is None else _REFUSAL_STATUS[outcome.refusal]
    if outcome.refusal is Refusal.STORAGE_UNAVAILABLE:
        # Not the SIP's fault: an offer failed. Nothing was kept; the same SIP may be sent again.
        headers["Retry-After"] = "60"
    if _wants_xml(request):
        return Response(outcome.atr, status_code=status, media_type=XML, headers=headers)
    body = TransferReply(
        transfer_id=transfer.id,
        status=transfer.status,
        atr_url=f"/api/v1/transfers/{transfer.id}/atr",
        message_identifier=transfer.message_identifier,
        units=[TransferUnitOut(id=u.id, sip_id=u.sip_id, title=u.title) for u in outcome.units],
        objects=[
            TransferObjectOut(
                id=o.id,
                sip_id=o.sip_id,
                sha512=o.sha512,
                size=o.size,
                mime_type=o.mime_type,
                format_puid=o.format_puid,
                url=f"/api/v1/objects/{o.id}",
            )
            for o in outcome.objects
        ],
        warnings=[FaultOut(**w) for w in transfer.warnings],
        errors=[FaultOut(**e) for e in transfer.errors],
        journal=journal,
    )
    return Response(
        body.model_dump_json(), status_code=status, media_type="application/json", headers=headers
    )


TransferReader = Annotated[Principal, Depends(require_role("depositor", "archivist"))]


@router.get("/transfers/{transfer_id}", response_model=TransferOut)
def get_transfer(transfer_id: str, session: SessionDep, principal: TransferReader) -> TransferOut:
    """A transfer's status, counts and errors (depositors see their own only)."""
    t = get_visible_transfer(session, principal, transfer_id)
    return TransferOut(
        id=t.id,
        status=t.status,
        message_identifier=t.message_identifier,
        transferring_agency=t.transferring_agency,
        archival_agency=t.archival_agency,
        producer=t.producer,
        seda_version=t.seda_version,
        received_at=t.received_at,
        completed_at=t.completed_at,
        sip_size=t.sip_size,
        sip_sha512=t.sip_sha512,
        unit_count=t.unit_count,
        object_count=t.object_count,
        total_bytes=t.total_bytes,
        atr_url=f"/api/v1/transfers/{t.id}/atr",
        errors=[FaultOut(**e) for e in t.errors],
        warnings=[FaultOut(**w) for w in t.warnings],
        journal=_journal_out(journal_ref(session, t.id)),
    )


@router.get(
    "/transfers/{transfer_id}/atr",
    response_class=Response,
    responses={200: {"content": {XML: {}}, "description": "The ArchiveTransferReply."}},
)
def get_atr(transfer_id: str, session: SessionDep, principal: TransferReader) -> Response:
    """The transfer's ArchiveTransferReply (SEDA XML)."""
    t = get_visible_transfer(session, principal, transfer_id)
    if t.atr is None:
        raise NotFound(f"transfer {transfer_id} has no reply yet")
    digest = hashlib.sha512(t.atr).hexdigest()
    return Response(t.atr, media_type=XML, headers={"ETag": f'"{digest[:32]}"'})


@router.post("/transfers/{transfer_id}/withdrawal", response_model=WithdrawalOut)
def withdraw(
    transfer_id: str,
    body: WithdrawalIn,
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(require_role("archivist"))],
) -> WithdrawalOut:
    """Withdraw a transfer deposited by mistake, while its copies are in quarantine: every copy
    deleted from every offer, units and objects marked ``withdrawn``, journaled with the
    reason. 409 ``transfer.withdrawal_refused`` past the window (then only a disposal can
    remove them), under a legal hold, on a disposal list, or when units of another transfer
    were attached under its units; 503 ``transfer.withdrawal_incomplete`` when an offer failed
    half-way (ask again to finish)."""
    from sae.ingest.withdrawal import withdraw_transfer

    done = withdraw_transfer(
        runtime.sessions, runtime.offer_set.offers, principal, transfer_id, body.reason
    )
    return WithdrawalOut(
        transfer_id=done.transfer_id,
        status=done.status,
        withdrawn_at=done.withdrawn_at,
        units=done.units,
        objects=done.objects,
        copies_deleted=[WithdrawnCopy(**c) for c in done.copies_deleted],
    )
