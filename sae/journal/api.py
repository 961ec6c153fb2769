"""HTTP routes of the journal: tree heads, consistency proofs, events, object proof bundles."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from sqlalchemy.orm import Session

from sae.auth.deps import require_role
from sae.auth.service import Principal
from sae.deps import RuntimeDep, SessionDep
from sae.downloads import attachment
from sae.journal import proofs, sealing, service
from sae.journal.errors import HeadNotFound, InvalidProofRequest, JournalError
from sae.journal.keys import load_journal_keys
from sae.journal.models import Event, TreeHead
from sae.journal.notekey import load_note_key
from sae.journal.schemas import ConsistencyOut, EventOut, EventPage, HeadOut, head_out
from sae.journal.witnessing import witnessed_note
from sae.runtime import Runtime

log = logging.getLogger("sae.journal")
router = APIRouter(tags=["journal"])

AuditorDep = Annotated[Principal, Depends(require_role("auditor", "archivist"))]
MAX_SIZE = 2**62  # beyond any real log; keeps database integers in range


def seal_now(runtime: Runtime) -> TreeHead | None:
    """Seal a head over every committed leaf, in its own transaction (any instance may)."""
    return sealing.seal_now(runtime.sessions, runtime.settings, wait=True)


def _size(value: str) -> int:
    # Sizes come as strings so that a malformed one is a 400 of ours, after authentication.
    try:
        size = int(value)
    except ValueError:
        raise InvalidProofRequest(f"{value[:40]!r} is not a tree size") from None
    if not 0 <= size <= MAX_SIZE:
        raise InvalidProofRequest(f"tree sizes are between 0 and {MAX_SIZE}")
    return size


@router.get("/journal/head", response_model=HeadOut)
def get_head(_: AuditorDep, session: SessionDep, runtime: RuntimeDep) -> HeadOut:
    """The latest signed tree head (sealed now if leaves arrived since the last one)."""
    head = service.latest_head(session)
    if head is None or head.tree_size < service.tree_size(session):
        seal_now(runtime)
        session.rollback()  # a fresh snapshot: see the head just committed
        head = service.latest_head(session)
    if head is None:
        raise HeadNotFound("the journal is empty: no tree head yet")
    return head_out(head, witnessed_note(session, head))


@router.get("/journal/heads/{tree_size}", response_model=HeadOut)
def get_head_of_size(tree_size: str, _: AuditorDep, session: SessionDep) -> HeadOut:
    """The head sealed at exactly ``tree_size`` leaves, with its checkpoint note (the archive's
    signature and the witnesses' cosignatures)."""
    head = service.head_of_size(session, _size(tree_size))
    return head_out(head, witnessed_note(session, head))


@router.get(
    "/journal/heads/{tree_size}/tst",
    response_class=Response,
    responses={200: {"content": {"application/timestamp-reply": {}}}},
)
def get_head_token(tree_size: str, _: AuditorDep, session: SessionDep) -> Response:
    """The RFC 3161 TimeStampResp (DER) over the head's checkpoint bytes."""
    head = service.head_of_size(session, _size(tree_size))
    return Response(head.tsr, media_type="application/timestamp-reply")


@router.get(
    "/journal/public-key",
    response_class=Response,
    responses={200: {"content": {"application/x-pem-file": {}}}},
)
def get_public_key(_: AuditorDep, runtime: RuntimeDep) -> Response:
    """SAE's journal signing key (PEM), as shipped in every proof bundle."""
    return Response(
        load_journal_keys(runtime.settings).signer.public_pem, media_type="application/x-pem-file"
    )


@router.get(
    "/journal/vkey",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}},
)
def get_vkey(_: AuditorDep, runtime: RuntimeDep) -> Response:
    """The archive's note verifier key (``<origin>+<key id>+<base64>``), as ``sae journal
    vkey`` prints it: what witnesses and auditors check checkpoint notes with."""
    return Response(
        load_note_key(runtime.settings).vkey + "\n", media_type="text/plain; charset=utf-8"
    )


@router.get("/journal/consistency", response_model=ConsistencyOut)
def get_consistency(
    _: AuditorDep,
    session: SessionDep,
    first: Annotated[str, Query(description="Earlier tree size.")] = "",
    second: Annotated[str, Query(description="Later tree size.")] = "",
) -> ConsistencyOut:
    """RFC 9162 consistency proof between tree sizes ``first`` and ``second``."""
    proof = service.consistency(session, _size(first), _size(second))
    return ConsistencyOut(
        first=proof.first,
        second=proof.second,
        first_root=proof.first_root.hex(),
        second_root=proof.second_root.hex(),
        proof=[h.hex() for h in proof.proof],
    )


def event_out(event: Event) -> EventOut:
    """The API shape of an event."""
    return EventOut(
        leaf_index=event.leaf_index,
        type=event.type,
        actor=event.actor,
        occurred_at=event.occurred_at,
        transfer_id=event.transfer_id,
        unit_id=event.unit_id,
        object_id=event.object_id,
        payload=event.payload,
        sha512=event.digests or {},
        leaf_hash=event.leaf_hash.hex(),
        leaf=event.leaf.decode(),
    )


@router.get("/journal/events", response_model=EventPage)
def get_events(
    _: AuditorDep,
    session: SessionDep,
    unit: Annotated[str | None, Query(alias="unit_id")] = None,
    obj: Annotated[str | None, Query(alias="object_id")] = None,
    transfer: Annotated[str | None, Query(alias="transfer_id")] = None,
    type: Annotated[list[str] | None, Query()] = None,
    date_from: datetime | None = None,
    date_to: datetime | None = None,
    after: Annotated[int | None, Query(ge=-1, le=MAX_SIZE)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> EventPage:
    """Events in leaf order, filtered by unit, object, transfer, type(s) and date."""
    events = service.find_events(
        session,
        unit_id=unit,
        object_id=obj,
        transfer_id=transfer,
        types=type or (),
        date_from=date_from,
        date_to=date_to,
        after=after,
        limit=limit,
    )
    return EventPage(
        events=[event_out(e) for e in events],
        next_after=events[-1].leaf_index if len(events) == limit else None,
    )


@router.get(
    "/objects/{object_id}/proof",
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}}},
)
def get_object_proof(
    object_id: str,
    _: AuditorDep,
    session: SessionDep,
    runtime: RuntimeDep,
    consistent_with: Annotated[
        str | None,
        Query(
            description="A later tree size, or `latest` (the latest witnessed head): the "
            "bundle also carries that head's checkpoint note with its cosignatures "
            "(`consistency.note`) and the RFC 9162 consistency proof from the bundle's head "
            "to it (`consistency.json`)."
        ),
    ] = None,
) -> Response:
    """The object's proof bundle (zip): leaf, inclusion proof, signed and time-stamped head."""
    later: int | str | None = None
    if consistent_with is not None:
        later = proofs.LATEST if consistent_with == proofs.LATEST else _size(consistent_with)
    event = proofs.ingest_event(session, object_id)
    if service.covering_head(session, event.leaf_index) is None:
        seal_now(runtime)
        session.rollback()  # a fresh snapshot: see the head just committed
    data = _bundle(session, object_id, runtime, later)
    return attachment(data, "application/zip", f"proof-{object_id}.zip")


def _bundle(
    session: Session, object_id: str, runtime: Runtime, later: int | str | None = None
) -> bytes:
    try:
        return proofs.object_bundle(
            session, object_id, settings=runtime.settings, consistent_with=later
        )
    except JournalError:
        log.error("journal inconsistent while building the proof of %s", object_id)
        raise
