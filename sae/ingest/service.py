"""Ingest: a SIP in, an ArchiveTransferReply out. All or nothing.

The pipeline is a sequence of named steps, each testable alone::

    open_archive → locate_manifest → parse_manifest → authorise → check_duplicate
      → check_package → check_rules → scan_package (antivirus, sae.ingest.antivirus)
      → check_contract → store_objects (PRONOM identification, sae.ingest.identify)
      → check_contract_formats → catalogue_rows → build_atr
      → transfer_events → store_transfer_record          (prepare: reads the database only)
      → write_accepted                                   (the writes, for one transfer or a group)

``catalogue_rows`` (and the insert of its rows, in ``write_accepted``) is the catalog's own code
(:mod:`sae.catalog.rows`): the catalog owns how its rows are written.

A step that finds faults raises :class:`SipRefused` with all the faults it found; the pipeline
then discards every copy it wrote, keeps a refused-transfer record with its faults (evidence of
the refusal) and answers KO. Storage writes happen before the catalog commit: a crash between
the two leaves only unreferenced copies, which ``sae fsck`` finds and nothing ever serves.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import re
import threading
from collections.abc import Generator, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select
from sqlalchemy.orm import Session

import seda
from sae.auth.errors import ProducerNotAllowed
from sae.auth.service import Principal
from sae.catalog.models import ArchiveUnit, DataObject
from sae.catalog.records import record_of, transfer_values
from sae.catalog.rows import (
    CatalogueRows,
    StoredBinary,
    catalogue_rows,
    parents_of_new_units,
    storage_key,
    write_catalogue,
)
from sae.config import Settings
from sae.contracts import service as contracts
from sae.db import new_id, utcnow
from sae.fileio import TrailingDigest
from sae.ingest import antivirus, formats, identify
from sae.ingest.errors import DuplicateTransfer, IngestFault, Refusal, SipRefused
from sae.ingest.hashing import HashingReader, SpanReader, hashlib_name
from sae.ingest.models import Transfer
from sae.ingest.transfer_record import KIND as TRANSFER_RECORD
from sae.ingest.transfer_record import build_transfer_record, transfer_record_key
from sae.ingest.ziparchive import SipArchive, ZipLimits, normalise_name
from sae.journal.service import AppendedLeaf, NewEvent, append_event, append_events
from sae.retention import compute, dates
from sae.retention.models import Rule
from sae.storage.base import StorageOffer, StoredObject, write_batch
from sae.storage.errors import StorageError
from sae.storage.models import MetadataCopy
from sae.storage.service import discard_copies, store_copies

log = logging.getLogger("sae.ingest")

MANIFEST = "manifest.xml"
#: The shortest lock given to a copy (see ``lock_dates``).
MIN_LOCK_DAYS = 30
DEFAULT_REPLY_VERSION = seda.SedaVersion("2.2")


@dataclass
class IngestOutcome:
    """What the API answers: the transfer row, its ATR, and the archived identifiers."""

    transfer: Transfer
    atr: bytes
    units: list[ArchiveUnit] = field(default_factory=list)
    objects: list[DataObject] = field(default_factory=list)
    #: The journal leaf that records the decision (``ingest.accepted`` or ``ingest.rejected``),
    #: once written.
    leaf_index: int | None = None
    #: Why the SIP was refused (None when accepted).
    refusal: Refusal | None = None

    @property
    def accepted(self) -> bool:
        return self.transfer.status == "OK"


@dataclass
class IngestEnv:
    """What ingest needs from the runtime (settings, offers of the strategy)."""

    settings: Settings
    offers: Sequence[StorageOffer]
    #: Whether the SIP must meet its ingest contract (``check_contract``). False only for the
    #: archives service's own records (the disposal circuit's documents, ``sae.retention.
    #: records``), which no depositor sends and no contract covers.
    enforce_contracts: bool = True


# --- steps -------------------------------------------------------------------------------------


def open_archive(path: Path, settings: Settings) -> SipArchive:
    """Vet the zip (paths, links, counts, sizes, ratios)."""
    limits = ZipLimits(
        max_entries=settings.max_zip_entries,
        max_uncompressed_bytes=settings.max_uncompressed_bytes,
        max_compression_ratio=settings.max_compression_ratio,
        max_manifest_bytes=settings.max_manifest_bytes,
    )
    return SipArchive(path, limits)


def locate_manifest(archive: SipArchive) -> str:
    """The manifest entry: ``manifest.xml`` at the root, and no other manifest beside it."""
    root_xml = sorted(
        name for name in archive.entries if "/" not in name and name.lower().endswith(".xml")
    )
    if MANIFEST not in archive.entries:
        where = ", ".join(root_xml) or None
        raise SipRefused(
            [IngestFault("sip.no_manifest", "no manifest.xml at the root of the SIP", where)]
        )
    others = [name for name in root_xml if name != MANIFEST]
    if others:
        raise SipRefused(
            [
                IngestFault(
                    "sip.several_manifests",
                    "more than one XML message at the root of the SIP; only manifest.xml may be",
                    ", ".join(others),
                )
            ]
        )
    return MANIFEST


def parse_manifest(data: bytes, settings: Settings) -> seda.TransferReport:
    """Validate the manifest in layers (hardened parse, XSD, rules the XSD cannot say)."""
    report = seda.validate_transfer(
        data,
        xsd_dir=settings.seda_xsd_dir,
        tolerances=frozenset(settings.seda_tolerances),
    )
    return report


def producer_of(transfer: seda.ArchiveTransfer) -> str:
    """The producing service: OriginatingAgencyIdentifier, else the transferring agency."""
    mm = transfer.package.management_metadata
    producer = mm.originating_agency_identifier if mm is not None else None
    return producer or transfer.transferring_agency_identifier or "unknown"


def authorise(principal: Principal, producer: str) -> None:
    """A depositor may only deposit for its own producing services."""
    if principal.role not in ("admin", "depositor"):
        raise ProducerNotAllowed(f"role {principal.role!r} may not deposit transfers")
    if principal.role == "depositor" and not principal.may_act_for(producer):
        raise ProducerNotAllowed(
            f"this token may not deposit for producing service {producer!r}",
            producer=producer,
        )


def check_duplicate(session: Session, transfer: seda.ArchiveTransfer) -> None:
    """The same MessageIdentifier from the same transferring agency is accepted once."""
    first = session.scalar(
        _ACCEPTED_ALREADY,
        {
            "message_identifier": transfer.message_identifier,
            "agency": transfer.transferring_agency_identifier,
        },
    )
    if first is not None:
        raise DuplicateTransfer(
            f"MessageIdentifier {transfer.message_identifier!r} from "
            f"{transfer.transferring_agency_identifier!r} was already accepted",
            first_transfer=first,
            first_transfer_url=f"/api/v1/transfers/{first}",
        )


_TRANSFERS = Transfer.__table__.c
#: Core, built once: every deposit asks, and wants one column.
_ACCEPTED_ALREADY = select(_TRANSFERS.id).where(
    _TRANSFERS.status == "OK",
    _TRANSFERS.message_identifier == bindparam("message_identifier"),
    _TRANSFERS.transferring_agency == bindparam("agency"),
)


def check_package(
    archive: SipArchive, transfer: seda.ArchiveTransfer, manifest: str
) -> dict[str, str]:
    """Every declared file is in the zip (size and digest declared), every file is declared.

    Returns the zip entry of each binary data object, by its SIP id.
    """
    faults: list[IngestFault] = []
    entry_of: dict[str, str] = {}
    for bdo in transfer.package.binary_data_objects:
        where = bdo.id
        if not bdo.uri:
            faults.append(
                IngestFault("sip.object_without_uri", "BinaryDataObject has no Uri", where)
            )
            continue
        name = archive.find(bdo.uri)
        if name is None:
            faults.append(
                IngestFault("sip.missing_file", f"file {bdo.uri!r} is not in the SIP", where)
            )
            continue
        if name in entry_of.values():
            faults.append(
                IngestFault("sip.file_declared_twice", f"file {bdo.uri!r} declared twice", where)
            )
        entry_of[bdo.id] = name
        if not (bdo.message_digest or "").strip():
            faults.append(IngestFault("sip.empty_digest", "MessageDigest is empty", where))
        elif not bdo.digest_algorithm or hashlib_name(bdo.digest_algorithm) is None:
            faults.append(
                IngestFault(
                    "sip.unknown_digest_algorithm",
                    f"digest algorithm {bdo.digest_algorithm!r} is not supported",
                    where,
                )
            )
    declared = set(entry_of.values())
    for name in sorted(archive.entries):
        if name != manifest and name not in declared:
            faults.append(
                IngestFault(
                    "sip.undeclared_file",
                    "file in the SIP that no BinaryDataObject declares",
                    normalise_name(name),
                )
            )
    if faults:
        raise SipRefused(faults)
    return entry_of


def check_rules(session: Session, transfer: seda.ArchiveTransfer) -> dict[str, Rule]:
    """Every rule id the SIP names exists in the referential, with the right category."""
    named: dict[str, tuple[str, str]] = {}
    blocks: list[tuple[str, seda.Management]] = []
    mm = transfer.package.management_metadata
    if mm is not None and mm.management is not None:
        blocks.append(("ManagementMetadata", mm.management))
    blocks.extend((unit.id, unit.management) for unit in transfer.package.archive_units)
    for where, management in blocks:
        for category, block in management.rules.items():
            for ref in block.rules:
                named.setdefault(ref.rule_id, (category, where))
            for rule_id in block.ref_non_rule_ids:
                named.setdefault(rule_id, (category, where))
    if not named:
        return {}
    found = {
        rule.id: rule for rule in session.scalars(select(Rule).where(Rule.id.in_(list(named))))
    }
    faults = []
    for rule_id, (category, where) in sorted(named.items()):
        rule = found.get(rule_id)
        if rule is None:
            faults.append(
                IngestFault(
                    "rules.unknown_rule",
                    f"rule {rule_id!r} ({category}) is not in the referential",
                    where,
                )
            )
        elif rule.type != category:
            faults.append(
                IngestFault(
                    "rules.wrong_category",
                    f"rule {rule_id!r} is a {rule.type}, used as {category}",
                    where,
                )
            )
    if faults:
        raise SipRefused(faults)
    return found


def check_contract(
    session: Session,
    archive: SipArchive,
    parsed: seda.ArchiveTransfer,
    entry_of: dict[str, str],
    rules: dict[str, Rule],
    manifest: bytes,
    checks: contracts.ChecksRun = contracts.ChecksRun(),  # noqa: B008 - frozen, never mutated
    puids: Mapping[str, str | None] | None = None,
) -> tuple[list[IngestFault], str | None]:
    """The SIP against its ingest contract (``ArchivalAgreement``) and the archival profile it
    names (:mod:`sae.contracts`): every clause broken refuses it, before anything is stored.
    Returns the warnings (an archival profile named that SAE does not know, without a contract)
    and the contract that applies (None: deposited without one).

    ``checks`` says which of the optional checks (antivirus, OCR) ran on the SIP, for a
    contract that makes them mandatory. Each object's facts are measured from its bytes (the
    zip entry's size, libmagic's MIME type), only when a clause looks at them. ``puids`` is
    the PRONOM identification of each object's content, by SIP id, when the ingest identified
    formats before this step (a format clause then matches PUIDs; an identification made while
    storing goes through :func:`sae.contracts.service.object_faults` instead).
    """

    def objects() -> list[contracts.ObjectFacts]:
        return [
            contracts.ObjectFacts(
                sip_id=bdo.id,
                size=archive.entries[entry_of[bdo.id]].file_size,
                mime_type=formats.identify(_head(archive, entry_of[bdo.id])),
                puid=(puids or {}).get(bdo.id),
                version=bdo.data_object_version,
                group_id=bdo.group_id,
            )
            for bdo in parsed.package.binary_data_objects
        ]

    verdict = contracts.evaluate(
        session,
        parsed,
        producer_of(parsed),
        rules=rules,
        objects=objects,
        manifest=manifest,
        checks=checks,
    )
    if verdict.faults:
        raise SipRefused(
            [IngestFault(f.code, f.message, f.where) for f in verdict.faults], Refusal.INVALID
        )
    return [IngestFault(w.code, w.message, w.where) for w in verdict.warnings], verdict.contract_id


def check_contract_formats(
    session: Session,
    contract_id: str,
    parsed: seda.ArchiveTransfer,
    stored: Sequence[StoredBinary],
    checks: contracts.ChecksRun,
) -> None:
    """The contract's format clause again, now that storing identified each file against
    PRONOM (``check_contract`` left PUID-less files to this step): a format the contract does
    not accept refuses the transfer, and the copies just made are discarded by the caller."""
    bdos = {bdo.id: bdo for bdo in parsed.package.binary_data_objects}
    facts = [
        contracts.ObjectFacts(
            sip_id=item.sip_id,
            size=item.size,
            mime_type=item.mime_type,
            puid=item.format_puid,
            version=bdos[item.sip_id].data_object_version if item.sip_id in bdos else None,
            group_id=bdos[item.sip_id].group_id if item.sip_id in bdos else None,
        )
        for item in stored
    ]
    done = dataclasses.replace(checks, formats_identified_later=False)
    faults = contracts.object_faults(session, contract_id, facts, done)
    if faults:
        raise SipRefused([IngestFault(f.code, f.message, f.where) for f in faults], Refusal.INVALID)


def _head(archive: SipArchive, name: str) -> bytes:
    """The first bytes of an entry (what libmagic reads), without reading the rest."""
    stream = cast(Generator[bytes, None, None], archive.stream(name))
    head = b""
    try:
        for chunk in stream:
            head += chunk
            if len(head) >= HashingReader.SNIFF_BYTES:
                break
    finally:
        stream.close()
    return head[: HashingReader.SNIFF_BYTES]


def store_objects(
    archive: SipArchive,
    transfer: seda.ArchiveTransfer,
    entry_of: dict[str, str],
    offers: Sequence[StorageOffer],
    retain_until: dict[str, datetime | None],
    *,
    threads: int = 1,
) -> list[StoredBinary]:
    """Stream each file once: declared digest, SHA-512 and the first copy in the same pass.

    ``threads`` files are stored at once (reading the zip, hashing and writing mostly run
    outside the GIL). A digest mismatch does not stop the work (the ATR lists every bad file,
    in the manifest's order) but nothing more is stored once one is found, and everything
    written is discarded before refusing. The copies of the transfer are made durable together
    once the last one is written (on the local offer: each file, then each directory once,
    instead of four fsyncs per object), before anything is acknowledged.
    """
    bdos = transfer.package.binary_data_objects
    stored: list[StoredBinary] = []  # every file with copies, as soon as it has them
    lock = threading.Lock()
    faulty = threading.Event()  # once set, the remaining files are only checked

    def check_and_store(bdo: seda.BinaryDataObject) -> tuple[StoredBinary, list[IngestFault]]:
        item, faults = _store_one(
            archive, entry_of[bdo.id], bdo, offers, retain_until, store=not faulty.is_set()
        )
        if faults:
            faulty.set()
        if item.copies:
            with lock:
                stored.append(item)
        return item, faults

    try:
        try:
            with write_batch(offers) as join:
                if threads <= 1 or len(bdos) <= 1:
                    outcomes = [check_and_store(bdo) for bdo in bdos]
                else:

                    def in_batch(
                        bdo: seda.BinaryDataObject,
                    ) -> tuple[StoredBinary, list[IngestFault]]:
                        with join():
                            return check_and_store(bdo)

                    with ThreadPoolExecutor(threads, thread_name_prefix="sae-store") as pool:
                        futures = [pool.submit(in_batch, bdo) for bdo in bdos]
                        try:
                            outcomes = [future.result() for future in futures]
                        except BaseException:
                            for future in futures:
                                future.cancel()
                            raise  # the pool waits for the files being written first
        except StorageError as exc:
            # Raised by the durability barrier itself: the copies may not survive a power cut.
            raise SipRefused(
                [IngestFault("storage.write_failed", f"the copies were not made durable: {exc}")],
                Refusal.STORAGE_UNAVAILABLE,
            ) from exc
    except BaseException:
        discard_stored(offers, stored)
        raise
    faults = [fault for _, found in outcomes for fault in found]
    if faults:
        discard_stored(offers, stored)
        # Copies that differ from one another are an offer's failure, whatever else is wrong.
        storage_failed = any(fault.code == READBACK_MISMATCH for fault in faults)
        raise SipRefused(faults, Refusal.STORAGE_UNAVAILABLE if storage_failed else Refusal.INVALID)
    return [item for item, _ in outcomes]


def _store_one(
    archive: SipArchive,
    name: str,
    bdo: seda.BinaryDataObject,
    offers: Sequence[StorageOffer],
    retain_until: dict[str, datetime | None],
    *,
    store: bool,
) -> tuple[StoredBinary, list[IngestFault]]:
    """Check one file against its declaration and (when ``store``) store its copies.

    Returns the file and its faults; the file has no copies when nothing was stored.
    """
    faults: list[IngestFault] = []
    # When the file is stored, the first offer computes its SHA-512 (and verifies it by reading
    # back): the reader does not hash it a second time. A declared SHA-512 is handed to the
    # offers as the digest the copies must read back as: each byte is then hashed once.
    declared = (bdo.message_digest or "").strip().lower()
    declared_is_sha512 = hashlib_name(bdo.digest_algorithm or "") == "sha512"
    expected = declared if declared_is_sha512 and _SHA512_HEX.fullmatch(declared) else None
    span = archive.span(name) if store and expected is not None else None
    reader: HashingReader
    if span is not None:
        # Stored in the zip and checked against its declared SHA-512 on the read-back: copied
        # straight from the SIP's file (no CRC-32, and in the kernel on the local offer). A
        # copy that does not read back as declared is read again through the zip below, to
        # tell a corrupt entry from a wrong declaration.
        reader = SpanReader(*span)
    else:
        reader = HashingReader(archive.stream(name), bdo.digest_algorithm, sha512=not store)
    object_id = new_id()
    copies: list[StoredObject] = []
    if not store:
        reader.drain()
    else:
        try:
            copies = store_copies(
                offers,
                storage_key(object_id),
                reader,  # type: ignore[arg-type]  # read() is all offers use
                retain_until=retain_until.get(bdo.id),
                expected_sha512=expected,
            )
        except StorageError as exc:
            if isinstance(reader.failure, SipRefused):
                raise reader.failure from None
            if expected is not None:
                reader = _rehash(archive, name, bdo)
            if expected is None or reader.sha512.hexdigest() == expected:
                raise SipRefused(
                    [IngestFault("storage.write_failed", f"copy not stored: {exc}", bdo.id)],
                    Refusal.STORAGE_UNAVAILABLE,
                ) from exc
            # The copy did not read back as declared because the file is not what was declared:
            # the depositor's fault, reported below like any other digest mismatch.
    if copies:
        written = copies[0].size
        reader.drain()
        if reader.size != written or copies[0].sha512 is None:
            # An offer must consume the whole stream and report its digest.
            discard_stored_key(offers, storage_key(object_id))
            raise SipRefused(
                [IngestFault("storage.write_failed", "the copy is incomplete", bdo.id)],
                Refusal.STORAGE_UNAVAILABLE,
            )
    sha512 = copies[0].sha512 if copies else reader.sha512.hexdigest()
    assert sha512 is not None
    if reader.declared_hexdigest(sha512).lower() != declared:
        faults.append(
            IngestFault(
                "sip.digest_mismatch",
                f"declared {bdo.digest_algorithm} digest does not match the file {bdo.uri!r}",
                bdo.id,
            )
        )
    if bdo.size is not None and bdo.size != reader.size:
        faults.append(
            IngestFault(
                "sip.size_mismatch",
                f"declared Size {bdo.size}, file has {reader.size} bytes",
                bdo.id,
            )
        )
    if any(copy.sha512 != sha512 for copy in copies):
        faults.append(IngestFault(READBACK_MISMATCH, "the copies differ from one another", bdo.id))
    found = identify_format(reader.head, reader.tail, reader.size)
    mismatch = check_format(found, bdo)
    if mismatch is not None:
        faults.append(mismatch)
    item = StoredBinary(
        sip_id=bdo.id,
        object_id=object_id,
        size=reader.size,
        sha512=sha512,
        mime_type=formats.identify(reader.head[: formats.SNIFF_BYTES], bdo),
        copies=copies,
        format_puid=found.puid if found else None,
        format_name=found.name if found else None,
        format_version=found.version if found else None,
    )
    return item, faults


def identify_format(head: bytes, tail: bytes, size: int) -> identify.Identification | None:
    """The PRONOM format of a file from its first and last bytes (``sae.ingest.identify``)."""
    return identify.identify(head, tail, size)


def check_format(
    found: identify.Identification | None, bdo: seda.BinaryDataObject
) -> IngestFault | None:
    """``format.mismatch`` when the declared FormatId or MimeType contradicts the content
    (both values in the message); benign differences are not contradictions (docs/ingest.md)."""
    fmt = bdo.format
    if fmt is None:
        return None
    why = identify.contradiction(found, declared_puid=fmt.format_id, declared_mime=fmt.mime_type)
    if why is None:
        return None
    return IngestFault(FORMAT_MISMATCH, f"file {bdo.uri!r}: {why}", bdo.id)


_SHA512_HEX = re.compile(r"[0-9a-f]{128}")
#: A declared format that the content contradicts.
FORMAT_MISMATCH = "format.mismatch"
#: The fault of copies that do not read back alike (an offer's failure, not the SIP's).
READBACK_MISMATCH = "storage.readback_mismatch"


def _rehash(archive: SipArchive, name: str, bdo: seda.BinaryDataObject) -> HashingReader:
    """Read a file of the SIP again, computing its SHA-512 (only after a failed copy)."""
    reader = HashingReader(archive.stream(name), bdo.digest_algorithm)
    reader.drain()
    return reader


def lock_dates(dates: dict[str, datetime | None]) -> dict[str, datetime | None]:
    """Lock dates as storage can take them: never in the past.

    An old record may reach the archive after its DUA has run out; it is still locked for a
    while (an S3 server refuses a retain-until in the past), and the disposal circuit, which
    takes longer than that, decides its fate.
    """
    floor = utcnow() + timedelta(days=MIN_LOCK_DAYS)
    return {key: None if d is None else max(d, floor) for key, d in dates.items()}


def discard_stored(offers: Sequence[StorageOffer], stored: list[StoredBinary]) -> None:
    """Remove copies written for a transfer that is refused; what cannot go is logged."""
    for item in stored:
        discard_stored_key(offers, storage_key(item.object_id))


def discard_stored_key(offers: Sequence[StorageOffer], key: str) -> None:
    """Remove one key's copies, logging what cannot go (reconciliation will report it)."""
    try:
        discard_copies(offers, key)
    except StorageError as exc:
        log.warning("ingest.discard_incomplete key=%s: %s", key, exc)


def transfer_events(
    principal: Principal,
    transfer_row: Transfer,
    units: list[ArchiveUnit],
    objects: list[DataObject],
) -> list[NewEvent]:
    """The journal leaves of an accepted transfer: one per stored object (it carries its
    SHA-512), then one for the transfer."""
    unit_of_group: dict[str, ArchiveUnit] = {}
    for unit in units:
        if unit.data_object_group_id is not None:
            unit_of_group.setdefault(unit.data_object_group_id, unit)
    events = [
        NewEvent(
            type="ingest.object_stored",
            actor=principal.actor,
            transfer_id=transfer_row.id,
            unit_id=owner.id if (owner := unit_of_group.get(obj.group_id)) else None,
            object_id=obj.id,
            object_digests={obj.id: obj.sha512},
            # Title and producer are in the leaf so that a proof bundle's description of the
            # object is covered by the proof, not just its bytes.
            payload={
                "size": obj.size,
                "uri": obj.uri,
                "sip_id": obj.sip_id,
                "mime_type": obj.mime_type,
                "format_puid": obj.format_puid,
                "producer": owner.producer if owner else transfer_row.producer,
                "title": owner.title if owner else None,
            },
        )
        for obj in objects
        if obj.kind == "binary" and obj.sha512 is not None
    ]
    events.append(
        NewEvent(
            type="ingest.accepted",
            actor=principal.actor,
            transfer_id=transfer_row.id,
            payload={
                "message_identifier": transfer_row.message_identifier,
                "transferring_agency": transfer_row.transferring_agency,
                "producer": transfer_row.producer,
                "seda_version": transfer_row.seda_version,
                "sip_sha512": transfer_row.sip_sha512,
                "units": len(units),
                "objects": len(objects),
            },
        )
    )
    return events


# --- replies -----------------------------------------------------------------------------------


def build_atr(
    transfer_row: Transfer,
    transfer: seda.ArchiveTransfer | None,
    faults: list[IngestFault],
    warnings: list[IngestFault],
    units: list[ArchiveUnit],
    objects: list[DataObject],
    archival_agency: str,
    extra_comments: Sequence[str] = (),
) -> bytes:
    """The ArchiveTransferReply, in the SIP's SEDA version (2.2 when it could not be read)."""
    version = transfer.version if transfer is not None else DEFAULT_REPLY_VERSION
    now = utcnow()
    group_of: dict[str, str] = {}
    if transfer is not None:
        package = transfer.package
        for bdo in package.binary_data_objects:
            if bdo.group_id:
                group_of[bdo.id] = bdo.group_id
        for pdo in package.physical_data_objects:
            if pdo.group_id:
                group_of[pdo.id] = pdo.group_id
    events = [
        seda.ReplyEvent(type=f.code, outcome="KO", detail=f.message, where=f.where, date=now)
        for f in faults
    ] + [
        seda.ReplyEvent(type=w.code, outcome="WARNING", detail=w.message, where=w.where, date=now)
        for w in warnings
    ]
    if not faults:
        events.insert(
            0,
            seda.ReplyEvent(
                type="ingest.accepted",
                outcome="OK",
                detail=f"{len(units)} archive units, {len(objects)} data objects archived",
                where=None,
                date=now,
            ),
        )
    reply = seda.ArchiveTransferReply(
        version=version,
        message_identifier=f"ATR-{transfer_row.id}",
        date=now,
        message_request_identifier=(
            transfer.message_identifier
            if transfer is not None and transfer.message_identifier
            else f"UNKNOWN-{transfer_row.id}"
        ),
        reply_code="KO" if faults else ("WARNING" if warnings else "OK"),
        grant_date=now if not faults else None,
        archival_agency_identifier=(
            transfer.archival_agency_identifier if transfer is not None else None
        )
        or archival_agency,
        transferring_agency_identifier=(
            transfer.transferring_agency_identifier if transfer is not None else None
        )
        or "UNKNOWN",
        comments=[f"SAE transfer {transfer_row.id}", *extra_comments],
        events=events,
        units=[seda.ReplyUnit(sip_id=u.sip_id, system_id=u.id, title=u.title) for u in units],
        objects=[
            seda.ReplyObject(
                sip_id=o.sip_id,
                group_sip_id=group_of.get(o.sip_id),
                system_id=o.id,
                group_system_id=o.group_id,
                kind="binary" if o.kind == "binary" else "physical",
                data_object_version=o.data_object_version,
                message_digest=o.sha512,
                digest_algorithm="SHA-512" if o.sha512 else None,
                size=o.size,
            )
            for o in objects
        ],
    )
    return seda.write_archive_transfer_reply(reply)


# --- the pipeline ------------------------------------------------------------------------------


def _seda_faults(items: Sequence[seda.Fault]) -> list[IngestFault]:
    return [IngestFault(f.code, f.message, f.where) for f in items]


def _manifest_refusal(report: seda.TransferReport) -> Refusal:
    """Unreadable when the manifest is not even well-formed XML (the faults of seda's first
    layer, ``xml.*``, and nothing read); invalid otherwise, including a well-formed document
    that is not a SEDA message of a known version."""
    if report.transfer is None and any(f.code.startswith("xml.") for f in report.errors):
        return Refusal.UNREADABLE
    return Refusal.INVALID


@dataclass
class AcceptedTransfer:
    """An accepted transfer whose copies are durable, and everything its commit writes."""

    transfer_row: Transfer
    rows: CatalogueRows
    end_dates: list[dict[str, Any]]
    events: list[NewEvent]
    #: The copies of its description (``transfers/<id>.zip``), written with its catalogue.
    record_copies: list[MetadataCopy] = field(default_factory=list)
    #: Its ``ingest.accepted`` leaf, set by :func:`write_accepted` (valid once committed).
    leaf_index: int | None = None

    @property
    def outcome(self) -> IngestOutcome:
        row = self.transfer_row
        assert row.atr is not None
        return IngestOutcome(
            transfer=row,
            atr=row.atr,
            units=self.rows.units,
            objects=self.rows.objects,
            leaf_index=self.leaf_index,
        )

    def discard(self, offers: Sequence[StorageOffer]) -> None:
        """Remove the copies of a transfer that will not be committed, and its description."""
        for obj in self.rows.objects:
            if obj.storage_key:
                discard_stored_key(offers, obj.storage_key)
        if self.record_copies:
            discard_stored_key(offers, transfer_record_key(self.transfer_row.id))


def ingest(
    session: Session,
    env: IngestEnv,
    principal: Principal,
    sip_path: Path,
    *,
    sip_digest: TrailingDigest | None = None,
) -> IngestOutcome:
    """Run the whole pipeline on a SIP already spooled to ``sip_path``.

    ``sip_digest`` is the SIP's SHA-512 when the caller started computing it while spooling
    (saving a full read of a large SIP); otherwise a thread hashes the SIP while the ingest goes
    on. Either way it is only waited for once the files are stored.

    The caller commits: this is the ingest *within the caller's transaction*, for a transfer
    that is part of a larger act (``sae.retention.records``). A deposit that is its own unit of
    work goes through ``sae.ingest.deposit.ingest_and_commit`` instead. On refusal, the transfer
    row (status KO) and its journal event are the only things added to the session; every copy
    written has been discarded.
    """
    prepared = prepare(session, env, principal, sip_path, sip_digest=sip_digest)
    if isinstance(prepared, IngestOutcome):
        return prepared
    # The savepoint opens only when the first write comes: on SQLite a SAVEPOINT starts a
    # transaction, and one that reads first keeps a snapshot that cannot become a write once
    # another connection has committed (SQLITE_BUSY_SNAPSHOT, "database is locked" at once).
    savepoint = session.begin_nested()
    try:
        write_accepted(session, [prepared])
        savepoint.commit()
    except BaseException:
        savepoint.rollback()
        prepared.discard(env.offers)
        raise
    return prepared.outcome


def prepare(
    session: Session,
    env: IngestEnv,
    principal: Principal,
    sip_path: Path,
    *,
    sip_digest: TrailingDigest | None = None,
) -> IngestOutcome | AcceptedTransfer:
    """Everything before the commit's writes: the SIP checked, its copies stored and durable,
    and the rows and journal leaves of the transfer built (written by :func:`write_accepted`).

    Only reads the database. On refusal, returns the KO outcome, whose transfer row and journal
    event are added to the session (the caller commits them); every copy written has been
    discarded.
    """
    sip_size = sip_path.stat().st_size
    if sip_digest is None:
        sip_digest = TrailingDigest.of_file(sip_path)
    transfer_row = Transfer(
        id=new_id(),
        status="KO",
        received_at=utcnow(),
        submitted_by=principal.submitter,
        sip_size=sip_size,
    )
    parsed: seda.ArchiveTransfer | None = None
    warnings: list[IngestFault] = []
    stored: list[StoredBinary] = []
    record_tried = False  # the transfer's description may be on some offer: discard it too
    try:
        with open_archive(sip_path, env.settings) as archive:
            manifest = locate_manifest(archive)
            data = archive.read_small(manifest, env.settings.max_manifest_bytes)
            report = parse_manifest(data, env.settings)
            parsed = report.transfer
            warnings = _seda_faults(report.warnings)
            if parsed is not None:
                _describe(transfer_row, parsed)
            if report.errors or parsed is None:
                raise SipRefused(_seda_faults(report.errors), _manifest_refusal(report))
            authorise(principal, producer_of(parsed))
            check_duplicate(session, parsed)
            entry_of = check_package(archive, parsed, manifest)
            rules = check_rules(session, parsed)
            # Before anything is stored: an infected file refuses the transfer.
            scanned = antivirus.scan_package(archive, parsed, entry_of, env.settings)
            warnings += scanned
            checks = contracts.ChecksRun(
                antivirus=env.settings.clamd_socket is not None
                and not any(w.code == antivirus.NOT_SCANNED for w in scanned),
                ocr=env.settings.ocr,
                formats_identified_later=True,
            )
            contract_id: str | None = None
            if env.enforce_contracts:
                contract_warnings, contract_id = check_contract(
                    session, archive, parsed, entry_of, rules, data, checks
                )
                warnings += contract_warnings
            retain_until = lock_dates(compute.retain_until_by_object(parsed, rules))
            # One durability barrier for the objects and the transfer's description: the
            # description is written inside the objects' batch (nested batches join the
            # outermost), so a deposit pays no barrier of its own for it.
            with _durable_together(env.offers):
                stored = store_objects(
                    archive,
                    parsed,
                    entry_of,
                    env.offers,
                    retain_until,
                    threads=env.settings.ingest_threads,
                )
                if contract_id is not None:
                    check_contract_formats(session, contract_id, parsed, stored, checks)
                transfer_row.sip_sha512 = sip_digest.hexdigest()
                accepted = _accepted(
                    session, env, principal, transfer_row, parsed, stored, rules, warnings
                )
                record_tried = True
                accepted.record_copies = store_transfer_record(
                    env.offers,
                    accepted,
                    manifest=data,
                    manifest_name=manifest,
                    retain_until=record_lock(retain_until, parsed),
                )
        return accepted
    except SipRefused as refused:
        _discard_written(env.offers, stored, transfer_row.id if record_tried else None)
        transfer_row.sip_sha512 = sip_digest.hexdigest()
        # A step that does not say its kind (the zip reader) refuses an unreadable SIP until the
        # manifest is read, an invalid one after.
        kind = refused.kind or (Refusal.UNREADABLE if parsed is None else Refusal.INVALID)
        return _refuse(
            session, env, principal, transfer_row, parsed, refused.faults, warnings, kind
        )
    except BaseException:
        sip_digest.abandon()
        _discard_written(env.offers, stored, transfer_row.id if record_tried else None)
        raise


def _accepted(
    session: Session,
    env: IngestEnv,
    principal: Principal,
    transfer_row: Transfer,
    parsed: seda.ArchiveTransfer,
    stored: list[StoredBinary],
    rules: dict[str, Rule],
    warnings: list[IngestFault],
) -> AcceptedTransfer:
    """The rows, end dates, ATR and journal leaves of a transfer whose objects are stored."""
    transfer_row.status = "OK"
    transfer_row.completed_at = utcnow()
    transfer_row.warnings = [w.as_dict() for w in warnings]
    # Everything the transaction writes is built before its first write: from that write
    # to the commit, SQLite lets no other connection write (nor, from the journal's append
    # on, PostgreSQL), so only the statements and the commit happen in between.
    rows = catalogue_rows(transfer_row, parsed, stored)
    units, objects = rows.units, rows.objects
    end_dates = dates.compute_new_units(session, units, parents_of_new_units(units, parsed), rules)
    transfer_row.unit_count = len(units)
    transfer_row.object_count = len(objects)
    transfer_row.total_bytes = sum(o.size or 0 for o in objects)
    transfer_row.atr = build_atr(
        transfer_row,
        parsed,
        [],
        warnings,
        units,
        objects,
        env.settings.origin,
        [
            "Journal: the leaves of this transfer and the signed, time-stamped tree head "
            f"covering them: /api/v1/transfers/{transfer_row.id}"
        ],
    )
    events = transfer_events(principal, transfer_row, units, objects)
    return AcceptedTransfer(transfer_row, rows, end_dates, events)


@contextmanager
def _durable_together(offers: Sequence[StorageOffer]) -> Iterator[None]:
    """A write batch whose barrier's failure refuses the SIP as the offers' fault."""
    try:
        with write_batch(offers):
            yield
    except StorageError as exc:
        # Raised by the durability barrier itself: the copies may not survive a power cut.
        raise SipRefused(
            [IngestFault("storage.write_failed", f"the copies were not made durable: {exc}")],
            Refusal.STORAGE_UNAVAILABLE,
        ) from exc


def record_lock(
    retain_until: dict[str, datetime | None], parsed: seda.ArchiveTransfer
) -> datetime | None:
    """Until when a transfer's description is locked: as long as the longest-kept of its
    objects, since it is what says what they are (a description that expired first would
    leave anonymous bytes). Permanent (None) when one object is, and when the transfer has no
    binary object: nothing then dates it, and a description is small. Extended with its
    objects' locks (``sae.retention``)."""
    ends = [retain_until.get(bdo.id) for bdo in parsed.package.binary_data_objects]
    if not ends or any(end is None for end in ends):
        return None
    return max(end for end in ends if end is not None)


def store_transfer_record(
    offers: Sequence[StorageOffer],
    accepted: AcceptedTransfer,
    *,
    manifest: bytes,
    manifest_name: str,
    retain_until: datetime | None,
) -> list[MetadataCopy]:
    """Write ``transfers/<id>.zip`` (manifest, ATR, record) to every offer of the strategy, and
    return its ``metadata_copies`` rows (written with the catalogue). An offer's failure
    refuses the SIP (503): a transfer is acknowledged only once its description is on every
    offer."""
    row = accepted.transfer_row
    assert row.atr is not None
    record = record_of(row, accepted.rows, accepted.end_dates, manifest_name=manifest_name)
    data = build_transfer_record(manifest, row.atr, record, received_at=row.received_at)
    key = transfer_record_key(row.id)
    digest = hashlib.sha512(data).hexdigest()
    # The description's digest goes into the transfer's ingest.accepted leaf: a rebuild from
    # an offer then checks every description against the signed journal, byte for byte.
    decision = accepted.events[-1]
    assert decision.type == "ingest.accepted"
    decision.payload["description_sha512"] = digest
    try:
        copies = store_copies(
            offers,
            key,
            io.BytesIO(data),
            retain_until=retain_until,
            expected_sha512=digest,
        )
    except StorageError as exc:
        raise SipRefused(
            [IngestFault("storage.write_failed", f"the transfer's record was not stored: {exc}")],
            Refusal.STORAGE_UNAVAILABLE,
        ) from exc
    return [
        MetadataCopy(
            offer=copy.offer,
            key=key,
            kind=TRANSFER_RECORD,
            transfer_id=row.id,
            sha512=copy.sha512 or "",
            size=copy.size,
            stored_at=copy.stored_at or utcnow(),
            quarantine_ends_at=copy.quarantine_ends_at,
        )
        for copy in copies
    ]


def _discard_written(
    offers: Sequence[StorageOffer], stored: list[StoredBinary], transfer_id: str | None
) -> None:
    """Remove what a transfer that is not accepted wrote: its objects, its description."""
    discard_stored(offers, stored)
    if transfer_id is not None:
        discard_stored_key(offers, transfer_record_key(transfer_id))


def write_accepted(session: Session, accepted: Sequence[AcceptedTransfer]) -> list[AppendedLeaf]:
    """Write accepted transfers in the caller's transaction: their rows, one multi-row INSERT
    per table for all of them, their end dates, and their journal leaves as one append (in the
    order given: each transfer's objects, then its ``ingest.accepted``); those leaves."""
    for item in accepted:
        session.add(item.transfer_row)
    write_catalogue(session, CatalogueRows.merge([item.rows for item in accepted]))
    record_copies = [copy for item in accepted for copy in item.record_copies]
    if record_copies:  # one INSERT for the group, in the same transaction as the catalogue
        # Core on the session's connection, as the catalogue's rows (``write_catalogue``): this
        # runs in the group commit's serial chain, where the ORM's bulk path cost more than
        # the statement itself.
        values = [_values(copy) for copy in record_copies]
        session.connection().execute(insert(_METADATA_COPIES), values)
    dates.store_computed(session, [row for item in accepted for row in item.end_dates])
    # Last, just before the commit: appending takes the journal's sequence lock (held until
    # the commit on PostgreSQL), so nothing slow may come after it.
    leaves = append_events(session, [event for item in accepted for event in item.events])
    end = 0
    for item in accepted:  # each transfer's events end with its ingest.accepted
        end += len(item.events)
        item.leaf_index = leaves[end - 1].leaf_index
    return leaves


_METADATA_COPIES = cast(Table, MetadataCopy.__table__)
_METADATA_COLUMNS = frozenset(_METADATA_COPIES.columns.keys())


def _values(row: MetadataCopy) -> dict[str, Any]:
    return {key: value for key, value in row.__dict__.items() if key in _METADATA_COLUMNS}


def _refuse(
    session: Session,
    env: IngestEnv,
    principal: Principal,
    transfer_row: Transfer,
    parsed: seda.ArchiveTransfer | None,
    faults: list[IngestFault],
    warnings: list[IngestFault],
    kind: Refusal,
) -> IngestOutcome:
    """Keep the evidence of a refusal: the transfer row with its faults, one journal event."""
    if parsed is not None:
        _describe(transfer_row, parsed)
    transfer_row.status = "KO"
    transfer_row.completed_at = utcnow()
    transfer_row.errors = [f.as_dict() for f in faults]
    transfer_row.warnings = [w.as_dict() for w in warnings]
    transfer_row.unit_count = 0
    transfer_row.object_count = 0
    transfer_row.total_bytes = 0
    transfer_row.atr = build_atr(
        transfer_row, parsed, faults, warnings, [], [], env.settings.origin
    )
    session.add(transfer_row)
    session.flush()
    decision = append_event(
        session,
        type="ingest.rejected",
        actor=principal.actor,
        transfer_id=transfer_row.id,
        payload={
            "message_identifier": transfer_row.message_identifier,
            "transferring_agency": transfer_row.transferring_agency,
            "sip_sha512": transfer_row.sip_sha512,
            "errors": [f.as_dict() for f in faults[:100]],
            "error_count": len(faults),
            # What a rebuild from an offer restores of a refusal (GET /transfers/{id}, its
            # KO ATR): a refused transfer writes nothing to the offers (they may be what
            # refused it), so its leaf carries its row and its ATR, under the signed head.
            "transfer": transfer_values(transfer_row),
            "atr": transfer_row.atr.decode("utf-8"),
        },
    )
    return IngestOutcome(
        transfer=transfer_row, atr=transfer_row.atr, leaf_index=decision.leaf_index, refusal=kind
    )


def _describe(row: Transfer, parsed: seda.ArchiveTransfer) -> None:
    row.message_identifier = parsed.message_identifier
    row.transferring_agency = parsed.transferring_agency_identifier
    row.archival_agency = parsed.archival_agency_identifier
    row.producer = producer_of(parsed)
    row.seda_version = parsed.version
