"""SEDA 1.0: read an ``ArchiveTransfer`` into the 2.x model, write its ``Acknowledgement`` and
``ArchiveTransferReply``.

SEDA 1.0 is read only because Pastell's as@lae connector still sends it (``seda-ng`` profiles):
the transfer is validated against the official 1.0 XSD (shipped in ``xsd/1.0``), then mapped to
the package's model as a SEDA 2.1 transfer, so that the rest of an archive's pipeline sees only
one model. The mapping:

- each ``Archive`` is a top-level unit, each ``ArchiveObject`` a nested unit, each ``Document``
  a nested unit (level ``Item``) holding one ``BinaryDataObject`` in its own object group
  (``Attachment/@filename`` is the object's path in the attachments; ``Integrity`` its digest,
  the XML-Encryption URIs ``…xmlenc#sha256`` named ``SHA-256``);
- ``ContentDescription`` gives the descriptive fields (level, description, languages,
  ``OldestDate``/``LatestDate``, keywords, custodial history, originating agency);
- ``AccessRestrictionRule/Code`` (``AR038``…) becomes an ``AccessRule`` whose rule id is the
  code as sent (the caller maps it to its referential); ``AppraisalRule/Code``
  (``conserver``/``detruire``) the ``FinalAction`` (``Keep``/``Destroy``), with the duration
  (``P10Y``) kept in :attr:`Seda10Transfer.appraisal_durations` per unit.

Replies are written in SEDA 1.0, shaped as Pastell checks them: the ACK's
``MessageReceivedIdentifier`` is the ``TransferIdentifier``; an accepted ATR (``ReplyCode``
``000``) repeats each ``Archive`` of the transfer with its ``ArchivalAgencyArchiveIdentifier``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from lxml import etree

from ._errors import (
    Fault,
    FaultCodes,
    SchemaInvalid,
    StructureInvalid,
    UnexpectedMessage,
    WriteError,
)
from ._model import (
    ArchiveTransfer,
    ArchiveUnit,
    BinaryDataObject,
    DataObjectGroup,
    DataObjectPackage,
    FileInfo,
    FormatIdentification,
    Keyword,
    Management,
    ManagementMetadata,
    RuleCategory,
    RuleRef,
)
from ._parser import safe_parse
from ._versions import SedaVersion
from ._writer import clean_text, clean_token, format_datetime
from ._xsd import compile_schema

__all__ = [
    "SEDA10_NAMESPACE",
    "Seda10Transfer",
    "digest_algorithm_name",
    "read_transfer_v10",
    "validate_v10",
    "write_acknowledgement_v10",
    "write_archive_transfer_reply_v10",
]

SEDA10_NAMESPACE = "fr:gouv:culture:archivesdefrance:seda:v1.0"
_NS = "{" + SEDA10_NAMESPACE + "}"
_XSD = Path(__file__).resolve().parent / "xsd" / "1.0" / "seda_v1-0.xsd"
_SCHEMA: etree.XMLSchema | None = None
#: XMLSchema objects are not safe to share between threads while validating (as in ``_xsd``).
_LOCK = threading.Lock()
_MAX_ERRORS = 200

#: Digest algorithms as SEDA 1.0 bordereaux (and as@lae) name them, by the name SEDA 2.x uses.
_ALGORITHMS = {
    "http://www.w3.org/2000/09/xmldsig#sha1": "SHA-1",
    "http://www.w3.org/2001/04/xmlenc#sha256": "SHA-256",
    "http://www.w3.org/2001/04/xmldsig-more#sha384": "SHA-384",
    "http://www.w3.org/2001/04/xmlenc#sha512": "SHA-512",
}
_FINAL_ACTIONS = {"conserver": "Keep", "detruire": "Destroy"}


def digest_algorithm_name(algorithm: str) -> str:
    """``SHA-256`` for ``http://www.w3.org/2001/04/xmlenc#sha256`` (and the like); other names
    are returned unchanged."""
    return _ALGORITHMS.get(algorithm.strip(), algorithm.strip())


@dataclass(frozen=True)
class Seda10Transfer:
    """A SEDA 1.0 transfer read: the 2.1 model, and what 2.x has no place for."""

    transfer: ArchiveTransfer
    #: ``AppraisalRule/Duration`` (``P10Y``) by unit id, where the bordereau gave one.
    appraisal_durations: dict[str, str] = field(default_factory=dict)
    #: The ids of the units made from each ``Archive``, in document order.
    archive_unit_ids: list[str] = field(default_factory=list)


def _schema() -> etree.XMLSchema:
    global _SCHEMA
    if _SCHEMA is None:
        _SCHEMA = compile_schema(_XSD)
    return _SCHEMA


def validate_v10(root: etree._Element) -> list[Fault]:
    """The faults of ``root`` against the official SEDA 1.0 XSD (empty when valid)."""
    if etree.QName(root).namespace != SEDA10_NAMESPACE:
        return [Fault(FaultCodes.UNEXPECTED_ROOT, "not a SEDA 1.0 message", "/*")]
    with _LOCK:
        schema = _schema()
        if schema.validate(root):
            return []
        log: Any = schema.error_log
        entries: list[Any] = list(log)
    faults = []
    for entry in entries[:_MAX_ERRORS]:
        message = entry.message.replace(_NS, "")
        faults.append(Fault(FaultCodes.XSD_INVALID, message, f"line {entry.line}"))
    return faults


def _text(element: etree._Element | None, name: str) -> str | None:
    if element is None:
        return None
    child = element.find(_NS + name)
    if child is None or child.text is None:
        return None
    value = " ".join(child.text.split())
    return value or None


def _texts(element: etree._Element | None, name: str) -> list[str]:
    if element is None:
        return []
    return [
        " ".join(c.text.split()) for c in element.findall(_NS + name) if c.text and c.text.strip()
    ]


class _Mapper:
    def __init__(self) -> None:
        self.units: list[ArchiveUnit] = []
        self.objects: list[BinaryDataObject] = []
        self.groups: list[DataObjectGroup] = []
        self.durations: dict[str, str] = {}
        self.faults: list[Fault] = []
        self.counter = 0

    def new_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def management(self, unit_id: str, element: etree._Element) -> Management:
        rules: dict[str, RuleCategory] = {}
        access = element.find(_NS + "AccessRestrictionRule")
        if access is not None and _text(access, "Code"):
            start = _text(access, "StartDate")
            rules["AccessRule"] = RuleCategory(
                category="AccessRule",
                rules=[
                    RuleRef(
                        rule_id=_text(access, "Code") or "",
                        start_date=datetime.fromisoformat(start[:10]).date() if start else None,
                    )
                ],
            )
        appraisal = element.find(_NS + "AppraisalRule")
        if appraisal is not None:
            code = (_text(appraisal, "Code") or "").lower()
            action = _FINAL_ACTIONS.get(code)
            if action is None:
                self.faults.append(
                    Fault(
                        FaultCodes.BAD_VALUE,
                        f"unknown AppraisalRule code {code!r} (conserver or detruire)",
                        f"{etree.QName(element).localname}/AppraisalRule/Code",
                    )
                )
            else:
                rules["AppraisalRule"] = RuleCategory(category="AppraisalRule", final_action=action)
            duration = _text(appraisal, "Duration")
            if duration:
                self.durations[unit_id] = duration
        return Management(rules=rules)

    def description(self, element: etree._Element) -> dict[str, object]:
        content = element.find(_NS + "ContentDescription")
        if content is None:
            return {}
        history = content.find(_NS + "CustodialHistory")
        agencies = content.findall(_NS + "OriginatingAgency")
        return {
            "description": _text(content, "Description"),
            "description_level": _text(content, "DescriptionLevel"),
            "file_plan_positions": _texts(content, "FilePlanPosition"),
            "languages": _texts(content, "Language"),
            "start_date": _text(content, "OldestDate"),
            "end_date": _text(content, "LatestDate"),
            "custodial_history": _texts(history, "CustodialHistoryItem"),
            "keywords": [
                Keyword(
                    content=_text(k, "KeywordContent") or "",
                    reference=_text(k, "KeywordReference"),
                    type=_text(k, "KeywordType"),
                )
                for k in content.findall(_NS + "Keyword")
                if _text(k, "KeywordContent")
            ],
            "originating_agency_identifier": (
                _text(agencies[0], "Identification") if agencies else None
            ),
        }

    def unit(self, element: etree._Element, parent_id: str | None, prefix: str) -> str:
        """Map an ``Archive`` or ``ArchiveObject`` (and its children); returns its unit id."""
        unit_id = self.new_id("AU")
        children: list[str] = []
        for child in element.findall(_NS + "ArchiveObject"):
            children.append(self.unit(child, unit_id, "Object"))
        for document in element.findall(_NS + "Document"):
            children.append(self.document(document, unit_id))
        fields = self.description(element)
        level = fields.pop("description_level", None) or ("File" if prefix == "Object" else None)
        self.units.append(
            ArchiveUnit(
                id=unit_id,
                title=_text(element, "Name") or "",
                description_level=_level(level),
                archival_agency_archive_unit_identifiers=_texts(
                    element, f"ArchivalAgency{prefix}Identifier"
                ),
                originating_agency_archive_unit_identifiers=_texts(
                    element, f"OriginatingAgency{prefix}Identifier"
                ),
                transferring_agency_archive_unit_identifiers=_texts(
                    element, f"TransferringAgency{prefix}Identifier"
                ),
                management=self.management(unit_id, element),
                child_unit_ids=children,
                parent_id=parent_id,
                **fields,  # type: ignore[arg-type]
            )
        )
        return unit_id

    def document(self, element: etree._Element, parent_id: str) -> str:
        unit_id = self.new_id("AU")
        object_id = self.new_id("BDO")
        group_id = self.new_id("GOT")
        attachment = element.find(_NS + "Attachment")
        assert attachment is not None  # required by the XSD, validated before
        filename = (attachment.get("filename") or "").strip()
        where = f"Document/Attachment[@filename='{filename}']"
        if not filename:
            self.faults.append(
                Fault(FaultCodes.MISSING_VALUE, "Attachment has no filename", "Document/Attachment")
            )
        if attachment.text and attachment.text.strip():
            self.faults.append(
                Fault(
                    FaultCodes.BAD_VALUE,
                    "documents inlined in the bordereau (base64) are not accepted; attach the file",
                    where,
                )
            )
        integrity = element.find(_NS + "Integrity")
        digest = integrity.text.strip() if integrity is not None and integrity.text else None
        algorithm = (
            digest_algorithm_name(integrity.get("algorithme") or "")
            if integrity is not None
            else None
        )
        if not digest:
            self.faults.append(
                Fault(FaultCodes.MISSING_DIGEST, "Document without Integrity (digest)", where)
            )
        size_text = _text(element, "Size")
        size = None
        if size_text:
            try:
                size = int(float(size_text))
            except ValueError:
                self.faults.append(Fault(FaultCodes.BAD_VALUE, f"Size {size_text!r}", where))
        self.objects.append(
            BinaryDataObject(
                id=object_id,
                group_id=group_id,
                uri=filename,
                message_digest=digest,
                digest_algorithm=algorithm or None,
                size=size,
                format=FormatIdentification(
                    mime_type=attachment.get("mimeCode") or None,
                    format_id=attachment.get("format") or None,
                ),
                file_info=FileInfo(filename=filename.rsplit("/", 1)[-1]) if filename else None,
                data_object_version="BinaryMaster_1",
            )
        )
        self.groups.append(DataObjectGroup(id=group_id, object_ids=[object_id]))
        self.units.append(
            ArchiveUnit(
                id=unit_id,
                title=_text(element, "Description") or filename.rsplit("/", 1)[-1] or object_id,
                description_level="Item",
                document_type=", ".join(_texts(element, "Type")) or None,
                languages=_texts(element, "Language"),
                created_date=_text(element, "Creation"),
                received_date=_text(element, "Receipt"),
                sent_date=_text(element, "Submission"),
                transferring_agency_archive_unit_identifiers=_texts(
                    element, "TransferringAgencyDocumentIdentifier"
                ),
                originating_agency_archive_unit_identifiers=_texts(
                    element, "OriginatingAgencyDocumentIdentifier"
                ),
                data_object_group_id=group_id,
                data_object_group_reference_ids=[group_id],
                parent_id=parent_id,
            )
        )
        return unit_id


_LEVELS = {
    level.lower(): level
    for level in (
        "Fonds",
        "Subfonds",
        "Class",
        "Collection",
        "Series",
        "Subseries",
        "RecordGrp",
        "SubGrp",
        "File",
        "Item",
        "OtherLevel",
    )
}


def _level(value: object) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    return _LEVELS.get(value.lower(), "OtherLevel")


def read_transfer_v10(data: bytes) -> Seda10Transfer:
    """Read a SEDA 1.0 ``ArchiveTransfer``: hardened parse, official XSD, then the 2.1 model.

    Raises :class:`~seda.MalformedXML` (not XML), :class:`~seda.UnexpectedMessage` (not a 1.0
    ``ArchiveTransfer``), :class:`~seda.SchemaInvalid` (against the XSD) or
    :class:`~seda.StructureInvalid` (what the mapping cannot take: inlined documents, a
    document without digest, an unknown appraisal code).
    """
    root = safe_parse(data)
    if root.tag != _NS + "ArchiveTransfer":
        raise UnexpectedMessage(
            faults=[
                Fault(
                    FaultCodes.UNEXPECTED_ROOT,
                    f"{etree.QName(root).text} is not a SEDA 1.0 ArchiveTransfer",
                    "/*",
                )
            ]
        )
    faults = validate_v10(root)
    if faults:
        raise SchemaInvalid(faults=faults)
    mapper = _Mapper()
    archive_ids = [mapper.unit(a, None, "Archive") for a in root.findall(_NS + "Archive")]
    if mapper.faults:
        raise StructureInvalid(faults=mapper.faults)
    first = root.find(_NS + "Archive")
    transferring = _text(root.find(_NS + "TransferringAgency"), "Identification") or ""
    originating = next(
        (u.originating_agency_identifier for u in mapper.units if u.id == archive_ids[0]), None
    )
    date_text = _text(root, "Date") or ""
    transfer = ArchiveTransfer(
        version=SedaVersion.V2_1,
        message_identifier=_text(root, "TransferIdentifier") or "",
        date=datetime.fromisoformat(date_text.replace("Z", "+00:00")),
        comments=_texts(root, "Comment"),
        archival_agreement=_text(first, "ArchivalAgreement"),
        archival_agency_identifier=_text(root.find(_NS + "ArchivalAgency"), "Identification") or "",
        transferring_agency_identifier=transferring,
        related_transfer_references=_texts(root, "RelatedTransferReference"),
        transfer_request_reply_identifier=_text(root, "TransferRequestReplyIdentifier"),
        package=DataObjectPackage(
            binary_data_objects=mapper.objects,
            data_object_groups=mapper.groups,
            archive_units=mapper.units,
            root_unit_ids=archive_ids,
            management_metadata=ManagementMetadata(
                archival_profile=_text(first, "ArchivalProfile"),
                service_level=_text(first, "ServiceLevel"),
                originating_agency_identifier=originating or transferring or None,
                submission_agency_identifier=transferring or None,
            ),
        ),
    )
    return Seda10Transfer(
        transfer=transfer, appraisal_durations=mapper.durations, archive_unit_ids=archive_ids
    )


# --------------------------------------------------------------------------- writing


class _Doc10:
    def __init__(self, root: str) -> None:
        self.root = etree.Element(_NS + root, nsmap={None: SEDA10_NAMESPACE})  # type: ignore[dict-item]
        self.faults: list[Fault] = []

    def add(self, parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
        element = etree.SubElement(parent, _NS + name)
        if text is not None:
            element.text = clean_text(text)
        return element

    def token(self, parent: etree._Element, name: str, value: str | None) -> None:
        cleaned = clean_token(value or "")
        if not cleaned:
            self.faults.append(Fault(FaultCodes.WRITE_INVALID, f"{name} is required and empty"))
        self.add(parent, name, cleaned)

    def organization(self, name: str, identification: str) -> None:
        self.token(self.add(self.root, name), "Identification", identification)

    def finish(self) -> bytes:
        if self.faults:
            raise WriteError(faults=self.faults)
        faults = validate_v10(self.root)
        if faults:
            raise WriteError(
                faults=[Fault(FaultCodes.WRITE_INVALID, f.message, f.where) for f in faults]
            )
        return etree.tostring(self.root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def write_acknowledgement_v10(
    *,
    identifier: str,
    date: datetime,
    received_identifier: str,
    receiver: str,
    sender: str,
    comments: Sequence[str] = (),
) -> bytes:
    """A SEDA 1.0 ``Acknowledgement`` of the message ``received_identifier`` (the transfer's
    ``TransferIdentifier``); ``receiver`` is the agency that receives it (the transferring
    agency), ``sender`` the archive. Checked against the official XSD before it is returned."""
    doc = _Doc10("Acknowledgement")
    for comment in comments:
        doc.add(doc.root, "Comment", comment)
    doc.add(doc.root, "Date", format_datetime(date))
    doc.token(doc.root, "AcknowledgementIdentifier", identifier)
    doc.token(doc.root, "MessageReceivedIdentifier", received_identifier)
    doc.organization("Receiver", receiver)
    doc.organization("Sender", sender)
    return doc.finish()


def write_archive_transfer_reply_v10(
    *,
    bordereau: bytes,
    identifier: str,
    date: datetime,
    reply_code: str,
    comments: Sequence[str] = (),
    archival_identifiers: Mapping[int, str] | None = None,
    grant_date: datetime | None = None,
) -> bytes:
    """A SEDA 1.0 ``ArchiveTransferReply`` to the 1.0 transfer ``bordereau``.

    ``reply_code`` is ``000`` when accepted: then each ``Archive`` of the transfer is repeated
    with ``ArchivalAgencyArchiveIdentifier`` set to ``archival_identifiers[i]`` (its position,
    from 0), which Pastell reads as the archive's identifier of the transfer. A refusal
    (any other code) carries its reasons in ``comments`` and no ``Archive``.
    """
    source = safe_parse(bordereau)
    doc = _Doc10("ArchiveTransferReply")
    for comment in comments:
        doc.add(doc.root, "Comment", comment)
    doc.add(doc.root, "Date", format_datetime(date))
    if grant_date is not None:
        doc.add(doc.root, "GrantDate", format_datetime(grant_date))
    doc.token(doc.root, "ReplyCode", reply_code)
    doc.token(doc.root, "TransferIdentifier", _text(source, "TransferIdentifier"))
    doc.token(doc.root, "TransferReplyIdentifier", identifier)
    doc.organization(
        "ArchivalAgency", _text(source.find(_NS + "ArchivalAgency"), "Identification") or ""
    )
    doc.organization(
        "TransferringAgency",
        _text(source.find(_NS + "TransferringAgency"), "Identification") or "",
    )
    if archival_identifiers:
        for index, archive in enumerate(source.findall(_NS + "Archive")):
            archival_id = archival_identifiers.get(index)
            if archival_id is None:
                continue
            existing = archive.find(_NS + "ArchivalAgencyArchiveIdentifier")
            if existing is None:
                existing = etree.Element(_NS + "ArchivalAgencyArchiveIdentifier")
                archive.insert(0, existing)
            existing.text = clean_token(archival_id)
            doc.root.append(archive)
    return doc.finish()
