"""Replays of the ingest events (see :mod:`sae.recovery.replay`).

- ``ingest.accepted``: the transfer's description (``transfers/<id>.zip``) is read from the
  offer and checked against the journal — its SHA-512 against the leaf's
  ``description_sha512`` (leaves written since it was added), the transfer's fields against the
  leaf's, each ``ingest.object_stored`` leaf of the transfer against the record's object
  (SHA-512, size, URI, SIP id, media type, its unit's title and producer) — then its rows
  are written as the ingest wrote them (:func:`sae.catalog.records.rows_from_record`,
  :func:`sae.catalog.rows.write_catalogue`, its computed end dates), with the copy of the
  description on this offer in ``metadata_copies``. Any mismatch stops the rebuild naming
  the description. A description that is missing because its transfer was withdrawn in
  quarantine (a ``transfer.withdrawn`` leaf of it follows in the offer's journal) is not
  a fault: the rows that leaf kept are written at once, as accepted, and withdrawn at it.
- ``ingest.object_stored``: nothing of its own: the object's rows come with its transfer's
  record, and the leaf is checked against that record at the transfer's ``ingest.accepted``
  (which always follows it: the ingest appends a transfer's leaves in one batch, its
  ``ingest.accepted`` last).
- ``ingest.rejected``: a refused transfer writes nothing to the offers (an offer that fails
  is one reason to refuse); its leaf carries its ``transfers`` row and its KO ATR.
- ``rebuild.transfer_recovered``: a transfer whose description a rebuild found on the offer
  without its ``ingest.accepted`` in any published segment (``sae.recovery.rebuild``):
  imported from its description, checked against the SHA-512 the leaf gives.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from sae.catalog.records import RecordError, rows_from_record, transfer_from_values
from sae.catalog.rows import CatalogueRows, write_catalogue
from sae.ingest.models import Transfer
from sae.ingest.transfer_record import (
    KIND,
    TransferRecordError,
    read_transfer_record,
    transfer_record_key,
)
from sae.journal.models import Event
from sae.recovery.errors import DescriptionInvalid
from sae.recovery.replay import LeafEvent, ReplayContext, changes_no_state, replays
from sae.retention import dates
from sae.storage.base import StorageOffer
from sae.storage.errors import ObjectMissing
from sae.storage.models import MetadataCopy

#: The fields of an ``ingest.accepted`` leaf that are columns of the transfer row.
_LEAF_FIELDS = (
    "message_identifier",
    "transferring_agency",
    "producer",
    "seda_version",
    "sip_sha512",
)


@dataclass(frozen=True)
class ImportedTransfer:
    """A transfer written from its description: its id, counts and the description's digest."""

    transfer_id: str
    units: int
    objects: int
    description_sha512: str
    #: SHA-512 of each binary object, by object id.
    digests: dict[str, str]


def read_description(offer: StorageOffer, transfer_id: str) -> tuple[bytes, str]:
    """The bytes of ``transfers/<id>.zip`` on ``offer`` and their SHA-512.

    :class:`DescriptionInvalid` (kind ``missing``) when the offer does not hold it: a transfer
    accepted before descriptions were written, or one removed from the offer."""
    key = transfer_record_key(transfer_id)
    try:
        data = b"".join(offer.get(key))
    except ObjectMissing:
        raise DescriptionInvalid(key, "missing", "the offer holds no description") from None
    return data, hashlib.sha512(data).hexdigest()


def import_transfer(
    context: ReplayContext,
    transfer_id: str,
    *,
    data: bytes | None = None,
    expected_sha512: str | None = None,
    leaf: LeafEvent | None = None,
) -> ImportedTransfer:
    """Write an accepted transfer's rows from its description on the context's offer.

    ``expected_sha512``: the description's digest as the journal gives it; ``leaf``: the
    transfer's ``ingest.accepted`` leaf, whose fields and whose transfer's ``object_stored``
    leaves (already in the ``events`` table) are checked against the record. Raises
    :class:`DescriptionInvalid` naming the description on any mismatch; writes nothing then.
    """
    key = transfer_record_key(transfer_id)
    if data is None:
        data, digest = read_description(context.offer, transfer_id)
    else:
        digest = hashlib.sha512(data).hexdigest()
    if expected_sha512 is not None and digest != expected_sha512:
        raise DescriptionInvalid(
            key, "digest", f"SHA-512 {digest[:16]}…, the journal says {expected_sha512[:16]}…"
        )
    try:
        files = read_transfer_record(data)
        transfer, rows, end_dates = rows_from_record(files.record, atr=files.atr)
    except (TransferRecordError, RecordError, ValueError, TypeError) as exc:
        raise DescriptionInvalid(key, "format", str(exc)) from None
    if transfer.id != transfer_id:
        raise DescriptionInvalid(key, "transfer", f"the record describes transfer {transfer.id}")
    if transfer.status != "OK":
        raise DescriptionInvalid(key, "transfer", f"the record's status is {transfer.status!r}")
    if leaf is not None:
        _check_against_leaves(context.session, key, leaf, transfer, rows)
    session = context.session
    session.add(transfer)
    write_catalogue(session, rows)  # flushes the transfer row first
    dates.store_computed(session, end_dates)
    session.add(
        MetadataCopy.of_copy(
            context.offer.name,
            key,
            context.offer.head(key),
            kind=KIND,
            transfer_id=transfer_id,
            sha512=digest,
            size=len(data),
        )
    )
    digests = {o.id: o.sha512 for o in rows.objects if o.sha512 is not None}
    return ImportedTransfer(transfer_id, len(rows.units), len(rows.objects), digest, digests)


def _check_against_leaves(
    session: Session, key: str, leaf: LeafEvent, transfer: Transfer, rows: CatalogueRows
) -> None:
    """The record says what the signed leaves say (see the module's docstring)."""
    payload = leaf.payload
    for name in _LEAF_FIELDS:
        if name in payload and payload[name] != getattr(transfer, name):
            raise DescriptionInvalid(
                key,
                "transfer",
                f"{name} {getattr(transfer, name)!r}, the journal says "
                f"{payload[name]!r} (leaf {leaf.index})",
            )
    for name, count in (("units", len(rows.units)), ("objects", len(rows.objects))):
        if name in payload and payload[name] != count:
            raise DescriptionInvalid(
                key, "transfer", f"{count} {name}, the journal says {payload[name]}"
            )
    objects = {obj.id: obj for obj in rows.objects}
    units = {unit.id: unit for unit in rows.units}
    stored = _object_leaves(session, leaf.transfer_id or "", leaf.index)
    binaries = [o for o in rows.objects if o.kind == "binary" and o.sha512 is not None]
    if len(stored) != len(binaries):
        raise DescriptionInvalid(
            key, "objects", f"{len(binaries)} stored objects, the journal has {len(stored)} leaves"
        )
    for event in stored:
        obj = objects.get(event.object_id or "")
        if obj is None:
            raise DescriptionInvalid(
                key, "objects", f"object {event.object_id} of leaf {event.leaf_index} is missing"
            )
        said = event.payload
        expected: dict[str, Any] = {
            "sha512": obj.sha512,
            "size": obj.size,
            "uri": obj.uri,
            "sip_id": obj.sip_id,
            "mime_type": obj.mime_type,
        }
        found: dict[str, Any] = {"sha512": event.digests.get(obj.id)}
        found.update({name: said.get(name) for name in expected if name != "sha512"})
        if "format_puid" in said:  # leaves written before identification do not say it
            expected["format_puid"] = obj.format_puid
            found["format_puid"] = said["format_puid"]
        unit = units.get(event.unit_id or "")
        if unit is not None:
            expected.update(title=unit.title, producer=unit.producer)
            found.update(title=said.get("title"), producer=said.get("producer"))
        for name, value in expected.items():
            if found[name] != value:
                raise DescriptionInvalid(
                    key,
                    "objects",
                    f"object {obj.id}: {name} {value!r}, the journal says {found[name]!r} "
                    f"(leaf {event.leaf_index})",
                )


def _object_leaves(session: Session, transfer_id: str, before: int) -> list[Row[Any]]:
    """The transfer's ``ingest.object_stored`` events before its decision (already inserted by
    the rebuild, in this or an earlier segment): the columns the check reads, not the rows."""
    return list(
        session.execute(
            select(Event.leaf_index, Event.object_id, Event.unit_id, Event.digests, Event.payload)
            .where(
                Event.transfer_id == transfer_id,
                Event.type == "ingest.object_stored",
                Event.leaf_index < before,
            )
            .order_by(Event.leaf_index)
        )
    )


@replays("ingest.accepted")
def replay_accepted(context: ReplayContext, event: LeafEvent) -> None:
    """The transfer's rows, from its description, checked against the journal."""
    if event.transfer_id is None:
        raise DescriptionInvalid(f"leaf {event.index}", "leaf", "ingest.accepted without transfer")
    expected = event.payload.get("description_sha512")
    try:
        import_transfer(
            context,
            event.transfer_id,
            expected_sha512=expected if isinstance(expected, str) else None,
            leaf=event,
        )
    except DescriptionInvalid as exc:
        # A transfer withdrawn in quarantine left the offers with its description; its
        # ``transfer.withdrawn`` leaf, later in the same journal, carries the rows that stay
        # (sae.storage.replay). Only that leaf excuses the absence: it is verified with its
        # segment when the rebuild reaches it, which stops there if it does not verify.
        later = withdrawn_later(context.offer, event) if exc.kind == "missing" else None
        if later is None:
            raise
        _import_withdrawn(context, event, later, exc)
        context.notes.append(
            f"transfer {event.transfer_id}: its description left the offer with its "
            f"withdrawal; its rows come from its transfer.withdrawn leaf ({later.index})"
        )


def _import_withdrawn(
    context: ReplayContext, accepted: LeafEvent, withdrawn: LeafEvent, missing: DescriptionInvalid
) -> None:
    """The transfer as it was accepted, from the rows its withdrawal kept (the leaf's
    ``record``, as ``sae.ingest.withdrawal.withdrawn_record`` wrote it): accepted, its units and
    objects active. The leaves between the two see it as the live catalogue did — a referential
    that recomputes its units, a hold placed on them and lifted — and its ``transfer.withdrawn``
    replay then withdraws it (sae.storage.replay). What the record does not hold (the units'
    descriptions, copies) is what the withdrawal removed anyway; its end dates are computed
    again from its declared rules."""
    record, atr = withdrawn.payload.get("record"), withdrawn.payload.get("atr")
    if not isinstance(record, dict):
        raise missing
    try:
        transfer, rows, _ = rows_from_record(
            record, atr=base64.b64decode(atr) if isinstance(atr, str) else None
        )
    except (RecordError, ValueError, TypeError) as exc:
        raise DescriptionInvalid(
            f"leaf {withdrawn.index}", "format", f"transfer.withdrawn record: {exc}"
        ) from None
    if transfer.id != accepted.transfer_id:
        raise DescriptionInvalid(
            f"leaf {withdrawn.index}", "transfer", f"the record describes transfer {transfer.id}"
        )
    transfer.status = "OK"
    for unit in rows.units:
        unit.status = "active"
    for obj in rows.objects:
        obj.status = "active"
    context.session.add(transfer)
    write_catalogue(context.session, rows)
    # Its end dates as the ingest computed them, for the leaves in between (a disposal list
    # built over due units); its withdrawal deletes them again.
    dates.refresh_units(
        context.session,
        [unit.id for unit in rows.units],
        computed_at=accepted.occurred_at.replace(tzinfo=dt.UTC),
    )


def withdrawn_later(offer: StorageOffer, accepted: LeafEvent) -> LeafEvent | None:
    """The ``transfer.withdrawn`` leaf of ``accepted``'s transfer that follows it in the
    journal segments on ``offer``, if any. Reads the segments after the leaf, one line at a time;
    called only for a description that is missing (rare: a withdrawal)."""
    from sae.journal.segments import PREFIX, iter_lines

    transfer = (accepted.transfer_id or "").encode()
    for key in sorted(offer.list_keys(PREFIX)):
        try:
            last = int(key.removeprefix(PREFIX).removesuffix(".jsonl").split("-")[1])
        except (IndexError, ValueError):
            continue  # not a segment's name: the rebuild says so when it reaches it
        if last <= accepted.index + 1:
            continue
        for n, line in enumerate(iter_lines(offer.get(key))):
            if n == 0 or b'"transfer.withdrawn"' not in line or transfer not in line:
                continue
            try:
                later = LeafEvent.parse(line)
            except ValueError:
                continue
            if (
                later.type == "transfer.withdrawn"
                and later.transfer_id == accepted.transfer_id
                and later.index > accepted.index
            ):
                return later
    return None


changes_no_state(
    "ingest.object_stored",
    "the object's rows come with its transfer's description, checked against this leaf at the "
    "transfer's ingest.accepted",
)


@replays("ingest.rejected")
def replay_rejected(context: ReplayContext, event: LeafEvent) -> None:
    """The refused transfer's row and KO ATR, from the leaf."""
    payload = event.payload
    values, atr = payload.get("transfer"), payload.get("atr")
    if isinstance(values, dict) and isinstance(atr, str):
        try:
            row = transfer_from_values(values, atr=atr.encode("utf-8"))
        except (RecordError, ValueError, TypeError) as exc:
            raise DescriptionInvalid(f"leaf {event.index}", "leaf", str(exc)) from None
        if row.id != event.transfer_id:
            raise DescriptionInvalid(
                f"leaf {event.index}", "leaf", f"carries transfer {row.id}, not {event.transfer_id}"
            )
    else:
        # A refusal journaled before its leaf carried its row: what the leaf says is kept,
        # without an ATR (said in the rebuild's report).
        row = Transfer(
            id=event.transfer_id,
            status="KO",
            message_identifier=payload.get("message_identifier"),
            transferring_agency=payload.get("transferring_agency"),
            sip_sha512=payload.get("sip_sha512"),
            errors=list(payload.get("errors") or []),
            warnings=[],
            received_at=event.occurred_at.replace(tzinfo=dt.UTC),
            completed_at=event.occurred_at.replace(tzinfo=dt.UTC),
            unit_count=0,
            object_count=0,
            total_bytes=0,
        )
        context.notes.append(
            f"refused transfer {event.transfer_id} (leaf {event.index}): journaled without its "
            "row; rebuilt from the leaf, without its ATR"
        )
    context.session.add(row)
    context.session.flush()  # the later replays of this batch may touch it with Core statements


@replays("rebuild.transfer_recovered")
def replay_recovered(context: ReplayContext, event: LeafEvent) -> None:
    """A transfer an earlier rebuild recovered from its description: imported again from it."""
    expected = event.payload.get("description_sha512")
    if event.transfer_id is None or not isinstance(expected, str):
        raise DescriptionInvalid(f"leaf {event.index}", "leaf", "no transfer or description digest")
    import_transfer(context, event.transfer_id, expected_sha512=expected)


def transfer_ids(keys: Iterable[str]) -> list[tuple[str, str]]:
    """``(key, transfer id)`` of the description keys among ``keys`` (``transfers/<id>.zip``)."""
    prefix, suffix = transfer_record_key(""), ".zip"
    prefix = prefix.removesuffix(suffix)
    return [
        (key, key[len(prefix) : -len(suffix)])
        for key in keys
        if key.startswith(prefix) and key.endswith(suffix) and len(key) > len(prefix + suffix)
    ]
