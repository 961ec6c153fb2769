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
from ._model import ArchiveTransferReply, ReplyEvent, ReplyObject, ReplyUnit
from ._parser import safe_parse
from ._versions import SedaVersion

__all__ = ["CODE_LIST_ORDER", "write_archive_transfer_reply"]

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

    def add(self, parent: etree._Element, name: str, text: str | None = None,
            attrib: dict[str, str] | None = None) -> etree._Element:
        element = etree.SubElement(parent, self.prefix + name)
        if attrib:
            for key, value in attrib.items():
                element.set(key, clean_text(value))
        if text is not None:
            element.text = clean_text(text)
        return element

    def token(self, parent: etree._Element, name: str, value: str | None,
              required: bool = False, where: str | None = None) -> etree._Element | None:
        """Add a non-empty token element; skip it when empty, or record a fault if required."""
        cleaned = clean_token(value) if value is not None else ""
        if not cleaned:
            if required:
                self.faults.append(Fault(FaultCodes.WRITE_INVALID,
                                         f"{name} is required and empty", where or name))
            return None
        return self.add(parent, name, cleaned)

    def text(self, parent: etree._Element, name: str, value: str | None) -> None:
        if value is not None:
            self.add(parent, name, value)

    def check_id(self, value: str, what: str) -> str:
        if not _NCNAME.match(value or ""):
            self.faults.append(Fault(FaultCodes.WRITE_INVALID,
                                     f"{what} id {value!r} is not a valid XML id (NCName)",
                                     what))
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
        """Append a verbatim element (e.g. a unit's Content) moved into this version's namespace.
        """
        element = safe_parse(data)
        source_prefix = etree.QName(element).namespace
        if source_prefix and source_prefix != self.version.namespace:
            old = "{" + source_prefix + "}"
            for node in element.iter():
                if isinstance(node.tag, str) and node.tag.startswith(old):
                    node.tag = self.prefix + node.tag[len(old):]
            etree.cleanup_namespaces(element)
        parent.append(element)
        return element

    def finish(self) -> bytes:
        if self.faults:
            raise WriteError(faults=self.faults)
        return etree.tostring(self.root, xml_declaration=True, encoding="UTF-8",
                              pretty_print=True)


def _reply_objects(doc: _Doc, package: etree._Element, objects: list[ReplyObject]) -> None:
    groups: dict[str | None, list[ReplyObject]] = {}
    for obj in objects:
        groups.setdefault(obj.group_sip_id or None, []).append(obj)
    for group_id, members in groups.items():
        if group_id is None:
            continue
        group = doc.add(package, "DataObjectGroup",
                        attrib={"id": doc.check_id(group_id, "DataObjectGroup")})
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
            doc.add(element, "MessageDigest", clean_token(obj.message_digest),
                    {"algorithm": clean_token(obj.digest_algorithm)})
        if obj.size is not None and obj.size > 0:
            doc.add(element, "Size", str(obj.size))


def _reply_unit(doc: _Doc, parent: etree._Element, unit: ReplyUnit) -> None:
    element = doc.add(parent, "ArchiveUnit", attrib={"id": doc.check_id(unit.sip_id,
                                                                       "ArchiveUnit")})
    content = doc.add(element, "Content")
    if unit.title:
        doc.add(content, "Title", unit.title)
    doc.token(content, "SystemId", unit.system_id)


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
    doc.token(doc.root, "MessageRequestIdentifier", reply.message_request_identifier,
              required=True)
    if reply.grant_date is not None:
        doc.add(doc.root, "GrantDate", format_datetime(reply.grant_date))
    doc.organization(doc.root, "ArchivalAgency", reply.archival_agency_identifier)
    doc.organization(doc.root, "TransferringAgency", reply.transferring_agency_identifier)
    return doc.finish()
