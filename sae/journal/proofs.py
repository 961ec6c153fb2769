"""Proof bundles for archived objects, gathered from the catalog and the journal."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from sae.config import Settings
from sae.errors import NotFound
from sae.journal import service
from sae.journal.bundle import LaterHead, NoteMaterial, ProofMaterial, build_bundle
from sae.journal.errors import HeadNotFound, InvalidProofRequest, JournalCorrupt
from sae.journal.models import Event, TreeHead
from sae.journal.notekey import load_note_key
from sae.journal.witnessing import (
    WitnessSet,
    cosignatures,
    latest_noted_head,
    latest_witnessed_head,
    load_witnesses,
    witnessed_covering_head,
    witnessed_note,
)

INGEST_EVENT = "ingest.object_stored"
#: ``consistent_with=latest``: the latest witnessed head (the latest noted one without witnesses).
LATEST = "latest"


class ObjectNotJournaled(NotFound):
    code = "journal.object_not_journaled"
    title = "Object not in the journal"


def ingest_event(session: Session, object_id: str) -> Event:
    """The leaf that recorded the object's ingest (its first leaf naming its digest)."""
    event = session.scalars(
        select(Event)
        .where(Event.object_id == object_id, Event.type == INGEST_EVENT)
        .order_by(Event.leaf_index)
        .limit(1)
    ).first()
    if event is None or object_id not in (event.digests or {}):
        raise ObjectNotJournaled(f"no ingest leaf records object {object_id}")
    return event


def object_bundle(
    session: Session,
    object_id: str,
    head: TreeHead | None = None,
    *,
    settings: Settings | None = None,
    consistent_with: int | str | None = None,
) -> bytes:
    """The proof bundle (zip) of ``object_id`` against ``head``.

    By default the head is the earliest that covers the object's leaf — with ``settings``
    naming witnesses, the earliest *witnessed* one when there is one, so that the bundle
    carries a quorum of cosignatures. With ``settings``, the bundle carries the head's
    checkpoint note, its cosignatures and the witnesses' vkeys (``sae.journal.bundle``).
    With ``consistent_with`` (a later head's size, or ``"latest"``) and ``settings``, it also
    carries that later head's note and the consistency proof from its own head to it.
    """
    from sae.catalog.models import ArchiveUnit, DataObject

    obj = session.get(DataObject, object_id)
    if obj is None:
        raise NotFound(f"no data object {object_id}")
    event = ingest_event(session, object_id)
    witnesses = load_witnesses(settings) if settings is not None else None
    if head is None and witnesses is not None:
        head = witnessed_covering_head(session, witnesses, event.leaf_index)
    head = head or service.covering_head(session, event.leaf_index)
    if head is None or head.tree_size <= event.leaf_index:
        raise HeadNotFound(f"leaf {event.leaf_index} is not covered by a sealed tree head yet")
    unit = session.get(ArchiveUnit, event.unit_id) if event.unit_id else None
    recorded = event.payload if isinstance(event.payload, dict) else {}
    root, path = service.inclusion(session, event.leaf_index, head.tree_size)
    if root != head.root_hash:
        raise JournalCorrupt(
            f"the stored tree does not give head {head.tree_size}'s root: run sae journal verify"
        )
    info = {
        "object_id": object_id,
        "unit_id": event.unit_id,
        "size": recorded.get("size", obj.size),
        "sha512": event.digests[object_id],
        "title": recorded.get("title", unit.title if unit else None),
        "producer": recorded.get("producer", unit.producer if unit else None),
        "leaf_index": event.leaf_index,
    }
    witnessing = _note_material(session, head, settings, witnesses)
    later = None
    if consistent_with is not None:
        if witnessing is None:
            raise InvalidProofRequest(
                f"the bundle's head ({head.tree_size} leaves) has no checkpoint note: "
                "consistent_with needs one (heads sealed before notes existed have none)"
            )
        later = later_head(session, head, consistent_with, witnesses)
    return build_bundle(
        ProofMaterial(
            object_info=info,
            leaf=event.leaf,
            leaf_index=event.leaf_index,
            tree_size=head.tree_size,
            audit_path=path,
            checkpoint=head.checkpoint,
            signature=head.signature,
            public_key_pem=head.public_key_pem,
            tsr=head.tsr,
            tsa_chain_pem=head.tsa_chain_pem,
            witnessing=witnessing,
            later=later,
        )
    )


def later_head(
    session: Session, head: TreeHead, target: int | str, witnesses: WitnessSet | None
) -> LaterHead:
    """The later head ``target`` (a size, or ``"latest"``) with its cosignatures, and the RFC
    9162 consistency proof from ``head`` to it. With witnesses, a head co-signed by fewer than
    the quorum is refused: the later head is worth what its cosignatures are."""
    quorum = witnesses.quorum if witnesses is not None else 0
    if target == LATEST:
        later = (latest_witnessed_head(session, witnesses) if witnesses and quorum else None) or (
            latest_noted_head(session) if not quorum else None
        )
        if later is None or later.tree_size < head.tree_size:
            later = head  # nothing witnessed beyond the bundle's own head yet
    elif isinstance(target, int):
        later = service.head_of_size(session, target)
    else:
        raise InvalidProofRequest(f"consistent_with: {str(target)[:40]!r} is not a tree size")
    if later.tree_size < head.tree_size:
        raise InvalidProofRequest(
            f"consistent_with={later.tree_size} is smaller than the bundle's head "
            f"({head.tree_size} leaves): ask for a later head"
        )
    note = witnessed_note(session, later)
    if note is None:
        raise InvalidProofRequest(f"the head of {later.tree_size} leaves has no checkpoint note")
    if quorum and witnesses is not None:
        cosigned = len(cosignatures(session, later.tree_size, witnesses.names))
        if cosigned < quorum:
            raise InvalidProofRequest(
                f"the head of {later.tree_size} leaves has {cosigned} of the {quorum} "
                "cosignatures of the quorum: ask for a witnessed head (or consistent_with=latest)"
            )
    proof = service.consistency(session, head.tree_size, later.tree_size)
    if (proof.first_root, proof.second_root) != (head.root_hash, later.root_hash):
        raise JournalCorrupt(
            f"the stored tree does not give the roots of heads {head.tree_size} and "
            f"{later.tree_size}: run sae journal verify"
        )
    return LaterHead(
        note=note,
        first=head.tree_size,
        second=later.tree_size,
        first_root=head.root_hash,
        second_root=later.root_hash,
        proof=proof.proof,
    )


def _note_material(
    session: Session, head: TreeHead, settings: Settings | None, witnesses: WitnessSet | None
) -> NoteMaterial | None:
    """The head's note with its cosignatures, the archive's vkey and the witnesses'."""
    note = witnessed_note(session, head)
    if note is None or settings is None:
        return None
    return NoteMaterial(
        note=note,
        log_vkey=load_note_key(settings).vkey,
        witnesses=[(w.name, w.vkey) for w in witnesses.witnesses] if witnesses else [],
        quorum=witnesses.quorum if witnesses else 0,
    )
