"""Witnessed checkpoints on the offers: each co-signed head's note, with its cosignatures.

The witnesses' cosignatures (``head_cosignatures``, :mod:`sae.journal.witnessing`) are
evidence the archive cannot make again: a catalogue rebuilt from the offers alone used to have
none, and its bundles none either (the witnesses keep only the latest head they co-signed).
So once a head's cosignatures are final, its C2SP signed note — the archive's signature, then
every stored ``cosignature/v1`` line — is written, write-once like the segments, to every offer
of the strategy as ``journal/checkpoints/{tree_size:016d}.note`` and recorded in
``metadata_copies`` (kind ``journal_checkpoint``): ``sae rebuild`` and ``sae restore``'s catch-up
read them back (:mod:`sae.recovery.rebuild`), checking each cosignature against the witnesses'
vkeys before storing it.

A head's cosignatures are final when every configured witness has co-signed it, or when a
later head was sealed more than :data:`FINAL_AFTER` ago: the witnesses are only ever asked
about the latest head, so nothing more will come for this one (a straggler's answer has had
a witness round's time to arrive). A head nobody co-signed has no checkpoint note.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from sae.db import utcnow
from sae.journal.models import HeadCosignature, TreeHead
from sae.journal.publishing import adopt_written, record_copy
from sae.storage.base import StorageOffer, StoredObject
from sae.storage.errors import ObjectExists, ReplicationFailed, StorageError
from sae.storage.models import MetadataCopy
from sae.storage.service import store_copies

log = logging.getLogger("sae.journal")

#: Where witnessed checkpoints live on an offer, beside ``journal/segments/``.
PREFIX = "journal/checkpoints/"
#: ``metadata_copies.kind`` of a witnessed checkpoint's copy.
KIND = "journal_checkpoint"
#: A head's cosignatures are final this long after a later head was sealed.
FINAL_AFTER = timedelta(minutes=2)
#: Checkpoints per offer and call.
DEFAULT_LIMIT = 50
_KEY = re.compile(r"journal/checkpoints/(\d{16})\.note")


def checkpoint_key(tree_size: int) -> str:
    """The offer key of the witnessed checkpoint of the head of ``tree_size`` leaves."""
    return f"{PREFIX}{tree_size:016d}.note"


def parse_checkpoint_key(key: str) -> int | None:
    """The head size a checkpoint key names; None for any other key."""
    match = _KEY.fullmatch(key)
    return int(match.group(1)) if match else None


def final_checkpoints(
    session: Session,
    offer: str,
    witnesses: Sequence[str],
    *,
    now: datetime | None = None,
    limit: int = DEFAULT_LIMIT,
) -> list[tuple[TreeHead, bytes]]:
    """The co-signed heads whose cosignatures are final and whose checkpoint ``offer`` has not
    recorded, oldest first, each with its note (the archive's signature, every cosignature)."""
    from sae.journal.witnessing import witnessed_note

    moment = now or utcnow()
    on_offer = select(MetadataCopy.tree_size).where(
        MetadataCopy.offer == offer, MetadataCopy.kind == KIND
    )
    rows = session.execute(
        select(HeadCosignature.tree_size, func.count())
        .where(HeadCosignature.tree_size.not_in(on_offer))
        .group_by(HeadCosignature.tree_size)
        .order_by(HeadCosignature.tree_size)
        .limit(limit)
    ).all()
    if not rows:
        return []
    # The largest size of a head sealed before ``moment - FINAL_AFTER``: the heads below it
    # were followed by a head long enough ago.
    settled = session.scalar(
        select(func.max(TreeHead.tree_size)).where(TreeHead.timestamp <= moment - FINAL_AFTER)
    )
    names = set(witnesses)
    out = []
    for size, _count in rows:
        signed_by = set(
            session.scalars(
                select(HeadCosignature.witness).where(HeadCosignature.tree_size == size)
            )
        )
        everyone = bool(names) and names <= signed_by
        if not everyone and (settled is None or settled <= size):
            continue
        head = session.scalars(select(TreeHead).where(TreeHead.tree_size == size)).first()
        note = witnessed_note(session, head) if head is not None else None
        if head is not None and note is not None:
            out.append((head, note))
    return out


def publish_checkpoints(
    sessions: sessionmaker[Session],
    offers: Sequence[StorageOffer],
    witnesses: Sequence[str],
    *,
    now: datetime | None = None,
) -> int:
    """Write each offer's final witnessed checkpoints it lacks; how many were written or found
    already there. An offer that fails is logged and tried again at the next round."""
    done = 0
    for offer in offers:
        with sessions() as session:
            pending = final_checkpoints(session, offer.name, witnesses, now=now)
        for head, note in pending:
            key = checkpoint_key(head.tree_size)
            try:
                stored = _write(offer, key, note)
            except StorageError as exc:
                log.warning(
                    "journal.checkpoint_publish_failed offer=%s key=%s: %s",
                    offer.name,
                    key,
                    exc.detail,
                )
                break
            if stored is None:
                continue
            _record(sessions, offer.name, key, head.tree_size, note, stored)
            done += 1
    return done


def _write(offer: StorageOffer, key: str, note: bytes) -> StoredObject | None:
    expected = hashlib.sha512(note).hexdigest()
    try:
        return store_copies(
            [offer], key, io.BytesIO(note), retain_until=None, expected_sha512=expected
        )[0]
    except ReplicationFailed as exc:
        if not isinstance(exc.__cause__, ObjectExists):
            raise
    # Written before (a crash before the record, another process): ours if the same bytes.
    return adopt_written(offer, key, expected, conflict="journal.checkpoint_conflict")


def _record(
    sessions: sessionmaker[Session],
    offer: str,
    key: str,
    tree_size: int,
    note: bytes,
    stored: StoredObject,
) -> None:
    record_copy(
        sessions,
        offer,
        key,
        kind=KIND,
        tree_size=tree_size,
        sha512=hashlib.sha512(note).hexdigest(),
        size=len(note),
        stored=stored,
    )
