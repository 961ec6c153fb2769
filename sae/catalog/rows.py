"""Writing the catalogue: the rows an accepted transfer adds, built in memory, then inserted.

The ingest builds them (:func:`catalogue_rows`) before its transaction's first write and inserts
them in its commit (:func:`write_catalogue`); the coming rebuild of the catalogue from the offers
writes through the same code. Nothing here commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, insert, inspect
from sqlalchemy.orm import Session

import seda
from sae.catalog.models import ArchiveUnit, DataObject, DataObjectGroup, UnitLink, UnitRule
from sae.catalog.text import fold, search_text
from sae.db import Base, new_id
from sae.retention import compute
from sae.storage.base import StoredObject
from sae.storage.models import ObjectCopy

if TYPE_CHECKING:
    from sae.ingest.models import Transfer


@dataclass
class StoredBinary:
    """A binary data object once written to every offer of the strategy
    (by the ingest's ``store_objects``)."""

    sip_id: str
    object_id: str
    size: int
    sha512: str
    mime_type: str | None
    copies: list[StoredObject]
    #: What PRONOM says the content is (``sae.ingest.identify``): PUID, name and version.
    format_puid: str | None = None
    format_name: str | None = None
    format_version: str | None = None


def storage_key(object_id: str) -> str:
    """Where an object's copies live on every offer."""
    return f"objects/{object_id}"


@dataclass
class CatalogueRows:
    """What a transfer adds to the catalogue, built before anything is written (ORM instances
    that stay detached: :func:`write_catalogue` inserts their values)."""

    groups: list[DataObjectGroup]
    objects: list[DataObject]
    copies: list[ObjectCopy]
    units: list[ArchiveUnit]
    links: list[UnitLink]
    rules: list[UnitRule]

    @classmethod
    def merge(cls, parts: Sequence[CatalogueRows]) -> CatalogueRows:
        """The rows of several transfers, table by table (one INSERT each for all)."""
        if len(parts) == 1:
            return parts[0]
        return cls(
            [row for part in parts for row in part.groups],
            [row for part in parts for row in part.objects],
            [row for part in parts for row in part.copies],
            [row for part in parts for row in part.units],
            [row for part in parts for row in part.links],
            [row for part in parts for row in part.rules],
        )


def catalogue_rows(
    transfer_row: Transfer,
    transfer: seda.ArchiveTransfer,
    stored: list[StoredBinary],
) -> CatalogueRows:
    """The units (graph), groups, objects, copies and declared rules of an accepted transfer."""
    package = transfer.package
    producer = transfer_row.producer or "unknown"
    groups: list[DataObjectGroup] = []
    group_ids: dict[str, str] = {}

    def group_of(sip_group: str | None, sip_id: str) -> str:
        key = sip_group or f"#{sip_id}"  # an object declared without a group gets its own
        if key not in group_ids:
            group_ids[key] = new_id()
            groups.append(
                DataObjectGroup(id=group_ids[key], transfer_id=transfer_row.id, sip_id=key)
            )
        return group_ids[key]

    for group in package.data_object_groups:
        group_of(group.id, group.id)

    by_sip = {item.sip_id: item for item in stored}
    objects: list[DataObject] = []
    copies: list[ObjectCopy] = []
    for bdo in package.binary_data_objects:
        item = by_sip[bdo.id]
        fmt = bdo.format
        objects.append(
            DataObject(
                id=item.object_id,
                transfer_id=transfer_row.id,
                group_id=group_of(bdo.group_id, bdo.id),
                sip_id=bdo.id,
                kind="binary",
                uri=bdo.uri,
                filename=(bdo.file_info.filename if bdo.file_info else None),
                data_object_version=bdo.data_object_version,
                size=item.size,
                sha512=item.sha512,
                declared_digest=(bdo.message_digest or "").strip(),
                # By its SEDA name: Pastell's xmlenc URIs (…#sha256) are longer than the column.
                declared_algorithm=(
                    seda.digest_algorithm_name(bdo.digest_algorithm)
                    if bdo.digest_algorithm
                    else None
                ),
                mime_type=item.mime_type,
                format_puid=item.format_puid,
                format_name=item.format_name,
                format_version=item.format_version,
                declared_mime_type=fmt.mime_type if fmt else None,
                declared_format_id=fmt.format_id if fmt else None,
                format_litteral=fmt.format_litteral if fmt else None,
                storage_key=storage_key(item.object_id),
                scan_chain=scan_chain(bdo.digitization),
                status="active",
            )
        )
        copies.extend(
            ObjectCopy(
                object_id=item.object_id,
                offer=copy.offer,
                key=copy.key,
                version_id=copy.version_id,
                size=copy.size,
                sha512=copy.sha512 or item.sha512,
                quarantine_ends_at=copy.quarantine_ends_at,
            )
            for copy in item.copies
        )
    for pdo in package.physical_data_objects:
        objects.append(
            DataObject(
                id=new_id(),
                transfer_id=transfer_row.id,
                group_id=group_of(pdo.group_id, pdo.id),
                sip_id=pdo.id,
                kind="physical",
                data_object_version=pdo.data_object_version,
                status="active",
            )
        )

    unit_ids = {unit.id: new_id() for unit in package.archive_units}
    mm = package.management_metadata
    transfer_management = mm.management if mm is not None else None
    # Kept on each root unit so that inheritance is computed from the catalogue alone.
    defaults = (
        compute.management_to_json(transfer_management) if transfer_management is not None else None
    )
    roots = set(package.root_unit_ids)
    units: list[ArchiveUnit] = []
    links: list[UnitLink] = []
    rules: list[UnitRule] = []
    for unit in package.archive_units:
        management = compute.management_to_json(unit.management)
        if defaults is not None and unit.id in roots:
            management = {**management, "_defaults": defaults}
        units.append(
            ArchiveUnit(
                id=unit_ids[unit.id],
                transfer_id=transfer_row.id,
                sip_id=unit.id,
                title=unit.title or "",
                title_folded=fold(unit.title or ""),
                description=unit.description,
                search_text=search_text(
                    unit.title, unit.description, unit.id, searched_fields(unit, producer)
                ),
                description_level=unit.description_level,
                start_date=unit.start_date,
                end_date=unit.end_date,
                producer=unit.originating_agency_identifier or producer,
                content_xml=unit.content_xml,
                management=management,
                data_object_group_id=(
                    group_ids.get(unit.data_object_group_id) if unit.data_object_group_id else None
                ),
                status="active",
            )
        )
        links.extend(
            UnitLink(parent_id=unit_ids[unit.id], child_id=unit_ids[child], position=position)
            for position, child in enumerate(unit.child_unit_ids)
        )
        rules.extend(
            UnitRule(
                unit_id=unit_ids[unit.id],
                category=category,
                rule_id=ref.rule_id,
                start_date=ref.start_date,
            )
            for category, block in unit.management.rules.items()
            for ref in block.rules
        )
    if transfer_management is not None:
        rules.extend(
            UnitRule(
                unit_id=unit_ids[root],
                category=category,
                rule_id=ref.rule_id,
                start_date=ref.start_date,
            )
            for root in package.root_unit_ids
            for category, block in transfer_management.rules.items()
            for ref in block.rules
        )
    return CatalogueRows(groups, objects, copies, units, links, rules)


def scan_chain(scan: seda.Digitization | None) -> dict[str, Any] | None:
    """The ``data_objects.scan_chain`` value of an object's capture record (None without)."""
    if scan is None or scan.is_empty():
        return None
    values: dict[str, Any] = {
        "scanner": scan.scanner,
        "resolution_dpi": scan.resolution_dpi,
        "operator": scan.operator,
        "scan_date": scan.scan_date.isoformat() if scan.scan_date else None,
        "paper_original": scan.paper_original,
    }
    return {key: value for key, value in values.items() if value is not None}


def digitization(values: dict[str, Any] | None) -> seda.Digitization | None:
    """:func:`scan_chain` back: the capture record a DIP or an outgoing transfer carries."""
    if not values:
        return None
    scan_date = values.get("scan_date")
    resolution = values.get("resolution_dpi")
    return seda.Digitization(
        scanner=values.get("scanner"),
        resolution_dpi=int(resolution) if resolution is not None else None,
        operator=values.get("operator"),
        scan_date=date.fromisoformat(scan_date) if scan_date else None,
        paper_original=values.get("paper_original"),
    )


def write_catalogue(session: Session, rows: CatalogueRows) -> None:
    """Insert the rows of :func:`catalogue_rows` (after their transfer's row); no commit.

    One multi-row INSERT per table: a transfer of thousands of files would spend longer in the
    ORM's unit of work than in storing them.
    """
    session.flush()  # the transfer row first
    for table in (rows.groups, rows.objects, rows.copies, rows.units, rows.links, rows.rules):
        _insert_all(session, table)


def parents_of_new_units(
    units: Sequence[ArchiveUnit], transfer: seda.ArchiveTransfer
) -> dict[str, list[str]]:
    """The parents of each new unit (catalogue ids), in the order the catalogue's links give
    them back (``sae.retention.dates.parents_closure``): the child's position under each
    parent, then the parent's id."""
    ids = {unit.sip_id: unit.id for unit in units}
    found: dict[str, list[tuple[int, str]]] = {}
    for unit in transfer.package.archive_units:
        for position, child in enumerate(unit.child_unit_ids):
            found.setdefault(ids[child], []).append((position, ids[unit.id]))
    return {child: [parent for _, parent in sorted(pairs)] for child, pairs in found.items()}


def _insert_all(session: Session, rows: Sequence[Base]) -> None:
    """One INSERT of ``rows`` (ORM instances, left detached) per set of columns they set.

    A column a row does not set takes its default; a column set to None is NULL. Core on the
    session's connection, not the ORM's bulk path: these run in the group commit's serial
    chain, and the rows need none of the ORM's bookkeeping.
    """
    if not rows:
        return
    mapper = inspect(type(rows[0]))
    columns = [(attr.key, attr.columns[0].key) for attr in mapper.column_attrs]
    # Rows that set the same columns go together.
    batches: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        state = row.__dict__
        values = {column: state[key] for key, column in columns if key in state}
        batches.setdefault(tuple(values), []).append(values)
    connection = session.connection()
    for batch in batches.values():
        connection.execute(insert(cast(Table, mapper.local_table)), batch)


def searched_fields(unit: seda.ArchiveUnit, producer: str) -> list[str | None]:
    """What else than title, description and SIP id a unit is found by: its identifiers, its
    keywords, its producer (``sae.catalog.text.search_text``)."""
    return [
        *unit.archival_agency_archive_unit_identifiers,
        *unit.originating_agency_archive_unit_identifiers,
        *unit.transferring_agency_archive_unit_identifiers,
        *unit.file_plan_positions,
        *(keyword.content for keyword in unit.keywords),
        unit.originating_agency_identifier or producer,
    ]
