"""API shapes of the journal (INTERFACE.md: head, consistency, events)."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from sae.journal.models import TreeHead

#: Where the API is mounted, for the links a head carries.
PREFIX = "/api/v1"


class HeadOut(BaseModel):
    """A signed tree head."""

    tree_size: int
    root_hash: str = Field(description="Hex SHA-256 root (RFC 9162).")
    timestamp: str = Field(description="SAE's clock at sealing, ISO 8601 UTC (in the checkpoint).")
    signature: str = Field(description="Base64 DER ECDSA-SHA256 signature of `checkpoint`.")
    tst_url: str = Field(description="Where to fetch the RFC 3161 TimeStampResp (DER).")
    origin: str
    checkpoint: str = Field(description="The exact signed and time-stamped bytes (tree-head.json).")
    tsa_time: datetime = Field(description="genTime of the time-stamp token.")
    public_key_url: str
    note: str | None = Field(
        default=None,
        description="The head as a C2SP tlog-checkpoint signed note: the archive's signature "
        "(its note key, `GET /journal/vkey`) then every witness's cosignature/v1 line stored "
        "so far. None for heads sealed before notes existed.",
    )


def head_out(head: TreeHead, note: bytes | None = None) -> HeadOut:
    """The API shape of a head (also what ``sae journal head`` and ``seal`` print); ``note``
    is the head's note with its cosignatures (``sae.journal.witnessing.witnessed_note``)."""
    return HeadOut(
        tree_size=head.tree_size,
        root_hash=head.root_hash.hex(),
        timestamp=str(json.loads(head.checkpoint)["timestamp"]),
        signature=base64.b64encode(head.signature).decode(),
        tst_url=f"{PREFIX}/journal/heads/{head.tree_size}/tst",
        origin=head.origin,
        checkpoint=head.checkpoint.decode(),
        tsa_time=head.tsa_time,
        public_key_url=f"{PREFIX}/journal/public-key",
        note=(note or head.note or b"").decode() or None,
    )


class ConsistencyOut(BaseModel):
    """RFC 9162 §2.1.4 consistency proof between two tree sizes."""

    first: int
    second: int
    first_root: str
    second_root: str
    proof: list[str]


class EventOut(BaseModel):
    """A journal event with its leaf."""

    leaf_index: int
    type: str
    actor: str
    occurred_at: datetime
    transfer_id: str | None
    unit_id: str | None
    object_id: str | None
    payload: dict[str, Any]
    sha512: dict[str, str] = Field(description="SHA-512 of every object the event concerns.")
    leaf_hash: str
    leaf: str = Field(description="The exact leaf bytes (UTF-8 JSON).")


class EventPage(BaseModel):
    """A page of events; pass ``next_after`` as ``after`` for the next page."""

    events: list[EventOut]
    next_after: int | None
