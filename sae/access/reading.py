"""Reading an archived object's bytes as one unit of work.

The read is journaled and that event committed *before* the first byte leaves (every read of an
archive is journaled, even one the client abandons); this module therefore owns its transaction,
which is why it is apart from the services that only flush.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from sae.access import register
from sae.access.service import ContentStream, check_read_access, open_content
from sae.auth.service import Principal
from sae.catalog import service as catalog
from sae.catalog.errors import ObjectNotFound
from sae.catalog.models import DataObject
from sae.journal.service import append_event
from sae.storage.base import StorageOffer


def open_for_reading(
    sessions: sessionmaker[Session],
    offers: dict[str, StorageOffer],
    principal: Principal,
    object_id: str,
    *,
    via: str = "api",
) -> ContentStream:
    """Check access, journal the read (committed before a byte leaves), open a healthy copy.

    The one way to read an archived object's bytes, for the API and the console alike.
    """
    with sessions() as session:
        obj = session.get(DataObject, object_id)
        if obj is None or obj.kind != "binary" or obj.sha512 is None:
            raise ObjectNotFound(f"no binary data object {object_id}")
        check_read_access(session, principal, obj)
        copies = catalog.copies_of(session, obj.id)
        payload: dict[str, Any] = {"size": obj.size, "via": via}
        # A reader's or a depositor's read is a communication: the register's entries, with
        # their basis, are part of the event (and written from it, as its replay does).
        entry = register.payload_for(
            session,
            principal,
            register.object_units(session, principal, catalog.units_of_object(session, obj)),
        )
        if entry is not None:
            payload["register"] = entry
        event = append_event(
            session,
            type="access.object_read",
            actor=principal.actor,
            object_id=obj.id,
            transfer_id=obj.transfer_id,
            payload=payload,
        )
        register.record(
            session,
            leaf=event.leaf_index,
            at=event.occurred_at,
            event_type=event.type,
            object_id=obj.id,
            payload=payload,
        )
        session.commit()
    return open_content(sessions, offers, obj, copies)
