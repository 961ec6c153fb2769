"""Catalog tables: archive units (a graph), data object groups, data objects, declared rules.

These are the storage shape only; the API shapes live in ``schemas.py``.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from sae.catalog.text import search_text
from sae.db import Base, utcnow

#: Statuses of units and objects that are no longer archived: destroyed by a disposal (or
#: transferred out), or withdrawn within their quarantine (``sae.ingest.withdrawal``).
GONE = ("destroyed", "withdrawn")


class ArchiveUnit(Base):
    """An archive unit as described by the producer (SEDA ArchiveUnit)."""

    __tablename__ = "archive_units"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    transfer_id: Mapped[str] = mapped_column(ForeignKey("transfers.id"), index=True)
    sip_id: Mapped[str] = mapped_column(String(255))
    title: Mapped[str] = mapped_column(Text, default="")
    description: Mapped[str | None] = mapped_column(Text)
    #: The title without case or accents (``sae.catalog.text.fold``): what ``title=`` compares,
    #: and the full-text index's first, heavier, column.
    title_folded: Mapped[str] = mapped_column(Text, default="", server_default="")
    #: Title, description, identifiers, keywords and producer without case or accents
    #: (``sae.catalog.text.search_text``): the full-text index's body (``sae.catalog.fulltext``;
    #: database triggers keep the index in step with this column and the status).
    search_text: Mapped[str] = mapped_column(Text, default="", server_default="")
    description_level: Mapped[str | None] = mapped_column(String(64))
    start_date: Mapped[str | None] = mapped_column(String(64))
    end_date: Mapped[str | None] = mapped_column(String(64))
    producer: Mapped[str] = mapped_column(String(255), index=True)
    # The whole SEDA <Content> element as received, so no producer metadata is ever lost.
    content_xml: Mapped[bytes] = mapped_column(LargeBinary)
    # The declared <Management> block, as parsed (rules per category), for display and retention.
    management: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    data_object_group_id: Mapped[str | None] = mapped_column(
        ForeignKey("data_object_groups.id"), index=True
    )
    status: Mapped[str] = mapped_column(String(16), default="active", index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def forget_description(self) -> None:
        """Drop what the producer described (Content, description) of a unit no longer
        archived; its title and identifier stay, and so does what finds it by them."""
        self.content_xml = b""
        self.description = None
        self.search_text = search_text(self.title, None, self.sip_id)


class UnitLink(Base):
    """An edge parent → child of the unit graph (SEDA allows several parents)."""

    __tablename__ = "unit_links"

    parent_id: Mapped[str] = mapped_column(ForeignKey("archive_units.id"), primary_key=True)
    child_id: Mapped[str] = mapped_column(
        ForeignKey("archive_units.id"), primary_key=True, index=True
    )
    position: Mapped[int] = mapped_column(default=0)


class UnitRule(Base):
    """One rule reference declared on a unit (or inherited from ManagementMetadata)."""

    __tablename__ = "unit_rules"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    unit_id: Mapped[str] = mapped_column(ForeignKey("archive_units.id"), index=True)
    category: Mapped[str] = mapped_column(String(32))
    rule_id: Mapped[str] = mapped_column(String(255), index=True)
    start_date: Mapped[date | None]


class DataObjectGroup(Base):
    """A group of versions of one document (original, dissemination copy…)."""

    __tablename__ = "data_object_groups"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    transfer_id: Mapped[str] = mapped_column(ForeignKey("transfers.id"), index=True)
    sip_id: Mapped[str] = mapped_column(String(255))


class DataObject(Base):
    """A binary (or physical) data object with its fixity information."""

    __tablename__ = "data_objects"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    transfer_id: Mapped[str] = mapped_column(ForeignKey("transfers.id"), index=True)
    group_id: Mapped[str] = mapped_column(ForeignKey("data_object_groups.id"), index=True)
    sip_id: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16), default="binary")
    uri: Mapped[str | None] = mapped_column(Text)
    filename: Mapped[str | None] = mapped_column(Text)
    data_object_version: Mapped[str | None] = mapped_column(String(64))
    size: Mapped[int | None] = mapped_column(BigInteger)
    sha512: Mapped[str | None] = mapped_column(String(128), index=True)
    declared_digest: Mapped[str | None] = mapped_column(String(256))
    declared_algorithm: Mapped[str | None] = mapped_column(String(32))
    mime_type: Mapped[str | None] = mapped_column(String(255))
    declared_mime_type: Mapped[str | None] = mapped_column(String(255))
    declared_format_id: Mapped[str | None] = mapped_column(String(64))
    format_litteral: Mapped[str | None] = mapped_column(Text)
    #: The format identified from the content against PRONOM (``sae.ingest.identify``), not
    #: the declared one: PUID, format name and version as PRONOM names them.
    format_puid: Mapped[str | None] = mapped_column(String(64))
    format_name: Mapped[str | None] = mapped_column(Text)
    format_version: Mapped[str | None] = mapped_column(String(255))
    storage_key: Mapped[str | None] = mapped_column(String(255))
    #: How the object was scanned from paper, when its manifest says (``Metadata/Image`` in
    #: MIX, ``seda.Digitization``): ``scanner``, ``resolution_dpi``, ``operator``,
    #: ``scan_date`` (ISO), ``paper_original`` (``kept``/``destroyed``); None otherwise.
    scan_chain: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # active | destroyed | integrity_failed
    status: Mapped[str] = mapped_column(String(24), default="active", index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ObjectText(Base):
    """The text extracted from one data object (a PDF's text layer), folded as the index sees
    it: derived data, recomputed from the object's bytes (``sae.catalog.objecttext``), which
    feeds the search document of the units of the object's group. A database trigger (migration
    ``0021_object_text``) deletes the row when its object is destroyed or withdrawn."""

    __tablename__ = "object_texts"

    object_id: Mapped[str] = mapped_column(
        ForeignKey("data_objects.id", ondelete="CASCADE"), primary_key=True
    )
    #: ``text``: text was found; ``empty``: the object was read, it has no text layer (a scan)
    #: or is not readable as a PDF (broken, encrypted) — not an error of the archive.
    state: Mapped[str] = mapped_column(String(16))
    #: Where the text comes from: ``pdf`` (the object's own text layer).
    source: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text, default="")
    pages: Mapped[int] = mapped_column(default=0)
    #: Why there is no text (a broken or encrypted PDF), for the archivist; None otherwise.
    note: Mapped[str | None] = mapped_column(Text)
    extracted_at: Mapped[datetime] = mapped_column(default=utcnow)


Index("ix_archive_units_transfer_sip", ArchiveUnit.transfer_id, ArchiveUnit.sip_id, unique=True)
Index("ix_data_objects_transfer_sip", DataObject.transfer_id, DataObject.sip_id, unique=True)
