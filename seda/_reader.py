"""Reading SEDA messages into the model, with bounded memory.

The reader is driven by a stream of ``start``/``end`` events: from the hardened ``iterparse``
when it reads bytes (each subtree is cleared once read, so memory follows the model, not the
document), or from ``iterwalk`` over a tree that was already parsed (for example to validate it
against the XSD first), in which case nothing is cleared.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from lxml import etree

from ._errors import (
    Fault,
    FaultCodes,
    StructureInvalid,
    UnexpectedMessage,
    UnsupportedVersion,
)
from ._model import (
    MIX_NAMESPACE,
    PAPER_ORIGINAL_FATES,
    RULE_CATEGORIES,
    SCAN_NAMESPACE,
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
    ReplyEvent,
    ReplyObject,
    ReplyUnit,
    RuleCategory,
    RuleRef,
)
from ._parser import DEFAULT_MAX_BYTES, DEFAULT_MAX_DEPTH, iter_events
from ._versions import SEDA_NAMESPACE_PREFIX, SedaVersion, version_from_namespace

__all__ = [
    "MessageRoot",
    "check_root",
    "read_transfer",
    "read_transfer_reply",
    "transfer_from_tree",
]

XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"
_DATE_PREFIX = re.compile(r"^(-?\d{4,}-\d{2}-\d{2})")
_PLACEHOLDER_DATE = datetime(1970, 1, 1)

_ORGANIZATIONS = (
    "ArchivalAgency",
    "TransferringAgency",
    "Requester",
    "OriginatingAgency",
    "Sender",
    "Receiver",
    "ControlAuthority",
)
_HOLD_FIELDS = {
    "HoldEndDate",
    "HoldOwner",
    "HoldReassessingDate",
    "HoldReason",
    "PreventRearrangement",
}


@dataclass(frozen=True)
class MessageRoot:
    """What the root element says: message name and version."""

    name: str
    version: SedaVersion


def check_root(element: etree._Element, expected: str | Iterable[str] | None) -> MessageRoot:
    """Check the root QName: SEDA namespace, supported version, expected message name.

    Raises :class:`UnsupportedVersion` (unknown SEDA namespace or not SEDA at all) or
    :class:`UnexpectedMessage`.
    """
    qname = etree.QName(element)
    namespace = qname.namespace
    version = version_from_namespace(namespace)
    if version is None:
        if namespace and namespace.startswith(SEDA_NAMESPACE_PREFIX):
            raise UnsupportedVersion(
                faults=[
                    Fault(
                        FaultCodes.UNSUPPORTED_VERSION,
                        f"unsupported SEDA version {namespace[len(SEDA_NAMESPACE_PREFIX) :]!r} "
                        f"(namespace {namespace}); supported: 2.1, 2.2, 2.3",
                        "/*",
                    )
                ]
            )
        raise UnsupportedVersion(
            faults=[
                Fault(
                    FaultCodes.NOT_SEDA,
                    f"the root element {qname.localname!r} is not in a SEDA namespace "
                    f"(namespace {namespace or 'none'})",
                    "/*",
                )
            ]
        )
    if expected is not None:
        names = {expected} if isinstance(expected, str) else set(expected)
        if qname.localname not in names:
            raise UnexpectedMessage(
                faults=[
                    Fault(
                        FaultCodes.UNEXPECTED_ROOT,
                        f"expected {' or '.join(sorted(names))}, found {qname.localname}",
                        "/*",
                    )
                ]
            )
    return MessageRoot(qname.localname, version)


def canonical_bytes(element: etree._Element) -> bytes:
    """C14N bytes of ``element`` alone (comments kept), with every namespace in scope declared.

    The element is first copied into a document of its own, so the bytes do not depend on where
    the surrounding document happened to declare its namespaces.
    """
    clone = copy.deepcopy(element)
    # libxml2 writes namespace declarations in declaration order: declare them in a fixed order
    ordered: Any = dict(sorted(clone.nsmap.items(), key=lambda item: item[0] or ""))
    fresh = etree.Element(clone.tag, nsmap=ordered)
    for key, value in clone.attrib.items():
        fresh.set(key, value)
    fresh.text = clone.text
    for child in list(clone):
        fresh.append(child)
    return etree.tostring(fresh, method="c14n", with_comments=True)


# --------------------------------------------------------------------------- value helpers


class _Values:
    """Typed reading of element values; problems are collected as faults, never raised."""

    def __init__(self, namespace: str) -> None:
        self.prefix = "{" + namespace + "}"
        self.faults: list[Fault] = []

    def name(self, element: etree._Element) -> str | None:
        tag = element.tag
        if isinstance(tag, str) and tag.startswith(self.prefix):
            return tag[len(self.prefix) :]
        return None

    def children(self, element: etree._Element) -> list[tuple[str, etree._Element]]:
        out = []
        for child in element:
            name = self.name(child)
            if name is not None:
                out.append((name, child))
        return out

    @staticmethod
    def string(element: etree._Element) -> str:
        if len(element) == 0:  # no child (element, comment or PI): the text is all there is
            return element.text or ""
        return "".join(str(text) for text in element.itertext())

    @staticmethod
    def token(element: etree._Element) -> str:
        return " ".join(_Values.string(element).split())

    def where(self, element: etree._Element) -> str:
        tree = element.getroottree()
        try:
            path = tree.getpath(element)
        except ValueError:
            path = ""
        line = element.sourceline
        return f"{path} (line {line})" if line else path

    def bad(self, element: etree._Element, what: str, value: str) -> None:
        self.faults.append(
            Fault(
                FaultCodes.BAD_VALUE,
                f"{self.name(element)}: {value!r} is not {what}",
                self.where(element),
            )
        )

    def date(self, element: etree._Element) -> date | None:
        if element.get(XSI_NIL) in ("true", "1"):
            return None
        text = self.token(element)
        match = _DATE_PREFIX.match(text)
        if match:
            try:
                return date.fromisoformat(match.group(1))
            except ValueError:
                pass
        self.bad(element, "a date", text)
        return None

    def datetime(self, element: etree._Element) -> datetime | None:
        text = self.token(element)
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            self.bad(element, "a date and time", text)
            return None

    def boolean(self, element: etree._Element) -> bool | None:
        text = self.token(element)
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        self.bad(element, "a boolean", text)
        return None

    def integer(self, element: etree._Element) -> int | None:
        text = self.token(element)
        try:
            return int(text)
        except ValueError:
            self.bad(element, "an integer", text)
            return None

    def identifier(self, element: etree._Element) -> str:
        """The ``Identifier`` of an organization block."""
        for name, child in self.children(element):
            if name == "Identifier":
                return self.token(child)
        return ""


# --------------------------------------------------------------------------- sub-readers


def _read_rule_category(v: _Values, category: str, element: etree._Element) -> RuleCategory:
    rules: list[dict[str, Any]] = []
    extra: dict[str, Any] = {}
    prevent_inheritance = False
    refs: list[str] = []
    for name, child in v.children(element):
        if name == "Rule":
            rules.append({"rule_id": v.token(child)})
        elif name == "StartDate":
            if rules:
                rules[-1]["start_date"] = v.date(child)
        elif name in _HOLD_FIELDS:
            if not rules:
                continue
            if name in ("HoldEndDate", "HoldReassessingDate"):
                key = "hold_end_date" if name == "HoldEndDate" else "hold_reassessing_date"
                rules[-1][key] = v.date(child)
            elif name == "HoldOwner":
                rules[-1]["hold_owner"] = v.token(child)
            elif name == "HoldReason":
                rules[-1]["hold_reason"] = v.token(child)
            else:
                rules[-1]["prevent_rearrangement"] = v.boolean(child)
        elif name == "PreventInheritance":
            prevent_inheritance = bool(v.boolean(child))
        elif name == "RefNonRuleId":
            refs.append(v.token(child))
        elif name == "FinalAction":
            extra["final_action"] = v.token(child)
        elif name == "ClassificationAudience":
            extra["classification_audience"] = v.token(child)
        elif name == "ClassificationLevel":
            extra["classification_level"] = v.token(child)
        elif name == "ClassificationOwner":
            extra["classification_owner"] = v.token(child)
        elif name == "ClassificationReassessingDate":
            extra["classification_reassessing_date"] = v.date(child)
        elif name == "NeedReassessingAuthorization":
            extra["need_reassessing_authorization"] = v.boolean(child)
    return RuleCategory(
        category=category,
        rules=[RuleRef(**r) for r in rules],
        prevent_inheritance=prevent_inheritance,
        ref_non_rule_ids=refs,
        **extra,
    )


def _read_management(
    v: _Values, element: etree._Element, skip: frozenset[str] = frozenset()
) -> Management:
    rules: dict[str, RuleCategory] = {}
    need_authorization: bool | None = None
    extensions: list[bytes] = []
    for child in element:
        if not isinstance(child.tag, str):
            continue
        name = v.name(child)
        if name in skip:
            continue
        if name in RULE_CATEGORIES:
            rules[name] = _read_rule_category(v, name, child)
        elif name == "NeedAuthorization":
            need_authorization = v.boolean(child)
        else:
            extensions.append(canonical_bytes(child))
    return Management(rules=rules, need_authorization=need_authorization, extensions=extensions)


_MANAGEMENT_METADATA_FIELDS = {
    "ArchivalProfile": "archival_profile",
    "ServiceLevel": "service_level",
    "AcquisitionInformation": "acquisition_information",
    "LegalStatus": "legal_status",
    "OriginatingAgencyIdentifier": "originating_agency_identifier",
    "SubmissionAgencyIdentifier": "submission_agency_identifier",
}


def _read_management_metadata(v: _Values, element: etree._Element) -> ManagementMetadata:
    values: dict[str, Any] = {}
    for name, child in v.children(element):
        key = _MANAGEMENT_METADATA_FIELDS.get(name)
        if key:
            values[key] = v.token(child) or None
    management = _read_management(v, element, skip=frozenset(_MANAGEMENT_METADATA_FIELDS))
    return ManagementMetadata(management=management, **values)


_CONTENT_LISTS = {
    "FilePlanPosition": "file_plan_positions",
    "SystemId": "system_ids",
    "OriginatingSystemId": "originating_system_ids",
    "ArchivalAgencyArchiveUnitIdentifier": "archival_agency_archive_unit_identifiers",
    "OriginatingAgencyArchiveUnitIdentifier": "originating_agency_archive_unit_identifiers",
    "TransferringAgencyArchiveUnitIdentifier": "transferring_agency_archive_unit_identifiers",
    "Language": "languages",
    "Tag": "tags",
}
_CONTENT_TOKENS = {
    "DescriptionLevel": "description_level",
    "DescriptionLanguage": "description_language",
    "Status": "status",
    "CreatedDate": "created_date",
    "TransactedDate": "transacted_date",
    "AcquiredDate": "acquired_date",
    "SentDate": "sent_date",
    "ReceivedDate": "received_date",
    "RegisteredDate": "registered_date",
    "StartDate": "start_date",
    "EndDate": "end_date",
    "DateLitteral": "date_litteral",
}
_CONTENT_STRINGS = {
    "Type": "type",
    "DocumentType": "document_type",
    "Version": "version",
    "Source": "source",
}


def _read_content(v: _Values, element: etree._Element) -> dict[str, Any]:
    values: dict[str, Any] = {key: [] for key in _CONTENT_LISTS.values()}
    values["keywords"] = []
    values["custodial_history"] = []
    for name, child in v.children(element):
        if name == "Title":
            values.setdefault("title", v.string(child))
        elif name == "Description":
            values.setdefault("description", v.string(child))
        elif name in _CONTENT_LISTS:
            values[_CONTENT_LISTS[name]].append(v.token(child))
        elif name in _CONTENT_TOKENS:
            values.setdefault(_CONTENT_TOKENS[name], v.token(child))
        elif name in _CONTENT_STRINGS:
            values.setdefault(_CONTENT_STRINGS[name], v.string(child))
        elif name == "OriginatingAgency":
            values.setdefault("originating_agency_identifier", v.identifier(child))
        elif name == "SubmissionAgency":
            values.setdefault("submission_agency_identifier", v.identifier(child))
        elif name == "CustodialHistory":
            values["custodial_history"].extend(
                v.string(item)
                for item_name, item in v.children(child)
                if item_name == "CustodialHistoryItem"
            )
        elif name == "Keyword":
            parts = {n: c for n, c in v.children(child)}
            content = parts.get("KeywordContent")
            reference = parts.get("KeywordReference")
            kind = parts.get("KeywordType")
            values["keywords"].append(
                Keyword(
                    content=v.string(content) if content is not None else "",
                    reference=v.token(reference) if reference is not None else None,
                    type=v.token(kind) if kind is not None else None,
                )
            )
    return values


def _read_object_common(
    v: _Values, name: str, child: etree._Element, values: dict[str, Any]
) -> bool:
    simple = {
        "DataObjectProfile": "data_object_profile",
        "DataObjectSystemId": "data_object_system_id",
        "DataObjectGroupSystemId": "data_object_group_system_id",
        "DataObjectVersion": "data_object_version",
        "DataObjectUse": "data_object_use",
    }
    if name in simple:
        values[simple[name]] = v.token(child) or None
    elif name == "DataObjectNumber":
        values["data_object_number"] = v.integer(child)
    elif name == "DataObjectGroupId":
        values["_group_declared"] = v.token(child)
    elif name == "DataObjectGroupReferenceId":
        values["_group_reference"] = v.token(child)
    else:
        return False
    return True


def _read_binary(v: _Values, element: etree._Element) -> dict[str, Any]:
    values: dict[str, Any] = {"id": element.get("id", "")}
    for name, child in v.children(element):
        if _read_object_common(v, name, child, values):
            continue
        if name == "Uri":
            values["uri"] = v.token(child)
        elif name == "Attachment":
            values["has_attachment"] = True
        elif name == "MessageDigest":
            values["message_digest"] = v.token(child)
            values["digest_algorithm"] = child.get("algorithm")
        elif name == "Size":
            values["size"] = v.integer(child)
        elif name == "FormatIdentification":
            parts = {n: c for n, c in v.children(child)}
            values["format"] = FormatIdentification(
                format_litteral=v.string(parts["FormatLitteral"])
                if "FormatLitteral" in parts
                else None,
                mime_type=v.token(parts["MimeType"]) if "MimeType" in parts else None,
                format_id=v.token(parts["FormatId"]) if "FormatId" in parts else None,
                encoding=v.token(parts["Encoding"]) if "Encoding" in parts else None,
            )
        elif name == "FileInfo":
            parts = {n: c for n, c in v.children(child)}

            def text(key: str, parts: dict[str, etree._Element] = parts) -> str | None:
                return v.string(parts[key]) if key in parts else None

            def token(key: str, parts: dict[str, etree._Element] = parts) -> str | None:
                return v.token(parts[key]) if key in parts else None

            values["file_info"] = FileInfo(
                filename=text("Filename") or "",
                creating_application_name=text("CreatingApplicationName"),
                creating_application_version=text("CreatingApplicationVersion"),
                date_created_by_application=token("DateCreatedByApplication"),
                creating_os=text("CreatingOs"),
                creating_os_version=text("CreatingOsVersion"),
                last_modified=token("LastModified"),
            )
        elif name == "Metadata":
            for kind, technical in v.children(child):
                if kind == "Image":
                    scan = _read_mix(v, technical)
                    if scan is not None:
                        values["digitization"] = scan
    return values


_MIX = "{" + MIX_NAMESPACE + "}"


def _read_mix(v: _Values, image: etree._Element) -> Digitization | None:
    """The capture record of ``Metadata/Image`` (MIX 2.0, see :class:`Digitization`), or None
    when the element holds no MIX. Other image metadata is left alone."""
    mix = image.find(_MIX + "mix")
    if mix is None:
        return None

    def find(path: str) -> etree._Element | None:
        return mix.find(path.replace("mix:", _MIX))

    def text(path: str) -> str | None:
        found = find(path)
        return (v.token(found) or None) if found is not None else None

    def bad(element: etree._Element, what: str) -> None:
        v.faults.append(
            Fault(
                FaultCodes.BAD_VALUE,
                f"mix:{etree.QName(element).localname}: {v.token(element)!r} is not {what}",
                v.where(element),
            )
        )

    general = "mix:ImageCaptureMetadata/mix:GeneralCaptureInformation/"
    scan_date: date | None = None
    created = find(general + "mix:dateTimeCreated")
    if created is not None:
        match = _DATE_PREFIX.match(v.token(created))
        try:
            scan_date = date.fromisoformat(match.group(1)) if match else None
        except ValueError:
            scan_date = None
        if scan_date is None:
            bad(created, "a date")
    resolution: int | None = None
    metrics = "mix:ImageAssessmentMetadata/mix:SpatialMetrics/"
    x = find(metrics + "mix:xSamplingFrequency/mix:numerator")
    if x is not None:
        try:
            resolution = int(v.token(x))
        except ValueError:
            bad(x, "an integer")
        if resolution is not None and text(metrics + "mix:samplingFrequencyUnit") == "cm":
            resolution = round(resolution * 2.54)  # a resolution is said in dots per inch
    fate = mix.find(_MIX + "Extension/{" + SCAN_NAMESPACE + "}paperOriginal")
    paper: str | None = None
    if fate is not None:
        paper = v.token(fate)
        if paper not in PAPER_ORIGINAL_FATES:
            bad(fate, " or ".join(PAPER_ORIGINAL_FATES))
            paper = None
    return Digitization(
        scanner=text(
            "mix:ImageCaptureMetadata/mix:ScannerCapture/mix:ScannerModel/mix:scannerModelName"
        ),
        resolution_dpi=resolution,
        operator=text(general + "mix:imageProducer"),
        scan_date=scan_date,
        paper_original=paper,
    )


def _read_physical(v: _Values, element: etree._Element) -> dict[str, Any]:
    values: dict[str, Any] = {"id": element.get("id", "")}
    for name, child in v.children(element):
        if _read_object_common(v, name, child, values):
            continue
        if name == "PhysicalId":
            values["physical_id"] = v.token(child)
    return values


def _read_event(v: _Values, element: etree._Element) -> ReplyEvent:
    parts = {n: c for n, c in v.children(element)}

    def token(key: str) -> str | None:
        return v.token(parts[key]) if key in parts else None

    when = None
    if "EventDateTime" in parts:
        try:
            when = datetime.fromisoformat(v.token(parts["EventDateTime"]))
        except ValueError:
            when = None
    return ReplyEvent(
        type=token("EventTypeCode") or token("EventType") or "",
        outcome=token("Outcome") or "",
        detail=token("OutcomeDetailMessage")
        or (v.string(parts["EventDetail"]) if "EventDetail" in parts else None),
        where=token("EventDetailData"),
        date=when,
        label=token("EventType"),
        identifier=token("EventIdentifier"),
    )


# --------------------------------------------------------------------------- the event reader

# Elements the event reader acts on (below the root's children); everything else is read from
# its enclosing Content, Management, object or ManagementMetadata element.
_STRUCTURAL = frozenset(
    {
        "ArchiveUnit",
        "DataObjectGroup",
        "DataObjectPackage",
        "Content",
        "Management",
        "ArchiveUnitProfile",
        "ArchiveUnitRefId",
        "DataObjectReference",
        "BinaryDataObject",
        "PhysicalDataObject",
        "ManagementMetadata",
    }
)
_STARTS = frozenset({"ArchiveUnit", "DataObjectGroup", "DataObjectPackage"})


@dataclass
class _UnitBuilder:
    element: etree._Element
    id: str
    parent: _UnitBuilder | None
    content: dict[str, Any] | None = None
    content_xml: bytes = b""
    management: Management | None = None
    profile: str | None = None
    ref_target: str | None = None
    children: list[str] = field(default_factory=list)
    reference_ids: list[str] = field(default_factory=list)
    object_refs: list[str] = field(default_factory=list)
    group_refs: list[str] = field(default_factory=list)


@dataclass
class _Message:
    root: MessageRoot
    header: dict[str, list[str]] = field(default_factory=dict)
    organizations: dict[str, str] = field(default_factory=dict)
    code_list_versions: dict[str, str] = field(default_factory=dict)
    events: list[ReplyEvent] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    date: datetime | None = None
    grant_date: datetime | None = None
    package: DataObjectPackage | None = None
    faults: list[Fault] = field(default_factory=list)


class _EventReader:
    def __init__(self, expected: str | Iterable[str] | None, release: bool) -> None:
        self.expected = expected
        self.release = release
        self.values: _Values | None = None
        self.message: _Message | None = None
        self.root: etree._Element | None = None
        self.stack: list[_UnitBuilder] = []
        self.builders: list[_UnitBuilder] = []
        self.roots: list[str] = []
        self.references: list[ArchiveUnitReference] = []
        self.group_stack: list[str] = []
        self.groups: dict[str, DataObjectGroup] = {}
        self.object_group: dict[str, str] = {}
        self.binaries: list[dict[str, Any]] = []
        self.physicals: list[dict[str, Any]] = []
        self.management_metadata: ManagementMetadata | None = None
        self.has_package = False
        self.pending_refs: list[tuple[str, str]] = []
        self.depth = 0
        self.structural: dict[str, str] = {}

    # -- events

    def feed(self, event: str, element: etree._Element) -> None:
        # Hot path: most elements (descriptive fields) are read later, from their Content or
        # Management element, so they are skipped here with one dictionary lookup.
        if event == "start":
            self.depth += 1
            if self.root is None:
                self.root = element
                root = check_root(element, self.expected)
                self.values = _Values(root.version.namespace)
                self.message = _Message(root)
                self.structural = {self.values.prefix + n: n for n in _STRUCTURAL}
                return
            name = self.structural.get(element.tag)
            if name is not None and name in _STARTS:
                assert self.values is not None
                self._start(self.values, name, element)
            return
        self.depth -= 1
        if self.depth == 0:
            return
        v = self.values
        assert v is not None
        if self.depth == 1:  # a child of the root: header values
            name = v.name(element)
            if name is not None:
                self._header(v, name, element)
            self._release(element)
            return
        name = self.structural.get(element.tag)
        if name is not None:
            self._end(v, name, element)

    def _parent_name(self, element: etree._Element) -> str | None:
        assert self.values is not None
        parent = element.getparent()
        return None if parent is None else self.values.name(parent)

    def _start(self, v: _Values, name: str, element: etree._Element) -> None:
        if name == "ArchiveUnit" and self._parent_name(element) in (
            "DescriptiveMetadata",
            "ArchiveUnit",
        ):
            parent = self.stack[-1] if self.stack else None
            builder = _UnitBuilder(element, element.get("id", ""), parent)
            self.stack.append(builder)
            self.builders.append(builder)
        elif name == "DataObjectGroup" and self._parent_name(element) == "DataObjectPackage":
            group_id = element.get("id", "")
            self.group_stack.append(group_id)
            self.groups.setdefault(group_id, DataObjectGroup(id=group_id, declared=True))
        elif name == "DataObjectPackage" and element.getparent() is self.root:
            self.has_package = True

    def _end(self, v: _Values, name: str, element: etree._Element) -> None:
        parent = element.getparent()
        parent_name = v.name(parent) if parent is not None else None
        current = self.stack[-1] if self.stack else None
        if parent_name == "ArchiveUnit" and current is not None and parent is current.element:
            if name == "Content":
                current.content = _read_content(v, element)
                # canonical bytes: the same Content always gives the same bytes, whatever the
                # surrounding document declared, comments included
                current.content_xml = canonical_bytes(element)
                self._release(element)
            elif name == "Management":
                current.management = _read_management(v, element)
                self._release(element)
            elif name == "ArchiveUnitProfile":
                current.profile = v.token(element)
            elif name == "ArchiveUnitRefId":
                current.ref_target = v.token(element)
            elif name == "DataObjectReference":
                for ref_name, ref in v.children(element):
                    if ref_name == "DataObjectReferenceId":
                        current.object_refs.append(v.token(ref))
                    elif ref_name == "DataObjectGroupReferenceId":
                        current.group_refs.append(v.token(ref))
                self._release(element)
        if name == "ArchiveUnit" and current is not None and element is current.element:
            self._end_unit(current)
            self._release(element)
        elif name in ("BinaryDataObject", "PhysicalDataObject") and parent_name in (
            "DataObjectPackage",
            "DataObjectGroup",
        ):
            self._end_object(v, name, element, parent_name == "DataObjectGroup")
            self._release(element)
        elif name == "DataObjectGroup" and parent_name == "DataObjectPackage":
            if self.group_stack:
                self.group_stack.pop()
            self._release(element)
        elif name == "ManagementMetadata" and parent_name == "DataObjectPackage":
            self.management_metadata = _read_management_metadata(v, element)
            self._release(element)

    def _release(self, element: etree._Element) -> None:
        if not self.release:
            return
        element.clear()
        parent = element.getparent()
        if parent is not None:
            while element.getprevious() is not None:
                del parent[0]

    def _header(self, v: _Values, name: str, element: etree._Element) -> None:
        message = self.message
        assert message is not None
        if name == "Comment":
            message.comments.append(v.string(element))
        elif name == "Date":
            message.date = v.datetime(element)
        elif name == "GrantDate":
            message.grant_date = v.datetime(element)
        elif name == "CodeListVersions":
            for child_name, child in v.children(element):
                message.code_list_versions[child_name] = v.token(child)
        elif name in _ORGANIZATIONS:
            message.organizations[name] = v.identifier(element)
        elif name == "Operation":
            message.events.extend(
                _read_event(v, event)
                for event_name, event in v.children(element)
                if event_name == "Event"
            )
        elif name in ("DataObjectPackage", "Signature"):
            pass
        else:
            message.header.setdefault(name, []).append(v.token(element))

    def _end_unit(self, builder: _UnitBuilder) -> None:
        self.stack.pop()
        parent = builder.parent
        if builder.ref_target is not None and builder.content is None:
            self.references.append(
                ArchiveUnitReference(
                    id=builder.id,
                    target_id=builder.ref_target,
                    parent_id=parent.id if parent else None,
                )
            )
            if parent is not None:
                parent.children.append(builder.ref_target)
                parent.reference_ids.append(builder.id)
            return
        if parent is not None:
            parent.children.append(builder.id)
        else:
            self.roots.append(builder.id)

    def _end_object(self, v: _Values, name: str, element: etree._Element, in_group: bool) -> None:
        values = (_read_binary if name == "BinaryDataObject" else _read_physical)(v, element)
        declared = values.pop("_group_declared", None)
        reference = values.pop("_group_reference", None)
        object_id = values["id"]
        group_id: str | None
        if in_group and self.group_stack:
            group_id = self.group_stack[-1]
        elif declared:
            group_id = declared
            self.groups.setdefault(declared, DataObjectGroup(id=declared, declared=False))
        elif reference:
            group_id = reference
        else:
            group_id = None
        values["group_id"] = group_id
        if group_id is not None:
            self.object_group[object_id] = group_id
            group = self.groups.get(group_id)
            if group is not None:
                group.object_ids.append(object_id)
            else:
                # a reference to a group declared later (or never): attach when it appears
                self.pending_refs.append((object_id, group_id))
        (self.binaries if name == "BinaryDataObject" else self.physicals).append(values)

    # -- result

    def finish(self) -> _Message:
        message = self.message
        assert message is not None
        assert self.values is not None
        for object_id, group_id in self.pending_refs:
            group = self.groups.get(group_id)
            if group is not None:
                group.object_ids.append(object_id)
        units = []
        for builder in self.builders:
            if builder.ref_target is not None and builder.content is None:
                continue
            content = builder.content or {}
            unit_group = next((g for g in builder.group_refs if g), None)
            if unit_group is None:
                unit_group = next(
                    (self.object_group[o] for o in builder.object_refs if o in self.object_group),
                    None,
                )
            units.append(
                ArchiveUnit(
                    id=builder.id,
                    content_xml=builder.content_xml,
                    management=builder.management or Management(),
                    archive_unit_profile=builder.profile,
                    data_object_group_id=unit_group,
                    data_object_ids=list(builder.object_refs),
                    data_object_group_reference_ids=list(builder.group_refs),
                    child_unit_ids=builder.children,
                    reference_ids=builder.reference_ids,
                    parent_id=builder.parent.id if builder.parent else None,
                    **content,
                )
            )
        if self.has_package:
            message.package = DataObjectPackage(
                binary_data_objects=[BinaryDataObject(**b) for b in self.binaries],
                physical_data_objects=[PhysicalDataObject(**p) for p in self.physicals],
                data_object_groups=list(self.groups.values()),
                archive_units=units,
                root_unit_ids=self.roots,
                unit_references=self.references,
                management_metadata=self.management_metadata or ManagementMetadata(),
            )
        message.faults = self.values.faults
        return message


def _new_reader(expected: str | Iterable[str] | None, release: bool) -> _EventReader:
    return _EventReader(expected, release)


def read_message_bytes(
    data: bytes,
    expected: str | Iterable[str] | None,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> _Message:
    """Read any SEDA message from bytes with the streaming reader (internal)."""
    reader = _new_reader(expected, release=True)
    for event, element in iter_events(data, max_bytes=max_bytes, max_depth=max_depth):
        reader.feed(event, element)
    return reader.finish()


def read_message_tree(root: etree._Element, expected: str | Iterable[str] | None) -> _Message:
    """Read any SEDA message from an already parsed tree, leaving the tree intact (internal)."""
    reader = _new_reader(expected, release=False)
    for event, element in etree.iterwalk(root, events=("start", "end")):
        reader.feed(event, element)
    return reader.finish()


def _first(message: _Message, name: str) -> str | None:
    values = message.header.get(name)
    return values[0] if values else None


def _missing(message: _Message, name: str) -> None:
    message.faults.append(Fault(FaultCodes.MISSING_VALUE, f"{name} is missing or empty", "/*"))


def build_transfer(message: _Message) -> ArchiveTransfer:
    """Turn a read message into an :class:`ArchiveTransfer` (internal)."""
    if message.date is None:
        if not any(f.code == FaultCodes.BAD_VALUE and "Date" in f.message for f in message.faults):
            _missing(message, "Date")
    identifier = _first(message, "MessageIdentifier") or ""
    if not identifier:
        _missing(message, "MessageIdentifier")
    for organization in ("ArchivalAgency", "TransferringAgency"):
        if not message.organizations.get(organization):
            _missing(message, f"{organization}/Identifier")
    return ArchiveTransfer(
        version=message.root.version,
        message_identifier=identifier,
        date=message.date or _PLACEHOLDER_DATE,
        comments=message.comments,
        archival_agreement=_first(message, "ArchivalAgreement"),
        archival_agency_identifier=message.organizations.get("ArchivalAgency", ""),
        transferring_agency_identifier=message.organizations.get("TransferringAgency", ""),
        code_list_versions=message.code_list_versions,
        related_transfer_references=message.header.get("RelatedTransferReference", []),
        transfer_request_reply_identifier=_first(message, "TransferRequestReplyIdentifier"),
        package=message.package or DataObjectPackage(),
    )


def transfer_from_tree(root: etree._Element) -> tuple[ArchiveTransfer, list[Fault]]:
    """Read an ArchiveTransfer from a parsed tree; returns it with the reading faults."""
    message = read_message_tree(root, "ArchiveTransfer")
    transfer = build_transfer(message)
    return transfer, message.faults


def read_transfer(
    data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES, max_depth: int = DEFAULT_MAX_DEPTH
) -> ArchiveTransfer:
    """Read an ``ArchiveTransfer`` (SEDA 2.1, 2.2 or 2.3) from bytes into the model.

    Streams with bounded memory. Checks well-formedness and hardening, the root element and the
    version, and that values have their type (dates, sizes, booleans) and that the header's
    required values are present. It does **not** validate against the XSD nor check references,
    cycles or ids: use :func:`validate_transfer` for that.

    Raises :class:`MalformedXML` (and subclasses), :class:`UnsupportedVersion`,
    :class:`UnexpectedMessage` or :class:`StructureInvalid`, each with ``.faults``.
    """
    message = read_message_bytes(data, "ArchiveTransfer", max_bytes=max_bytes, max_depth=max_depth)
    transfer = build_transfer(message)
    if message.faults:
        raise StructureInvalid(faults=message.faults)
    return transfer


def read_transfer_reply(
    data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES, max_depth: int = DEFAULT_MAX_DEPTH
) -> ArchiveTransferReply:
    """Read an ``ArchiveTransferReply`` (ATR) into :class:`ArchiveTransferReply`.

    Lenient on purpose: replies written by other systems are often not schema-valid (Vitam's KO
    ATR has empty code list versions), so empty values are read as empty strings. Objects and
    units listed in the reply's package become :class:`ReplyObject`/:class:`ReplyUnit`.
    Raises :class:`SedaError` subclasses for unreadable XML or an unexpected root.
    """
    message = read_message_bytes(
        data, "ArchiveTransferReply", max_bytes=max_bytes, max_depth=max_depth
    )
    package = message.package or DataObjectPackage()
    objects = [
        ReplyObject(
            sip_id=o.id,
            group_sip_id=o.group_id,
            system_id=o.data_object_system_id,
            group_system_id=o.data_object_group_system_id,
            kind="binary",
            data_object_version=o.data_object_version,
            message_digest=o.message_digest,
            digest_algorithm=o.digest_algorithm,
            size=o.size,
        )
        for o in package.binary_data_objects
    ] + [
        ReplyObject(
            sip_id=o.id,
            group_sip_id=o.group_id,
            system_id=o.data_object_system_id,
            group_system_id=o.data_object_group_system_id,
            kind="physical",
            data_object_version=o.data_object_version,
        )
        for o in package.physical_data_objects
    ]
    units = [
        ReplyUnit(
            sip_id=u.id, system_id=u.system_ids[0] if u.system_ids else "", title=u.title or None
        )
        for u in package.archive_units
    ]
    return ArchiveTransferReply(
        version=message.root.version,
        message_identifier=_first(message, "MessageIdentifier") or "",
        date=message.date or _PLACEHOLDER_DATE,
        message_request_identifier=_first(message, "MessageRequestIdentifier") or "",
        reply_code=_first(message, "ReplyCode") or "",
        archival_agency_identifier=message.organizations.get("ArchivalAgency", ""),
        transferring_agency_identifier=message.organizations.get("TransferringAgency", ""),
        grant_date=message.grant_date,
        comments=message.comments,
        archival_agreement=_first(message, "ArchivalAgreement"),
        code_list_versions=message.code_list_versions,
        events=message.events,
        units=units,
        objects=objects,
    )
