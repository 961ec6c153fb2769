"""Writing SEDA messages from the model, by pure functions (model in, bytes out).

Every writer builds the elements in the order the official XSD of the target version requires,
omits optional values that are empty, refuses (:class:`~seda.WriteError`) a missing required value
instead of writing an invalid message, and strips characters XML 1.0 cannot carry.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from lxml import etree

from ._errors import Fault, FaultCodes, WriteError
from ._model import (
    MIX_NAMESPACE,
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
    DataObjectPackage,
    Digitization,
    Management,
    ManagementMetadata,
    PhysicalDataObject,
    ReplyEvent,
    ReplyObject,
    ReplyUnit,
    RuleCategory,
)
from ._parser import safe_parse
from ._versions import SedaVersion

__all__ = [
    "CODE_LIST_ORDER",
    "write_acknowledgement",
    "write_archive_delivery_request_reply",
    "write_archive_destruction_notification",
    "write_archive_transfer",
    "write_archive_transfer_reply",
]

#: CodeListVersions children in XSD order (HoldRuleCodeListVersion only from 2.2).
CODE_LIST_ORDER: tuple[str, ...] = (
    "ReplyCodeListVersion",
    "MessageDigestAlgorithmCodeListVersion",
    "MimeTypeCodeListVersion",
    "EncodingCodeListVersion",
    "FileFormatCodeListVersion",
    "CompressionAlgorithmCodeListVersion",
    "DataObjectVersionCodeListVersion",
    "StorageRuleCodeListVersion",
    "AppraisalRuleCodeListVersion",
    "AccessRuleCodeListVersion",
    "DisseminationRuleCodeListVersion",
    "ReuseRuleCodeListVersion",
    "ClassificationRuleCodeListVersion",
    "HoldRuleCodeListVersion",
    "AcquisitionInformationCodeListVersion",
    "AuthorizationReasonCodeListVersion",
    "RelationshipCodeListVersion",
)

_INVALID_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_NCNAME = re.compile(r"^[A-Za-z_\u00C0-\uFFFD][\w.\-\u00B7\u00C0-\uFFFD]*$")


def clean_text(value: str) -> str:
    """``value`` without the characters XML 1.0 cannot carry (control characters...)."""
    return _INVALID_XML_CHARS.sub("", value)


def clean_token(value: str) -> str:
    """``value`` as an ``xsd:token``: cleaned, whitespace collapsed."""
    return " ".join(clean_text(value).split())


def format_datetime(value: datetime) -> str:
    """``xsd:dateTime`` text of ``value``."""
    return value.isoformat()


def format_date(value: date) -> str:
    """``xsd:date`` text of ``value``."""
    return value.isoformat()


class _Doc:
    """A small builder bound to one version's namespace."""

    def __init__(self, version: SedaVersion | str, root: str) -> None:
        self.version = SedaVersion(version)
        self.prefix = "{" + self.version.namespace + "}"
        nsmap: Any = {None: self.version.namespace}
        self.root = etree.Element(self.prefix + root, nsmap=nsmap)
        self.faults: list[Fault] = []

    def add(
        self,
        parent: etree._Element,
        name: str,
        text: str | None = None,
        attrib: dict[str, str] | None = None,
    ) -> etree._Element:
        element = etree.SubElement(parent, self.prefix + name)
        if attrib:
            for key, value in attrib.items():
                element.set(key, clean_text(value))
        if text is not None:
            element.text = clean_text(text)
        return element

    def token(
        self,
        parent: etree._Element,
        name: str,
        value: str | None,
        required: bool = False,
        where: str | None = None,
    ) -> etree._Element | None:
        """Add a non-empty token element; skip it when empty, or record a fault if required."""
        cleaned = clean_token(value) if value is not None else ""
        if not cleaned:
            if required:
                self.faults.append(
                    Fault(FaultCodes.WRITE_INVALID, f"{name} is required and empty", where or name)
                )
            return None
        return self.add(parent, name, cleaned)

    def text(self, parent: etree._Element, name: str, value: str | None) -> None:
        if value is not None:
            self.add(parent, name, value)

    def check_id(self, value: str, what: str) -> str:
        if not _NCNAME.match(value or ""):
            self.faults.append(
                Fault(
                    FaultCodes.WRITE_INVALID,
                    f"{what} id {value!r} is not a valid XML id (NCName)",
                    what,
                )
            )
        return value

    def organization(self, parent: etree._Element, name: str, identifier: str) -> None:
        element = self.add(parent, name)
        self.token(element, "Identifier", identifier, required=True, where=f"{name}/Identifier")

    def code_list_versions(self, parent: etree._Element, values: dict[str, str]) -> None:
        element = self.add(parent, "CodeListVersions")
        for name in CODE_LIST_ORDER:
            if name == "HoldRuleCodeListVersion" and self.version == SedaVersion.V2_1:
                continue
            if name in values:
                self.token(element, name, values[name])

    def header(self, comments: Iterable[str], when: datetime, identifier: str) -> None:
        for comment in comments:
            self.add(self.root, "Comment", comment)
        self.add(self.root, "Date", format_datetime(when))
        self.token(self.root, "MessageIdentifier", identifier, required=True)

    def event(self, parent: etree._Element, event: ReplyEvent, default_date: datetime) -> None:
        element = self.add(parent, "Event")
        self.token(element, "EventIdentifier", event.identifier)
        self.token(element, "EventTypeCode", event.type)
        self.token(element, "EventType", event.label)
        self.add(element, "EventDateTime", format_datetime(event.date or default_date))
        self.token(element, "Outcome", event.outcome)
        if event.type and event.outcome:
            self.token(element, "OutcomeDetail", f"{event.type}.{event.outcome}")
        self.token(element, "OutcomeDetailMessage", event.detail)
        self.token(element, "EventDetailData", event.where)

    def insert_xml(self, parent: etree._Element, data: bytes) -> etree._Element:
        """Append a verbatim element (e.g. a unit's Content) moved into this version's namespace."""
        element = safe_parse(data)
        source_prefix = etree.QName(element).namespace
        if source_prefix and source_prefix != self.version.namespace:
            old = "{" + source_prefix + "}"
            for node in element.iter():
                if isinstance(node.tag, str) and node.tag.startswith(old):
                    node.tag = self.prefix + node.tag[len(old) :]
            etree.cleanup_namespaces(element)
        parent.append(element)
        return element

    def finish(self) -> bytes:
        if self.faults:
            raise WriteError(faults=self.faults)
        return etree.tostring(self.root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _reply_objects(doc: _Doc, package: etree._Element, objects: list[ReplyObject]) -> None:
    groups: dict[str | None, list[ReplyObject]] = {}
    for obj in objects:
        groups.setdefault(obj.group_sip_id or None, []).append(obj)
    for group_id, members in groups.items():
        if group_id is None:
            continue
        group = doc.add(
            package, "DataObjectGroup", attrib={"id": doc.check_id(group_id, "DataObjectGroup")}
        )
        for obj in members:
            _reply_object(doc, group, obj)
    for obj in groups.get(None, []):
        _reply_object(doc, package, obj)


def _reply_object(doc: _Doc, parent: etree._Element, obj: ReplyObject) -> None:
    name = "BinaryDataObject" if obj.kind == "binary" else "PhysicalDataObject"
    element = doc.add(parent, name, attrib={"id": doc.check_id(obj.sip_id, name)})
    doc.token(element, "DataObjectSystemId", obj.system_id)
    doc.token(element, "DataObjectGroupSystemId", obj.group_system_id)
    doc.token(element, "DataObjectVersion", obj.data_object_version)
    if obj.kind == "binary":
        if obj.message_digest and obj.digest_algorithm:
            doc.add(
                element,
                "MessageDigest",
                clean_token(obj.message_digest),
                {"algorithm": clean_token(obj.digest_algorithm)},
            )
        if obj.size is not None and obj.size > 0:
            doc.add(element, "Size", str(obj.size))


def _reply_unit(doc: _Doc, parent: etree._Element, unit: ReplyUnit) -> None:
    element = doc.add(
        parent, "ArchiveUnit", attrib={"id": doc.check_id(unit.sip_id, "ArchiveUnit")}
    )
    content = doc.add(element, "Content")
    if unit.title:
        doc.add(content, "Title", unit.title)
    doc.token(content, "SystemId", unit.system_id)
    doc.token(content, "ArchivalAgencyArchiveUnitIdentifier", unit.archival_agency_identifier)


def write_archive_transfer_reply(reply: ArchiveTransferReply) -> bytes:
    """Write ``reply`` as an ``ArchiveTransferReply`` (UTF-8 bytes) in ``reply.version``.

    On OK (or WARNING), the units and objects of the reply are listed in a
    ``DataObjectPackage`` with the archive's system ids (``SystemId`` in each unit's
    ``Content``, ``DataObjectSystemId``/``DataObjectGroupSystemId`` on objects), as Vitam does;
    on KO, ``events`` (one per fault) go in ``Operation``. The result validates against the
    official XSD of the version. Raises :class:`~seda.WriteError` when a required value
    (message identifiers, agencies) is empty or an id is not an XML id.
    """
    doc = _Doc(reply.version, "ArchiveTransferReply")
    doc.header(reply.comments, reply.date, reply.message_identifier)
    doc.token(doc.root, "ArchivalAgreement", reply.archival_agreement)
    doc.code_list_versions(doc.root, reply.code_list_versions)
    if reply.units or reply.objects:
        package = doc.add(doc.root, "DataObjectPackage")
        _reply_objects(doc, package, reply.objects)
        descriptive = doc.add(package, "DescriptiveMetadata")
        for unit in reply.units:
            _reply_unit(doc, descriptive, unit)
        doc.add(package, "ManagementMetadata")
    doc.token(doc.root, "ReplyCode", reply.reply_code)
    if reply.events:
        operation = doc.add(doc.root, "Operation")
        for event in reply.events:
            doc.event(operation, event, reply.date)
    doc.token(doc.root, "MessageRequestIdentifier", reply.message_request_identifier, required=True)
    if reply.grant_date is not None:
        doc.add(doc.root, "GrantDate", format_datetime(reply.grant_date))
    doc.organization(doc.root, "ArchivalAgency", reply.archival_agency_identifier)
    doc.organization(doc.root, "TransferringAgency", reply.transferring_agency_identifier)
    return doc.finish()


# --------------------------------------------------------------------------- DataObjectPackage

_LOGBOOK = "LogBook"


def _object_common(
    doc: _Doc,
    element: etree._Element,
    obj: BinaryDataObject | PhysicalDataObject,
    group_link: tuple[str, str] | None,
) -> None:
    if doc.version != SedaVersion.V2_1:
        doc.token(element, "DataObjectProfile", obj.data_object_profile)
    doc.token(element, "DataObjectSystemId", obj.data_object_system_id)
    doc.token(element, "DataObjectGroupSystemId", obj.data_object_group_system_id)
    if group_link is not None:
        doc.token(element, group_link[0], group_link[1])
    doc.token(element, "DataObjectVersion", obj.data_object_version)
    if doc.version == SedaVersion.V2_3:
        doc.token(element, "DataObjectUse", obj.data_object_use)
        if obj.data_object_number is not None:
            doc.add(element, "DataObjectNumber", str(obj.data_object_number))


def _binary(
    doc: _Doc, parent: etree._Element, obj: BinaryDataObject, group_link: tuple[str, str] | None
) -> None:
    element = doc.add(
        parent, "BinaryDataObject", attrib={"id": doc.check_id(obj.id, "BinaryDataObject")}
    )
    _object_common(doc, element, obj, group_link)
    where = f"BinaryDataObject[@id='{obj.id}']"
    doc.token(element, "Uri", obj.uri)
    if obj.message_digest:
        if not obj.digest_algorithm:
            doc.faults.append(
                Fault(FaultCodes.WRITE_INVALID, "MessageDigest needs an algorithm", where)
            )
        doc.add(
            element,
            "MessageDigest",
            clean_token(obj.message_digest),
            {"algorithm": clean_token(obj.digest_algorithm or "")},
        )
    elif obj.uri:
        doc.faults.append(
            Fault(
                FaultCodes.WRITE_INVALID,
                "a BinaryDataObject with a Uri needs a MessageDigest",
                where,
            )
        )
    if obj.size is not None and obj.size > 0:
        doc.add(element, "Size", str(obj.size))
    if obj.format is not None:
        fmt = doc.add(element, "FormatIdentification")
        doc.text(fmt, "FormatLitteral", obj.format.format_litteral)
        doc.token(fmt, "MimeType", obj.format.mime_type)
        doc.token(fmt, "FormatId", obj.format.format_id)
        doc.token(fmt, "Encoding", obj.format.encoding)
    if obj.file_info is not None:
        info = obj.file_info
        file_info = doc.add(element, "FileInfo")
        doc.add(file_info, "Filename", info.filename)
        doc.text(file_info, "CreatingApplicationName", info.creating_application_name)
        doc.text(file_info, "CreatingApplicationVersion", info.creating_application_version)
        doc.token(file_info, "DateCreatedByApplication", info.date_created_by_application)
        doc.text(file_info, "CreatingOs", info.creating_os)
        doc.text(file_info, "CreatingOsVersion", info.creating_os_version)
        doc.token(file_info, "LastModified", info.last_modified)
    if obj.digitization is not None and not obj.digitization.is_empty():
        image = doc.add(doc.add(element, "Metadata"), "Image")
        _mix(image, obj.digitization)


def _mix(parent: etree._Element, scan: Digitization) -> None:
    """A scan's capture record as a MIX 2.0 ``mix`` element (see :class:`Digitization`)."""
    mix = "{" + MIX_NAMESPACE + "}"
    root = etree.SubElement(parent, mix + "mix", nsmap={"mix": MIX_NAMESPACE})

    def sub(where: etree._Element, name: str, text: str | None = None) -> etree._Element:
        element = etree.SubElement(where, mix + name)
        if text is not None:
            element.text = clean_text(text)
        return element

    if scan.scan_date or scan.operator or scan.scanner:
        capture = sub(root, "ImageCaptureMetadata")
        general = sub(capture, "GeneralCaptureInformation")
        if scan.scan_date is not None:
            sub(general, "dateTimeCreated", format_date(scan.scan_date))
        if scan.operator:
            sub(general, "imageProducer", clean_token(scan.operator))
        if scan.scanner:
            sub(general, "captureDevice", "reflection print scanner")
            model = sub(sub(capture, "ScannerCapture"), "ScannerModel")
            sub(model, "scannerModelName", clean_token(scan.scanner))
    if scan.resolution_dpi is not None:
        metrics = sub(sub(root, "ImageAssessmentMetadata"), "SpatialMetrics")
        sub(metrics, "samplingFrequencyUnit", "in.")
        for axis in ("xSamplingFrequency", "ySamplingFrequency"):
            sub(sub(metrics, axis), "numerator", str(scan.resolution_dpi))
    if scan.paper_original:
        extension = sub(root, "Extension")
        fate = etree.SubElement(
            extension, "{" + SCAN_NAMESPACE + "}paperOriginal", nsmap={"sae": SCAN_NAMESPACE}
        )
        fate.text = clean_token(scan.paper_original)


def _physical(
    doc: _Doc, parent: etree._Element, obj: PhysicalDataObject, group_link: tuple[str, str] | None
) -> None:
    element = doc.add(
        parent, "PhysicalDataObject", attrib={"id": doc.check_id(obj.id, "PhysicalDataObject")}
    )
    _object_common(doc, element, obj, group_link)
    doc.token(element, "PhysicalId", obj.physical_id)


def _objects(doc: _Doc, package_element: etree._Element, package: DataObjectPackage) -> None:
    objects: dict[str, BinaryDataObject | PhysicalDataObject] = {
        o.id: o for o in package.data_objects
    }
    written: set[str] = set()

    def write(
        parent: etree._Element,
        obj: BinaryDataObject | PhysicalDataObject,
        link: tuple[str, str] | None,
    ) -> None:
        written.add(obj.id)
        if isinstance(obj, BinaryDataObject):
            _binary(doc, parent, obj, link)
        else:
            _physical(doc, parent, obj, link)

    for group in package.data_object_groups:
        members = [objects[i] for i in group.object_ids if i in objects and i not in written]
        if group.declared:
            element = doc.add(
                package_element,
                "DataObjectGroup",
                attrib={"id": doc.check_id(group.id, "DataObjectGroup")},
            )
            for obj in members:
                write(element, obj, None)
        else:
            for position, obj in enumerate(members):
                kind = "DataObjectGroupId" if position == 0 else "DataObjectGroupReferenceId"
                write(package_element, obj, (kind, group.id))
    for obj in package.data_objects:
        if obj.id not in written:
            loose = ("DataObjectGroupReferenceId", obj.group_id) if obj.group_id else None
            write(package_element, obj, loose)


def _rule_category(doc: _Doc, parent: etree._Element, category: RuleCategory, where: str) -> None:
    name = category.category
    element = doc.add(parent, name)
    for rule in category.rules:
        doc.token(element, "Rule", rule.rule_id, required=True, where=f"{where}/{name}/Rule")
        if rule.start_date is not None:
            doc.add(element, "StartDate", format_date(rule.start_date))
        if name == "HoldRule":
            if rule.hold_end_date is not None:
                doc.add(element, "HoldEndDate", format_date(rule.hold_end_date))
            doc.token(element, "HoldOwner", rule.hold_owner)
            if rule.hold_reassessing_date is not None:
                doc.add(element, "HoldReassessingDate", format_date(rule.hold_reassessing_date))
            doc.token(element, "HoldReason", rule.hold_reason)
            if rule.prevent_rearrangement is not None:
                doc.add(
                    element,
                    "PreventRearrangement",
                    "true" if rule.prevent_rearrangement else "false",
                )
    if name == "ClassificationRule":
        doc.token(element, "ClassificationAudience", category.classification_audience)
    if category.prevent_inheritance and category.ref_non_rule_ids:
        doc.faults.append(
            Fault(
                FaultCodes.WRITE_INVALID,
                f"{name}: PreventInheritance and RefNonRuleId exclude each other",
                where,
            )
        )
    if category.prevent_inheritance:
        doc.add(element, "PreventInheritance", "true")
    for ref in category.ref_non_rule_ids:
        doc.token(element, "RefNonRuleId", ref)
    if name in ("StorageRule", "AppraisalRule"):
        doc.token(
            element,
            "FinalAction",
            category.final_action,
            required=True,
            where=f"{where}/{name}/FinalAction",
        )
    if name == "ClassificationRule":
        doc.token(
            element,
            "ClassificationLevel",
            category.classification_level,
            required=True,
            where=f"{where}/{name}/ClassificationLevel",
        )
        doc.token(
            element,
            "ClassificationOwner",
            category.classification_owner,
            required=True,
            where=f"{where}/{name}/ClassificationOwner",
        )
        if category.classification_reassessing_date is not None:
            doc.add(
                element,
                "ClassificationReassessingDate",
                format_date(category.classification_reassessing_date),
            )
        if category.need_reassessing_authorization is not None:
            doc.add(
                element,
                "NeedReassessingAuthorization",
                "true" if category.need_reassessing_authorization else "false",
            )


def _management_group(
    doc: _Doc, parent: etree._Element, management: Management, where: str
) -> None:
    """The rule categories, LogBook, NeedAuthorization and HoldRule, in XSD order."""
    for name in RULE_CATEGORIES[:-1]:
        if name in management.rules:
            _rule_category(doc, parent, management.rules[name], where)
    for extension in management.extensions:
        if etree.QName(safe_parse(extension)).localname == _LOGBOOK:
            doc.insert_xml(parent, extension)
    if management.need_authorization is not None:
        doc.add(parent, "NeedAuthorization", "true" if management.need_authorization else "false")
    if "HoldRule" in management.rules:
        if doc.version == SedaVersion.V2_1:
            doc.faults.append(
                Fault(
                    FaultCodes.WRITE_INVALID,
                    "HoldRule cannot be written in SEDA 2.1 (it exists from 2.2)",
                    where,
                )
            )
        else:
            _rule_category(doc, parent, management.rules["HoldRule"], where)


def _has_management(management: Management) -> bool:
    return bool(
        management.rules
        or management.need_authorization is not None
        or any(etree.QName(safe_parse(e)).localname == _LOGBOOK for e in management.extensions)
    )


_CONTENT_IDENTIFIERS = (
    ("FilePlanPosition", "file_plan_positions"),
    ("SystemId", "system_ids"),
    ("OriginatingSystemId", "originating_system_ids"),
    ("ArchivalAgencyArchiveUnitIdentifier", "archival_agency_archive_unit_identifiers"),
    ("OriginatingAgencyArchiveUnitIdentifier", "originating_agency_archive_unit_identifiers"),
    ("TransferringAgencyArchiveUnitIdentifier", "transferring_agency_archive_unit_identifiers"),
)
_CONTENT_DATES = (
    ("CreatedDate", "created_date"),
    ("TransactedDate", "transacted_date"),
    ("AcquiredDate", "acquired_date"),
    ("SentDate", "sent_date"),
    ("ReceivedDate", "received_date"),
    ("RegisteredDate", "registered_date"),
    ("StartDate", "start_date"),
    ("EndDate", "end_date"),
)


def _content(doc: _Doc, parent: etree._Element, unit: ArchiveUnit) -> None:
    if unit.content_xml:
        doc.insert_xml(parent, unit.content_xml)
        return
    content = doc.add(parent, "Content")
    doc.token(content, "DescriptionLevel", unit.description_level)
    if unit.title:
        doc.add(content, "Title", unit.title)
    for name, attribute in _CONTENT_IDENTIFIERS:
        for value in getattr(unit, attribute):
            doc.token(content, name, value)
    doc.text(content, "Description", unit.description)
    if unit.custodial_history:
        history = doc.add(content, "CustodialHistory")
        for item in unit.custodial_history:
            doc.add(history, "CustodialHistoryItem", item)
    doc.text(content, "Type", unit.type)
    doc.text(content, "DocumentType", unit.document_type)
    for language in unit.languages:
        doc.token(content, "Language", language)
    doc.token(content, "DescriptionLanguage", unit.description_language)
    doc.token(content, "Status", unit.status)
    doc.text(content, "Version", unit.version)
    for tag in unit.tags:
        doc.token(content, "Tag", tag)
    for keyword in unit.keywords:
        element = doc.add(content, "Keyword")
        doc.add(element, "KeywordContent", keyword.content)
        doc.token(element, "KeywordReference", keyword.reference)
        doc.token(element, "KeywordType", keyword.type)
    if unit.originating_agency_identifier:
        doc.organization(content, "OriginatingAgency", unit.originating_agency_identifier)
    if unit.submission_agency_identifier:
        doc.organization(content, "SubmissionAgency", unit.submission_agency_identifier)
    doc.text(content, "Source", unit.source)
    for name, attribute in _CONTENT_DATES:
        doc.token(content, name, getattr(unit, attribute))
    if doc.version != SedaVersion.V2_1:
        doc.token(content, "DateLitteral", unit.date_litteral)


def _units(doc: _Doc, descriptive: etree._Element, package: DataObjectPackage) -> None:
    units = {u.id: u for u in package.archive_units}
    references: dict[str | None, list[ArchiveUnitReference]] = {}
    for reference in package.unit_references:
        references.setdefault(reference.parent_id, []).append(reference)
    written: set[str] = set()

    def write(parent: etree._Element, unit: ArchiveUnit) -> None:
        written.add(unit.id)
        where = f"ArchiveUnit[@id='{unit.id}']"
        element = doc.add(
            parent, "ArchiveUnit", attrib={"id": doc.check_id(unit.id, "ArchiveUnit")}
        )
        doc.token(element, "ArchiveUnitProfile", unit.archive_unit_profile)
        if _has_management(unit.management):
            _management_group(doc, doc.add(element, "Management"), unit.management, where)
        _content(doc, element, unit)
        pending = list(references.get(unit.id, []))
        for child_id in unit.child_unit_ids:
            child = units.get(child_id)
            if child is not None and child.parent_id == unit.id and child_id not in written:
                write(element, child)
            elif pending:
                reference = pending.pop(0)
                pointer = doc.add(
                    element, "ArchiveUnit", attrib={"id": doc.check_id(reference.id, "ArchiveUnit")}
                )
                doc.token(
                    pointer, "ArchiveUnitRefId", reference.target_id, required=True, where=where
                )
        group_refs = list(unit.data_object_group_reference_ids)
        if not group_refs and not unit.data_object_ids and unit.data_object_group_id:
            group_refs = [unit.data_object_group_id]
        for object_id in unit.data_object_ids:
            reference_element = doc.add(element, "DataObjectReference")
            doc.token(
                reference_element, "DataObjectReferenceId", object_id, required=True, where=where
            )
        for group_id in group_refs:
            reference_element = doc.add(element, "DataObjectReference")
            doc.token(
                reference_element,
                "DataObjectGroupReferenceId",
                group_id,
                required=True,
                where=where,
            )

    order = list(package.root_unit_ids) + [u.id for u in package.archive_units]
    for unit_id in order:
        unit = units.get(unit_id)
        if unit is None or unit_id in written:
            continue
        if (
            unit.parent_id is not None
            and unit.parent_id in units
            and unit_id not in (package.root_unit_ids)
        ):
            continue
        write(descriptive, unit)
    for unit in package.archive_units:  # orphans of a broken parent_id chain
        if unit.id not in written:
            write(descriptive, unit)


def _management_metadata(doc: _Doc, parent: etree._Element, metadata: ManagementMetadata) -> None:
    element = doc.add(parent, "ManagementMetadata")
    doc.token(element, "ArchivalProfile", metadata.archival_profile)
    doc.token(element, "ServiceLevel", metadata.service_level)
    doc.token(element, "AcquisitionInformation", metadata.acquisition_information)
    doc.token(element, "LegalStatus", metadata.legal_status)
    doc.token(element, "OriginatingAgencyIdentifier", metadata.originating_agency_identifier)
    doc.token(element, "SubmissionAgencyIdentifier", metadata.submission_agency_identifier)
    _management_group(doc, element, metadata.management, "ManagementMetadata")


def _package(doc: _Doc, package: DataObjectPackage) -> None:
    element = doc.add(doc.root, "DataObjectPackage")
    _objects(doc, element, package)
    _units(doc, doc.add(element, "DescriptiveMetadata"), package)
    _management_metadata(doc, element, package.management_metadata)


# --------------------------------------------------------------------------- messages


def write_archive_transfer(transfer: ArchiveTransfer) -> bytes:
    """Write ``transfer`` as an ``ArchiveTransfer`` in ``transfer.version`` (UTF-8 bytes).

    For outgoing transfers (e.g. to departmental archives) and round trips. Units whose
    ``content_xml`` is set are written with that ``Content`` unchanged (moved to the target
    version's namespace); otherwise ``Content`` is built from the parsed fields. Management
    extensions other than ``LogBook`` (e.g. Vitam's ``UpdateOperation``) are not written: the
    official schema does not know them. Raises :class:`~seda.WriteError` when a required value
    is missing (identifiers, agencies, FinalAction...), or for HoldRule in 2.1.
    """
    doc = _Doc(transfer.version, "ArchiveTransfer")
    doc.header(transfer.comments, transfer.date, transfer.message_identifier)
    doc.token(doc.root, "ArchivalAgreement", transfer.archival_agreement)
    doc.code_list_versions(doc.root, transfer.code_list_versions)
    _package(doc, transfer.package)
    for reference in transfer.related_transfer_references:
        doc.token(doc.root, "RelatedTransferReference", reference)
    doc.token(
        doc.root, "TransferRequestReplyIdentifier", transfer.transfer_request_reply_identifier
    )
    doc.organization(doc.root, "ArchivalAgency", transfer.archival_agency_identifier)
    doc.organization(doc.root, "TransferringAgency", transfer.transferring_agency_identifier)
    return doc.finish()


def _unit_identifiers(doc: _Doc, identifiers: list[str]) -> None:
    if not [i for i in identifiers if clean_token(i)]:
        doc.faults.append(
            Fault(
                FaultCodes.WRITE_INVALID,
                "at least one UnitIdentifier is required",
                "UnitIdentifier",
            )
        )
    for identifier in identifiers:
        doc.token(doc.root, "UnitIdentifier", identifier)


def write_archive_delivery_request_reply(reply: ArchiveDeliveryRequestReply) -> bytes:
    """Write ``reply`` as an ``ArchiveDeliveryRequestReply`` (the manifest of a DIP).

    The delivered units keep their ``Content`` verbatim. Valid against the official XSD of
    ``reply.version``; raises :class:`~seda.WriteError` for a missing required value.
    """
    doc = _Doc(reply.version, "ArchiveDeliveryRequestReply")
    doc.header(reply.comments, reply.date, reply.message_identifier)
    doc.token(doc.root, "ArchivalAgreement", reply.archival_agreement)
    doc.code_list_versions(doc.root, reply.code_list_versions)
    if reply.package is not None:
        _package(doc, reply.package)
    doc.token(doc.root, "ReplyCode", reply.reply_code)
    if reply.events:
        operation = doc.add(doc.root, "Operation")
        for event in reply.events:
            doc.event(operation, event, reply.date)
    doc.token(doc.root, "MessageRequestIdentifier", reply.message_request_identifier, required=True)
    doc.token(
        doc.root,
        "AuthorizationRequestReplyIdentifier",
        reply.authorization_request_reply_identifier,
    )
    _unit_identifiers(doc, reply.unit_identifiers)
    doc.organization(doc.root, "ArchivalAgency", reply.archival_agency_identifier)
    doc.organization(doc.root, "Requester", reply.requester_identifier)
    return doc.finish()


def write_archive_destruction_notification(notification: ArchiveDestructionNotification) -> bytes:
    """Write ``notification`` as an ``ArchiveDestructionNotification``.

    Lists the destroyed units (``UnitIdentifier``) and the authorisation it relies on. Valid
    against the official XSD; raises :class:`~seda.WriteError` for a missing required value.
    """
    doc = _Doc(notification.version, "ArchiveDestructionNotification")
    doc.header(notification.comments, notification.date, notification.message_identifier)
    doc.token(doc.root, "ArchivalAgreement", notification.archival_agreement)
    doc.code_list_versions(doc.root, notification.code_list_versions)
    doc.token(
        doc.root,
        "AuthorizationRequestReplyIdentifier",
        notification.authorization_request_reply_identifier,
        required=True,
    )
    _unit_identifiers(doc, notification.unit_identifiers)
    doc.organization(doc.root, "ArchivalAgency", notification.archival_agency_identifier)
    doc.organization(doc.root, "OriginatingAgency", notification.originating_agency_identifier)
    return doc.finish()


def write_acknowledgement(acknowledgement: Acknowledgement) -> bytes:
    """Write ``acknowledgement`` as an ``Acknowledgement`` (technical receipt of a message)."""
    doc = _Doc(acknowledgement.version, "Acknowledgement")
    doc.header(acknowledgement.comments, acknowledgement.date, acknowledgement.message_identifier)
    doc.token(
        doc.root,
        "MessageReceivedIdentifier",
        acknowledgement.message_received_identifier,
        required=True,
    )
    doc.organization(doc.root, "Sender", acknowledgement.sender_identifier)
    doc.organization(doc.root, "Receiver", acknowledgement.receiver_identifier)
    return doc.finish()
