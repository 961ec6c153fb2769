"""SEDA 2.1 / 2.2 / 2.3 messages: hardened parsing, a typed model, reading, validation, writing
(and SEDA 1.0 transfers, read into the same model, with their replies).

A stand-alone library (it imports nothing from ``sae``)::

    import seda

    report = seda.validate_transfer(manifest_bytes, xsd_dir=seda.BUNDLED_XSD_DIR)
    if report.ok:
        transfer = report.transfer          # seda.ArchiveTransfer
    else:
        for fault in report.errors:         # seda.Fault(code, message, where)
            ...

Reading: :func:`read_transfer`, :func:`read_transfer_reply`. Validating:
:func:`validate_transfer` (layers: XML hardening, root and version, official XSD, the rules the
XSD cannot express, tolerances), :class:`XsdValidator`, :func:`validate_message`; the official
schemas ship inside the package, in :data:`BUNDLED_XSD_DIR`. Writing (pure
functions, model in, bytes out): :func:`write_archive_transfer_reply`,
:func:`write_archive_transfer` (outgoing), :func:`write_archive_delivery_request_reply` (DIP),
:func:`write_archive_destruction_notification`, :func:`write_acknowledgement`. XML: the only
parser the project may use is :func:`safe_parse` (and :func:`iter_elements`, the same
hardening, streamed). SEDA 1.0 (Pastell):
:func:`read_transfer_v10`, :func:`write_acknowledgement_v10`,
:func:`write_archive_transfer_reply_v10`; a transfer's ``.tar.gz``/``.zip`` attachments:
:func:`iter_attachments`. Archival profiles (RelaxNG):
:class:`RelaxNGProfile` compiles one and validates a manifest against it.

Exception tree (every exception carries ``.faults: list[Fault]``; ``.code`` is the first code)::

    SedaError
     ├── MalformedXML                 xml.malformed, xml.empty
     │    ├── XMLTooLarge             xml.too_large
     │    ├── XMLTooDeep              xml.too_deep
     │    ├── ForbiddenXMLConstruct   xml.dtd_forbidden, xml.entity_forbidden
     │    └── XMLLimitExceeded        xml.limit_exceeded
     ├── UnsupportedVersion           seda.unsupported_version, seda.not_seda
     ├── UnexpectedMessage            seda.unexpected_root
     ├── SchemaInvalid                xsd.invalid
     ├── SchemaUnavailable            xsd.unavailable   (configuration, not input)
     ├── StructureInvalid             seda.structure_invalid; its faults carry precise codes:
     │                                seda.bad_value, seda.missing_value, seda.duplicate_id...
     ├── ProfileInvalid               profile.invalid   (an archival profile SAE cannot apply)
     └── WriteError                   seda.write_invalid
"""

from ._attachments import AttachmentLimits, attachments_format, iter_attachments
from ._errors import (
    Fault,
    FaultCodes,
    ForbiddenXMLConstruct,
    MalformedXML,
    SchemaInvalid,
    SchemaUnavailable,
    SedaError,
    StructureInvalid,
    UnexpectedMessage,
    UnsupportedVersion,
    WriteError,
    XMLLimitExceeded,
    XMLTooDeep,
    XMLTooLarge,
)
from ._model import (
    MIX_NAMESPACE,
    PAPER_ORIGINAL_FATES,
    RULE_CATEGORIES,
    SCAN_NAMESPACE,
    Acknowledgement,
    ArchiveDeliveryRequestReply,
    ArchiveDestructionNotification,
    ArchiveTransfer,
    ArchiveTransferReply,
    ArchiveUnit,
    ArchiveUnitReference,
    BinaryDataObject,
    DataObjectGroup,
    DataObjectPackage,
    Digitization,
    FileInfo,
    FormatIdentification,
    Keyword,
    Management,
    ManagementMetadata,
    PhysicalDataObject,
    ReplyCode,
    ReplyEvent,
    ReplyObject,
    ReplyUnit,
    RuleCategory,
    RuleRef,
)
from ._parser import DEFAULT_MAX_BYTES, DEFAULT_MAX_DEPTH, iter_elements, safe_parse
from ._profile import PROFILE_INVALID, PROFILE_NOT_MET, ProfileInvalid, RelaxNGProfile
from ._reader import read_transfer, read_transfer_reply
from ._seda10 import (
    SEDA10_NAMESPACE,
    Seda10Transfer,
    digest_algorithm_name,
    read_transfer_v10,
    validate_v10,
    write_acknowledgement_v10,
    write_archive_transfer_reply_v10,
)
from ._validate import TOLERANCES, Tolerance, TransferReport, validate_message, validate_transfer
from ._versions import SedaVersion, version_from_namespace
from ._writer import (
    write_acknowledgement,
    write_archive_delivery_request_reply,
    write_archive_destruction_notification,
    write_archive_transfer,
    write_archive_transfer_reply,
)
from ._xsd import BUNDLED_XSD_DIR, MESSAGE_ROOTS, XsdValidator

__all__ = [
    "SEDA10_NAMESPACE",
    "AttachmentLimits",
    "Seda10Transfer",
    "attachments_format",
    "digest_algorithm_name",
    "iter_attachments",
    "iter_elements",
    "read_transfer_v10",
    "validate_v10",
    "write_acknowledgement_v10",
    "write_archive_transfer_reply_v10",
    "BUNDLED_XSD_DIR",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_DEPTH",
    "MESSAGE_ROOTS",
    "MIX_NAMESPACE",
    "PAPER_ORIGINAL_FATES",
    "RULE_CATEGORIES",
    "SCAN_NAMESPACE",
    "TOLERANCES",
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
    "Digitization",
    "Fault",
    "FaultCodes",
    "FileInfo",
    "ForbiddenXMLConstruct",
    "FormatIdentification",
    "Keyword",
    "MalformedXML",
    "Management",
    "ManagementMetadata",
    "PROFILE_INVALID",
    "PROFILE_NOT_MET",
    "PhysicalDataObject",
    "ProfileInvalid",
    "RelaxNGProfile",
    "ReplyCode",
    "ReplyEvent",
    "ReplyObject",
    "ReplyUnit",
    "RuleCategory",
    "RuleRef",
    "SchemaInvalid",
    "SchemaUnavailable",
    "SedaError",
    "SedaVersion",
    "StructureInvalid",
    "Tolerance",
    "TransferReport",
    "UnexpectedMessage",
    "UnsupportedVersion",
    "WriteError",
    "XMLLimitExceeded",
    "XMLTooDeep",
    "XMLTooLarge",
    "XsdValidator",
    "read_transfer",
    "read_transfer_reply",
    "safe_parse",
    "validate_message",
    "validate_transfer",
    "version_from_namespace",
    "write_acknowledgement",
    "write_archive_delivery_request_reply",
    "write_archive_destruction_notification",
    "write_archive_transfer",
    "write_archive_transfer_reply",
]
