"""The in-memory model of SEDA 2.1/2.2/2.3 messages: plain, typed, immutable dataclasses.

One model serves the three versions: version-specific elements are simply absent (``None`` or
empty) when a version does not have them. Dates that SEDA types as ``xsd:date`` are
:class:`datetime.date`; message dates (``xsd:dateTime``) are :class:`datetime.datetime`; the
descriptive dates of an archive unit (a union of date, dateTime, gYear...) are kept as written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal

from ._errors import Fault
from ._versions import SedaVersion

__all__ = [
    "MIX_NAMESPACE",
    "PAPER_ORIGINAL_FATES",
    "SCAN_NAMESPACE",
    "Digitization",
    "RULE_CATEGORIES",
    "Acknowledgement",
    "ArchiveDeliveryRequestReply",
    "ArchiveDestructionNotification",
    "ArchiveTransfer",
    "ArchiveTransferReply",
    "ArchiveUnit",
    "ArchiveUnitReference",
    "BinaryDataObject",
    "DataObjectGroup",
    "DataObjectPackage",
    "FileInfo",
    "FormatIdentification",
    "Keyword",
    "Management",
    "ManagementMetadata",
    "PhysicalDataObject",
    "ReplyCode",
    "ReplyEvent",
    "ReplyObject",
    "ReplyUnit",
    "RuleCategory",
    "RuleRef",
]

#: Rule categories in the order the XSD wants them inside ``Management`` (HoldRule from 2.2).
RULE_CATEGORIES: tuple[str, ...] = (
    "StorageRule",
    "AppraisalRule",
    "AccessRule",
    "DisseminationRule",
    "ReuseRule",
    "ClassificationRule",
    "HoldRule",
)


@dataclass(frozen=True, kw_only=True)
class FormatIdentification:
    """``FormatIdentification`` of a binary object (PRONOM id in ``format_id``)."""

    format_litteral: str | None = None
    mime_type: str | None = None
    format_id: str | None = None
    encoding: str | None = None


@dataclass(frozen=True, kw_only=True)
class FileInfo:
    """``FileInfo`` of a binary object; dates are kept as written (``xsd:dateTime`` text)."""

    filename: str
    creating_application_name: str | None = None
    creating_application_version: str | None = None
    date_created_by_application: str | None = None
    creating_os: str | None = None
    creating_os_version: str | None = None
    last_modified: str | None = None


#: MIX 2.0 (NISO Z39.87, Library of Congress): technical metadata of digital still images,
#: capture included. :class:`Digitization` is written in it.
MIX_NAMESPACE = "http://www.loc.gov/mix/v20"
#: The one fact of a digitization MIX has no element for (the paper original's fate), in MIX's
#: own ``Extension`` slot.
SCAN_NAMESPACE = "urn:sae:scan:1"
PAPER_ORIGINAL_FATES = ("kept", "destroyed")


@dataclass(frozen=True, kw_only=True)
class Digitization:
    """How a binary object was scanned from paper (the capture record of NF Z42-026).

    Written in the object's ``Metadata/Image`` (an ``OpenType``: any element of another
    namespace, valid in SEDA 2.1 to 2.3) as a MIX 2.0 ``mix`` element: ``scanner`` is
    ``ScannerCapture/ScannerModel/scannerModelName``, ``resolution_dpi`` the x and y
    ``SpatialMetrics`` sampling frequencies in ``in.``, ``operator`` the
    ``GeneralCaptureInformation/imageProducer``, ``scan_date`` its ``dateTimeCreated``;
    ``paper_original`` (``kept`` or ``destroyed``) is ``Extension/sae:paperOriginal``
    (namespace :data:`SCAN_NAMESPACE`).
    """

    scanner: str | None = None
    resolution_dpi: int | None = None
    operator: str | None = None
    scan_date: date | None = None
    paper_original: str | None = None

    def is_empty(self) -> bool:
        return all(
            value is None
            for value in (
                self.scanner,
                self.resolution_dpi,
                self.operator,
                self.scan_date,
                self.paper_original,
            )
        )


@dataclass(frozen=True, kw_only=True)
class BinaryDataObject:
    """A ``BinaryDataObject``: a file of the transfer (``uri`` is its path inside the SIP).

    ``group_id`` is the object group it belongs to, whichever way the manifest said it
    (``DataObjectGroup`` wrapper, or 2.1-style ``DataObjectGroupId`` /
    ``DataObjectGroupReferenceId``).
    ``digest_algorithm`` is written as in the manifest (``"SHA-512"``).
    """

    id: str
    group_id: str | None = None
    uri: str | None = None
    message_digest: str | None = None
    digest_algorithm: str | None = None
    size: int | None = None
    format: FormatIdentification | None = None
    file_info: FileInfo | None = None
    data_object_version: str | None = None
    data_object_profile: str | None = None
    data_object_system_id: str | None = None
    data_object_group_system_id: str | None = None
    data_object_use: str | None = None
    data_object_number: int | None = None
    has_attachment: bool = False
    #: The capture record of a scan (``Metadata/Image``, MIX), when the manifest gives one.
    digitization: Digitization | None = None


@dataclass(frozen=True, kw_only=True)
class PhysicalDataObject:
    """A ``PhysicalDataObject`` (paper, media...): described, never stored as bytes."""

    id: str
    group_id: str | None = None
    physical_id: str | None = None
    data_object_version: str | None = None
    data_object_profile: str | None = None
    data_object_system_id: str | None = None
    data_object_group_system_id: str | None = None
    data_object_use: str | None = None
    data_object_number: int | None = None


@dataclass(frozen=True, kw_only=True)
class DataObjectGroup:
    """An object group; ``declared`` is False when it comes from 2.1-style ``DataObjectGroupId``."""

    id: str
    object_ids: list[str] = field(default_factory=list)
    declared: bool = True


@dataclass(frozen=True, kw_only=True)
class RuleRef:
    """One ``Rule`` (with its ``StartDate``) inside a rule category.

    The ``hold_*`` fields and ``prevent_rearrangement`` only exist for ``HoldRule`` (SEDA 2.2+),
    where they belong to each rule.
    """

    rule_id: str
    start_date: date | None = None
    hold_end_date: date | None = None
    hold_owner: str | None = None
    hold_reassessing_date: date | None = None
    hold_reason: str | None = None
    prevent_rearrangement: bool | None = None


@dataclass(frozen=True, kw_only=True)
class RuleCategory:
    """One rule category (``AppraisalRule``, ``AccessRule``...) of a unit or of the package.

    ``final_action`` exists for StorageRule (RestrictAccess/Transfer/Copy) and AppraisalRule
    (Keep/Destroy); ``classification_*`` and ``need_reassessing_authorization`` only for
    ClassificationRule.
    """

    category: str
    rules: list[RuleRef] = field(default_factory=list)
    final_action: str | None = None
    prevent_inheritance: bool = False
    ref_non_rule_ids: list[str] = field(default_factory=list)
    classification_audience: str | None = None
    classification_level: str | None = None
    classification_owner: str | None = None
    classification_reassessing_date: date | None = None
    need_reassessing_authorization: bool | None = None


@dataclass(frozen=True, kw_only=True)
class Management:
    """The ``Management`` block of a unit, or the default rules of ``ManagementMetadata``.

    ``rules`` is keyed by category name (``"AppraisalRule"``...). ``extensions`` keeps, verbatim,
    children that are not SEDA rules (e.g. Vitam's ``UpdateOperation``, ``LogBook``).
    """

    rules: dict[str, RuleCategory] = field(default_factory=dict)
    need_authorization: bool | None = None
    extensions: list[bytes] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class ManagementMetadata:
    """Package-level ``ManagementMetadata``: profile, producer, submission agency, default rules."""

    archival_profile: str | None = None
    service_level: str | None = None
    acquisition_information: str | None = None
    legal_status: str | None = None
    originating_agency_identifier: str | None = None
    submission_agency_identifier: str | None = None
    management: Management = field(default_factory=Management)


@dataclass(frozen=True, kw_only=True)
class Keyword:
    """A ``Keyword`` of a unit (``keyword_type`` is e.g. ``subject``, ``geogname``)."""

    content: str
    reference: str | None = None
    type: str | None = None


@dataclass(frozen=True, kw_only=True)
class ArchiveUnitReference:
    """An ``ArchiveUnit`` element that only points at another unit (``ArchiveUnitRefId``)."""

    id: str
    target_id: str
    parent_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class ArchiveUnit:
    """An archive unit (a real one, with ``Content``; pointer elements are
    :class:`ArchiveUnitReference`).

    The core descriptive fields are parsed; ``content_xml`` keeps the whole ``Content`` element
    verbatim (bytes) so nothing a producer sent is lost. ``child_unit_ids`` lists nested units and
    ``ArchiveUnitRefId`` targets in document order; ``reference_ids`` the ids of the pointer
    elements among them. ``data_object_group_id`` is resolved from ``DataObjectGroupReferenceId``,
    or from a ``DataObjectReferenceId`` that points at an object (its group);
    ``data_object_ids`` lists objects referenced directly.
    """

    id: str
    title: str = ""
    description: str | None = None
    description_level: str | None = None
    start_date: str | None = None
    end_date: str | None = None
    created_date: str | None = None
    transacted_date: str | None = None
    acquired_date: str | None = None
    sent_date: str | None = None
    received_date: str | None = None
    registered_date: str | None = None
    date_litteral: str | None = None
    originating_agency_identifier: str | None = None
    submission_agency_identifier: str | None = None
    archive_unit_profile: str | None = None
    file_plan_positions: list[str] = field(default_factory=list)
    system_ids: list[str] = field(default_factory=list)
    originating_system_ids: list[str] = field(default_factory=list)
    archival_agency_archive_unit_identifiers: list[str] = field(default_factory=list)
    originating_agency_archive_unit_identifiers: list[str] = field(default_factory=list)
    transferring_agency_archive_unit_identifiers: list[str] = field(default_factory=list)
    custodial_history: list[str] = field(default_factory=list)
    type: str | None = None
    document_type: str | None = None
    languages: list[str] = field(default_factory=list)
    description_language: str | None = None
    status: str | None = None
    version: str | None = None
    tags: list[str] = field(default_factory=list)
    keywords: list[Keyword] = field(default_factory=list)
    source: str | None = None
    content_xml: bytes = b""
    management: Management = field(default_factory=Management)
    data_object_group_id: str | None = None
    data_object_ids: list[str] = field(default_factory=list)
    data_object_group_reference_ids: list[str] = field(default_factory=list)
    child_unit_ids: list[str] = field(default_factory=list)
    reference_ids: list[str] = field(default_factory=list)
    parent_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class DataObjectPackage:
    """The ``DataObjectPackage``: objects, groups (normalised), the unit tree, package management.

    ``archive_units`` holds every real unit, flattened, in document order; ``root_unit_ids`` the
    units directly under ``DescriptiveMetadata``; ``unit_references`` the pointer elements.
    """

    binary_data_objects: list[BinaryDataObject] = field(default_factory=list)
    physical_data_objects: list[PhysicalDataObject] = field(default_factory=list)
    data_object_groups: list[DataObjectGroup] = field(default_factory=list)
    archive_units: list[ArchiveUnit] = field(default_factory=list)
    root_unit_ids: list[str] = field(default_factory=list)
    unit_references: list[ArchiveUnitReference] = field(default_factory=list)
    management_metadata: ManagementMetadata = field(default_factory=ManagementMetadata)

    def unit(self, unit_id: str) -> ArchiveUnit | None:
        """The unit whose id is ``unit_id``, or ``None``."""
        for unit in self.archive_units:
            if unit.id == unit_id:
                return unit
        return None

    @property
    def data_objects(self) -> list[BinaryDataObject | PhysicalDataObject]:
        """Binary then physical objects, in one list."""
        return [*self.binary_data_objects, *self.physical_data_objects]

    def top_unit_ids(self) -> list[str]:
        """Units that are nobody's child (neither nested nor referenced): the tree heads."""
        children = {c for unit in self.archive_units for c in unit.child_unit_ids}
        return [u.id for u in self.archive_units if u.parent_id is None and u.id not in children]

    def rule_categories(self) -> set[str]:
        """Every rule category used anywhere (units and package defaults)."""
        found = set(self.management_metadata.management.rules)
        for unit in self.archive_units:
            found.update(unit.management.rules)
        return found


ReplyCode = Literal["OK", "KO", "WARNING"]


@dataclass(frozen=True, kw_only=True)
class ArchiveTransfer:
    """An ``ArchiveTransfer`` message (a SIP manifest, incoming or outgoing).

    ``code_list_versions`` maps element names (``"ReplyCodeListVersion"``...) to their values.
    """

    version: SedaVersion
    message_identifier: str
    date: datetime
    comments: list[str] = field(default_factory=list)
    archival_agreement: str | None = None
    archival_agency_identifier: str = ""
    transferring_agency_identifier: str = ""
    code_list_versions: dict[str, str] = field(default_factory=dict)
    related_transfer_references: list[str] = field(default_factory=list)
    transfer_request_reply_identifier: str | None = None
    package: DataObjectPackage = field(default_factory=DataObjectPackage)

    def __post_init__(self) -> None:
        # accept "2.2" as well as SedaVersion.V2_2 (and refuse "9.99") at construction
        object.__setattr__(self, "version", SedaVersion(self.version))


@dataclass(frozen=True, kw_only=True)
class ReplyEvent:
    """One ``Operation/Event`` of a reply: in a KO reply, one per fault.

    Written as ``EventTypeCode`` = ``type``, ``EventType`` = ``label``, ``EventDateTime`` =
    ``date`` (the reply's date when ``None``), ``Outcome`` = ``outcome``, ``OutcomeDetail`` =
    ``type.outcome``, ``OutcomeDetailMessage`` = ``detail``, ``EventDetailData`` = ``where``.
    """

    type: str
    outcome: str = "KO"
    detail: str | None = None
    where: str | None = None
    date: datetime | None = None
    label: str | None = None
    identifier: str | None = None

    @classmethod
    def from_fault(
        cls, fault: Fault, *, outcome: str = "KO", date: datetime | None = None
    ) -> ReplyEvent:
        """The event that reports ``fault`` (code, message and location)."""
        return cls(
            type=fault.code, outcome=outcome, detail=fault.message, where=fault.where, date=date
        )


@dataclass(frozen=True, kw_only=True)
class ReplyUnit:
    """A unit listed in an OK reply: its id in the SIP and the id the archive gave it."""

    sip_id: str
    system_id: str
    title: str | None = None
    #: Written as ``Content/ArchivalAgencyArchiveUnitIdentifier`` when set (Pastell reads the
    #: archive's identifier of the transfer there).
    archival_agency_identifier: str | None = None


@dataclass(frozen=True, kw_only=True)
class ReplyObject:
    """An object listed in an OK reply (``kind`` is ``"binary"`` or ``"physical"``).

    ``message_digest``/``digest_algorithm`` may carry the digest the archive computed.
    """

    sip_id: str
    group_sip_id: str | None = None
    system_id: str | None = None
    group_system_id: str | None = None
    kind: Literal["binary", "physical"] = "binary"
    data_object_version: str | None = None
    message_digest: str | None = None
    digest_algorithm: str | None = None
    size: int | None = None


@dataclass(frozen=True, kw_only=True)
class ArchiveTransferReply:
    """An ``ArchiveTransferReply`` (ATR): the archive's answer to a transfer.

    On OK it lists what was archived (``units``, ``objects``) with the archive's system ids; on
    KO it carries one :class:`ReplyEvent` per fault.
    """

    version: SedaVersion
    message_identifier: str
    date: datetime
    message_request_identifier: str
    reply_code: str
    archival_agency_identifier: str
    transferring_agency_identifier: str
    grant_date: datetime | None = None
    comments: list[str] = field(default_factory=list)
    archival_agreement: str | None = None
    code_list_versions: dict[str, str] = field(default_factory=dict)
    events: list[ReplyEvent] = field(default_factory=list)
    units: list[ReplyUnit] = field(default_factory=list)
    objects: list[ReplyObject] = field(default_factory=list)

    def __post_init__(self) -> None:
        object.__setattr__(self, "version", SedaVersion(self.version))


@dataclass(frozen=True, kw_only=True)
class ArchiveDeliveryRequestReply:
    """An ``ArchiveDeliveryRequestReply``: the answer to a communication request, i.e. the
    manifest of a DIP. ``package`` carries the delivered units (their ``content_xml`` is written
    back unchanged) and objects (``uri`` = path inside the DIP).
    """

    version: SedaVersion
    message_identifier: str
    date: datetime
    message_request_identifier: str
    archival_agency_identifier: str
    requester_identifier: str
    unit_identifiers: list[str]
    reply_code: str | None = "OK"
    authorization_request_reply_identifier: str | None = None
    comments: list[str] = field(default_factory=list)
    archival_agreement: str | None = None
    code_list_versions: dict[str, str] = field(default_factory=dict)
    events: list[ReplyEvent] = field(default_factory=list)
    package: DataObjectPackage | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "version", SedaVersion(self.version))


@dataclass(frozen=True, kw_only=True)
class ArchiveDestructionNotification:
    """An ``ArchiveDestructionNotification``: units were destroyed under an approved
    authorisation (``authorization_request_reply_identifier``, e.g. the visa'd disposal list).
    """

    version: SedaVersion
    message_identifier: str
    date: datetime
    authorization_request_reply_identifier: str
    unit_identifiers: list[str]
    archival_agency_identifier: str
    originating_agency_identifier: str
    comments: list[str] = field(default_factory=list)
    archival_agreement: str | None = None
    code_list_versions: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "version", SedaVersion(self.version))


@dataclass(frozen=True, kw_only=True)
class Acknowledgement:
    """An ``Acknowledgement``: technical receipt of any message (no business decision)."""

    version: SedaVersion
    message_identifier: str
    date: datetime
    message_received_identifier: str
    sender_identifier: str
    receiver_identifier: str
    comments: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        object.__setattr__(self, "version", SedaVersion(self.version))
