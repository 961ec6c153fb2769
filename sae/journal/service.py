"""Appending facts to the journal, inside the caller's transaction."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sae.db import utcnow
from sae.journal.models import Event

LEAF_VERSION = 1


def encode_leaf(
    *,
    leaf_index: int,
    type: str,
    actor: str,
    occurred_at: datetime,
    payload: dict[str, Any],
    transfer_id: str | None,
    unit_id: str | None,
    object_id: str | None,
    object_digests: dict[str, str],
) -> bytes:
    """The canonical bytes of a leaf: sorted-key compact JSON, UTF-8, versioned."""
    doc = {
        "v": LEAF_VERSION,
        "index": leaf_index,
        "type": type,
        "actor": actor,
        "at": occurred_at.isoformat().replace("+00:00", "Z"),
        "transfer": transfer_id,
        "unit": unit_id,
        "object": object_id,
        "sha512": dict(sorted(object_digests.items())),
        "data": payload,
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def leaf_hash(leaf: bytes) -> bytes:
    """RFC 9162 §2.1.1 leaf hash: SHA-256(0x00 || leaf)."""
    return hashlib.sha256(b"\x00" + leaf).digest()


def append_event(
    session: Session,
    *,
    type: str,
    actor: str,
    payload: dict[str, Any] | None = None,
    transfer_id: str | None = None,
    unit_id: str | None = None,
    object_id: str | None = None,
    object_digests: dict[str, str] | None = None,
) -> Event:
    """Append one fact as the next leaf. The caller commits; the row is flushed here."""
    next_index = session.scalar(select(func.coalesce(func.max(Event.leaf_index) + 1, 0)))
    assert next_index is not None
    occurred_at = utcnow()
    data = payload or {}
    digests = object_digests or {}
    leaf = encode_leaf(
        leaf_index=next_index,
        type=type,
        actor=actor,
        occurred_at=occurred_at,
        payload=data,
        transfer_id=transfer_id,
        unit_id=unit_id,
        object_id=object_id,
        object_digests=digests,
    )
    event = Event(
        leaf_index=next_index,
        type=type,
        actor=actor,
        occurred_at=occurred_at,
        transfer_id=transfer_id,
        unit_id=unit_id,
        object_id=object_id,
        payload=data,
        leaf=leaf,
        leaf_hash=leaf_hash(leaf),
    )
    session.add(event)
    session.flush()
    return event
