"""Serving an object's bytes: access checks, journaled reads, digest checked while streaming.

A corrupt or missing copy is recorded (``integrity.failed`` event, copy flagged) and the next
healthy copy is served; when a large object's mismatch is only known at the end of the stream,
the stream is aborted so the client never takes a damaged file for a good one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from sae.auth.service import Principal
from sae.catalog import service as catalog
from sae.catalog.errors import ObjectDestroyed, ObjectNotFound
from sae.catalog.models import GONE, DataObject
from sae.db import transaction, utcnow
from sae.journal.service import append_event
from sae.storage.base import StorageOffer
from sae.storage.errors import IntegrityMismatch, NoHealthyCopy, StorageError
from sae.storage.models import ObjectCopy
from sae.storage.service import open_verified

log = logging.getLogger("sae.access")


@dataclass
class ContentStream:
    """The first chunk (already verified as far as it can be) and the rest of the stream."""

    obj: DataObject
    first: bytes
    rest: Iterator[bytes]

    def __iter__(self) -> Iterator[bytes]:
        if self.first:
            yield self.first
        yield from self.rest


def check_read_access(session: Session, principal: Principal, obj: DataObject) -> None:
    """Who may read the bytes: by role, producing service, and communicability for readers.

    A reader may read an object when every unit it belongs to is communicable today (Code du
    patrimoine L213-2), a depositor when one of them is of its producing services. Otherwise
    the answer is the one for an object that does not exist — even when it was destroyed:
    a 410 would tell that it existed."""
    units = catalog.units_of_object(session, obj)
    if principal.role not in catalog.ALL_SEEING:
        seen = catalog.visibilities(session, principal, units)
        full = [seen[u.id] == catalog.FULL for u in units]
        allowed = any(full) if principal.role == "depositor" else bool(units) and all(full)
        if not allowed:
            raise ObjectNotFound(f"no binary data object {obj.id}")
    if obj.status in GONE:
        raise ObjectDestroyed(
            f"data object {obj.id} was {obj.status}", **_gone_because(session, obj)
        )


def _gone_because(session: Session, obj: DataObject) -> dict[str, str]:
    """What a 410 names: the disposal list whose certificate attests the destruction (from the
    object's tombstone), so that the answer is evidence, not merely an absence. A withdrawn
    object, or one destroyed before tombstones named their list, has none."""
    from sae.retention.models import Tombstone  # the retention domain owns tombstones

    tomb = session.scalars(
        select(Tombstone)
        .where(Tombstone.kind == "object", Tombstone.object_id == obj.id)
        .order_by(Tombstone.id.desc())
        .limit(1)
    ).first()
    if tomb is None:
        return {}
    return {
        "disposal_list": tomb.list_id,
        "disposal_list_reference": tomb.list_reference,
        "certificate": f"/api/v1/disposal-lists/{tomb.list_id}/certificate",
        "destroyed_at": tomb.destroyed_at.isoformat().replace("+00:00", "Z"),
    }


def record_integrity_failure(
    sessions: sessionmaker[Session], obj_id: str, copy_id: int, offer: str, detail: str
) -> None:
    """Flag the copy and journal the failure, in a transaction of its own."""
    with transaction(sessions) as session:
        copy = session.get(ObjectCopy, copy_id)
        checked_at = utcnow()
        if copy is not None:
            copy.last_checked_at = checked_at
            copy.last_check_ok = False
        # ``key`` and ``checked_at``: which copy row a replay flags, and with which date.
        append_event(
            session,
            type="integrity.failed",
            actor="system:access",
            object_id=obj_id,
            payload={
                "offer": offer,
                "detail": detail,
                "key": copy.key if copy is not None else None,
                "checked_at": checked_at.isoformat(),
            },
        )
    log.error("integrity.failed object=%s offer=%s: %s", obj_id, offer, detail)


def open_content(
    sessions: sessionmaker[Session],
    offers: dict[str, StorageOffer],
    obj: DataObject,
    copies: Sequence[ObjectCopy],
) -> ContentStream:
    """Open the first healthy copy; raises ``NoHealthyCopy`` before any byte if none is."""
    assert obj.sha512 is not None
    failures: list[str] = []
    for copy in copies:
        offer = offers.get(copy.offer)
        if offer is None:
            failures.append(f"{copy.offer}: offer no longer configured")
            continue
        stream = open_verified([(offer, copy.key)], obj.sha512, expected_size=obj.size)
        try:
            first = next(stream, b"")
        except NoHealthyCopy as exc:
            record_integrity_failure(sessions, obj.id, copy.id, copy.offer, exc.detail)
            failures.append(f"{copy.offer}: {exc.detail}")
            continue
        except StorageError as exc:
            failures.append(f"{copy.offer}: {exc.detail}")
            continue
        return ContentStream(obj, first, _guarded(stream, sessions, obj.id, copy))
    flag_object(sessions, obj.id, failures)
    raise NoHealthyCopy(obj.storage_key or obj.id, failures)


def flag_object(sessions: sessionmaker[Session], obj_id: str, failures: list[str]) -> None:
    """No copy can be served: the object itself is flagged until an audit repairs it."""
    with transaction(sessions) as session:
        obj = session.get(DataObject, obj_id)
        if obj is not None and obj.status == "active":
            obj.status = "integrity_failed"
        append_event(
            session,
            type="integrity.no_healthy_copy",
            actor="system:access",
            object_id=obj_id,
            payload={"failures": failures},
        )


def _guarded(
    stream: Iterator[bytes], sessions: sessionmaker[Session], obj_id: str, copy: ObjectCopy
) -> Iterator[bytes]:
    """Pass chunks through, always holding the last one back until the digest is checked.

    The digest of a large copy is only known once its last byte is read; by keeping that last
    chunk until then, a damaged copy never reaches the client whole: the response ends short of
    its Content-Length, which every HTTP client reports as an incomplete transfer.
    """
    held: bytes | None = None
    try:
        for chunk in stream:
            if held is not None:
                yield held
            held = chunk
    except IntegrityMismatch as exc:
        record_integrity_failure(sessions, obj_id, copy.id, copy.offer, exc.detail)
        raise
    if held is not None:
        yield held
