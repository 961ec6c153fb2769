"""API shapes of units and objects."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel


class AppliedRuleOut(BaseModel):
    rule_id: str
    start_date: date | None
    end_date: date | None
    inherited: bool
    origin_unit: str | None


class CopyOut(BaseModel):
    offer: str
    key: str
    version_id: str | None
    size: int
    sha512: str
    stored_at: datetime
    last_checked_at: datetime | None
    last_check_ok: bool | None


class ScanChainOut(BaseModel):
    """How a scanned object was captured (from its manifest's MIX record); absent fields were
    not given."""

    scanner: str | None = None
    resolution_dpi: int | None = None
    operator: str | None = None
    scan_date: date | None = None
    #: ``kept`` or ``destroyed``: what became of the paper original after the scan.
    paper_original: str | None = None


class ObjectSummary(BaseModel):
    id: str
    sip_id: str
    kind: str
    filename: str | None
    size: int | None
    mime_type: str | None
    sha512: str | None
    status: str
    url: str
    #: The scan's capture record (scanner, resolution, operator, date, paper original), when
    #: the object was deposited with one; null otherwise.
    scan_chain: ScanChainOut | None = None


class ObjectOut(ObjectSummary):
    """A data object: format, fixity, and where its copies are."""

    transfer_id: str
    group_id: str
    uri: str | None
    data_object_version: str | None
    declared_digest: str | None
    declared_algorithm: str | None
    declared_mime_type: str | None
    format_id: str | None
    format_litteral: str | None
    #: Identified from the content against PRONOM (``format_id`` is the declared one).
    format_puid: str | None = None
    format_name: str | None = None
    format_version: str | None = None
    created_at: datetime
    units: list[str]
    copies: list[CopyOut]
    content_url: str
    proof_url: str


class UnitSummary(BaseModel):
    """A unit in a list. For a reader, a unit not yet communicable that the finding aid shows
    (``SAE_FINDING_AID_FIELDS``) has ``finding_aid_only`` true, and null in every field the
    setting does not name: ``sip_id`` (identifier), ``start_date``/``end_date`` (dates),
    ``producer``, ``description_level`` (level); ``title`` always."""

    id: str
    sip_id: str | None
    title: str | None
    producer: str | None
    description_level: str | None
    start_date: str | None
    end_date: str | None
    status: str
    transfer_id: str | None
    created_at: datetime
    url: str
    finding_aid_only: bool = False


class UnitOut(UnitSummary):
    """An archive unit with its rules (declared and inherited), end dates and objects."""

    description: str | None
    parents: list[str]
    children: list[str]
    declared_rules: dict[str, Any]
    rules: dict[str, list[AppliedRuleOut]]
    end_dates: dict[str, date | None]
    appraisal_end: date | None
    access_end: date | None
    #: Null (as are the rules and the Content XML) for a unit shown as a finding aid only.
    final_action: str | None
    held: bool | None
    communicable: bool
    objects: list[ObjectSummary]
    content_xml: str | None


class FacetValueOut(BaseModel):
    value: str
    count: int
    #: The record type's name in the schedule (``record_type`` facet only).
    label: str | None = None


class UnitPage(BaseModel):
    items: list[UnitSummary]
    next_cursor: str | None
    #: With ``facets=``: how many units the search selects in all pages; when
    #: ``total_exact`` is false, at least that many (a full-text search ranks and counts at
    #: most 2,000 matches, and the facets' counts are then those of the units ranked).
    total: int | None = None
    #: With ``facets=``: whether ``total`` (and the facets' counts) are exact.
    total_exact: bool | None = None
    #: With ``facets=``: per facet, the most frequent values and their counts.
    facets: dict[str, list[FacetValueOut]] | None = None
