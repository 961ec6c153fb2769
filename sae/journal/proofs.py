"""Proof bundles for archived objects, gathered from the catalog and the journal."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from sae.errors import NotFound
from sae.journal import service
from sae.journal.bundle import ProofMaterial, build_bundle
from sae.journal.errors import HeadNotFound, JournalCorrupt
from sae.journal.models import Event, TreeHead

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


def object_bundle(session: Session, object_id: str, head: TreeHead | None = None) -> bytes:
    """The proof bundle (zip) of ``object_id`` against ``head`` (default: earliest covering)."""
    from sae.catalog.models import ArchiveUnit, DataObject

    obj = session.get(DataObject, object_id)
    if obj is None:
        raise NotFound(f"no data object {object_id}")
    event = ingest_event(session, object_id)
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
        )
    )
