"""Proof bundles for archived objects, gathered from the catalog and the journal."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from sae.config import Settings
from sae.errors import NotFound
from sae.journal import service
from sae.journal.bundle import NoteMaterial, ProofMaterial, build_bundle
from sae.journal.errors import HeadNotFound, JournalCorrupt
from sae.journal.models import Event, TreeHead
from sae.journal.notekey import load_note_key
from sae.journal.witnessing import (
    WitnessSet,
    load_witnesses,
    witnessed_covering_head,
    witnessed_note,
)

INGEST_EVENT = "ingest.object_stored"


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
) -> bytes:
    """The proof bundle (zip) of ``object_id`` against ``head``.

    By default the head is the earliest that covers the object's leaf — with ``settings``
    naming witnesses, the earliest *witnessed* one when there is one, so that the bundle
    carries a quorum of cosignatures. With ``settings``, the bundle carries the head's
    checkpoint note, its cosignatures and the witnesses' vkeys (``sae.journal.bundle``).
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
            witnessing=_note_material(session, head, settings, witnesses),
        )
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
