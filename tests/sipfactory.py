"""Typed helpers that make SEDA SIPs for tests (our own data, with awkward names).

Writing XML here uses lxml's builder directly: this is test data, not product code; parsing is
still only done through ``seda.safe_parse``.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass, field
from datetime import date

from lxml import etree

NS = {v: f"fr:gouv:culture:archivesdefrance:seda:v{v}" for v in ("2.1", "2.2", "2.3")}


@dataclass
class FileSpec:
    """A file of the SIP and how the manifest declares it."""

    uri: str
    data: bytes
    algorithm: str = "SHA-512"
    digest: str | None = None  # None: the right one
    size: int | None = -1  # -1: the right one; None: not declared
    mime: str | None = "application/pdf"
    in_zip: bool = True
    declared: bool = True

    def digest_value(self) -> str:
        if self.digest is not None:
            return self.digest
        name = {"SHA-512": "sha512", "SHA-256": "sha256"}[self.algorithm]
        return hashlib.new(name, self.data).hexdigest()


@dataclass
class RuleSpec:
    category: str
    rule_id: str
    start: date | None = None
    final_action: str | None = None
    prevent_inheritance: bool = False
    ref_non_rule_ids: list[str] = field(default_factory=list)


@dataclass
class UnitSpec:
    id: str
    title: str
    files: list[int] = field(default_factory=list)  # indexes into SipSpec.files
    children: list[UnitSpec] = field(default_factory=list)
    refs: list[str] = field(default_factory=list)  # ArchiveUnitRefId children
    rules: list[RuleSpec] = field(default_factory=list)
    level: str = "Item"
    description: str | None = None
    identifiers: list[str] = field(default_factory=list)  # OriginatingAgencyArchiveUnitIdentifier
    keywords: list[str] = field(default_factory=list)
    start_date: str | None = None


@dataclass
class SipSpec:
    message_id: str = "MSG-0001"
    version: str = "2.2"
    producer: str = "URBANISME"
    transferring: str = "URBANISME"
    archival: str = "SAE-COMMUNE"
    files: list[FileSpec] = field(default_factory=list)
    units: list[UnitSpec] = field(default_factory=list)
    extra_entries: dict[str, bytes] = field(default_factory=dict)
    default_rules: list[RuleSpec] = field(default_factory=list)
    agreement: str | None = "CONV-2026-01"  # ArchivalAgreement (None: not written)
    profile: str | None = None  # ArchivalProfile (None: not written)


def simple_sip(
    message_id: str = "MSG-0001",
    *,
    version: str = "2.2",
    producer: str = "URBANISME",
    payload: bytes = b"%PDF-1.4\n% un arr\xc3\xaat\xc3\xa9 de voirie\n%%EOF\n",
    uri: str = "Content/Arrêtés 2024/arrêté n°1 (copie).pdf",
    rules: list[RuleSpec] | None = None,
) -> SipSpec:
    """One unit, one PDF with a name full of spaces, accents and parentheses."""
    return SipSpec(
        message_id=message_id,
        version=version,
        producer=producer,
        transferring=producer,
        files=[FileSpec(uri=uri, data=payload)],
        units=[
            UnitSpec(
                id="AU-root",
                title="Arrêtés de voirie 2024",
                level="File",
                rules=rules or [],
                children=[UnitSpec(id="AU-1", title="Arrêté n°1 — rue de la Paix", files=[0])],
            )
        ],
    )


def _el(
    parent: etree._Element, ns: str, tag: str, text: str | None = None, **attrs: str
) -> etree._Element:
    el = etree.SubElement(parent, f"{{{ns}}}{tag}", **attrs)
    if text is not None:
        el.text = text
    return el


def _rules(parent: etree._Element, ns: str, rules: list[RuleSpec]) -> None:
    order = [
        "StorageRule",
        "AppraisalRule",
        "AccessRule",
        "DisseminationRule",
        "ReuseRule",
        "ClassificationRule",
        "HoldRule",
    ]
    for category in order:
        mine = [r for r in rules if r.category == category]
        if not mine:
            continue
        block = _el(parent, ns, category)
        for r in mine:
            _el(block, ns, "Rule", r.rule_id)
            if r.start is not None:
                _el(block, ns, "StartDate", r.start.isoformat())
        if any(r.prevent_inheritance for r in mine):
            _el(block, ns, "PreventInheritance", "true")
        for rid in {x for r in mine for x in r.ref_non_rule_ids}:
            _el(block, ns, "RefNonRuleId", rid)
        final = next((r.final_action for r in mine if r.final_action), None)
        if final:
            _el(block, ns, "FinalAction", final)


def manifest(spec: SipSpec) -> bytes:
    """The ArchiveTransfer XML of ``spec``."""
    ns = NS[spec.version]
    root = etree.Element(f"{{{ns}}}ArchiveTransfer", nsmap={None: ns})
    _el(root, ns, "Comment", "SIP de test")
    _el(root, ns, "Date", "2026-11-29T10:00:00")
    _el(root, ns, "MessageIdentifier", spec.message_id)
    if spec.agreement is not None:
        _el(root, ns, "ArchivalAgreement", spec.agreement)
    clv = _el(root, ns, "CodeListVersions")
    _el(clv, ns, "ReplyCodeListVersion", "ReplyCodeListVersion0")
    _el(clv, ns, "MessageDigestAlgorithmCodeListVersion", "MessageDigestAlgorithmCodeListVersion0")
    _el(clv, ns, "FileFormatCodeListVersion", "FileFormatCodeListVersion0")
    pkg = _el(root, ns, "DataObjectPackage")
    for index, f in enumerate(spec.files):
        if not f.declared:
            continue
        group = _el(pkg, ns, "DataObjectGroup", id=f"GOT-{index}")
        bdo = _el(group, ns, "BinaryDataObject", id=f"BDO-{index}")
        _el(bdo, ns, "DataObjectVersion", "BinaryMaster_1")
        _el(bdo, ns, "Uri", f.uri)
        _el(bdo, ns, "MessageDigest", f.digest_value(), algorithm=f.algorithm)
        if f.size is not None:
            _el(bdo, ns, "Size", str(len(f.data) if f.size == -1 else f.size))
        if f.mime:
            fid = _el(bdo, ns, "FormatIdentification")
            _el(fid, ns, "MimeType", f.mime)
        info = _el(bdo, ns, "FileInfo")
        _el(info, ns, "Filename", f.uri.rsplit("/", 1)[-1])
    desc = _el(pkg, ns, "DescriptiveMetadata")

    def unit(parent: etree._Element, u: UnitSpec) -> None:
        el = _el(parent, ns, "ArchiveUnit", id=u.id)
        if u.rules:
            _rules(_el(el, ns, "Management"), ns, u.rules)
        content = _el(el, ns, "Content")
        _el(content, ns, "DescriptionLevel", u.level)
        _el(content, ns, "Title", u.title)
        for identifier in u.identifiers:
            _el(content, ns, "OriginatingAgencyArchiveUnitIdentifier", identifier)
        if u.description is not None:
            _el(content, ns, "Description", u.description)
        for keyword in u.keywords:
            _el(_el(content, ns, "Keyword"), ns, "KeywordContent", keyword)
        if u.start_date is not None:
            _el(content, ns, "StartDate", u.start_date)
        for child in u.children:
            unit(el, child)
        for ref in u.refs:
            wrapper = _el(el, ns, "ArchiveUnit", id=f"{u.id}-ref-{ref}")
            _el(wrapper, ns, "ArchiveUnitRefId", ref)
        for index in u.files:
            dor = _el(el, ns, "DataObjectReference")
            _el(dor, ns, "DataObjectGroupReferenceId", f"GOT-{index}")

    for u in spec.units:
        unit(desc, u)
    mm = _el(pkg, ns, "ManagementMetadata")
    if spec.profile is not None:
        _el(mm, ns, "ArchivalProfile", spec.profile)
    _el(mm, ns, "OriginatingAgencyIdentifier", spec.producer)
    if spec.default_rules:
        _rules(mm, ns, spec.default_rules)
    agency = _el(root, ns, "ArchivalAgency")
    _el(agency, ns, "Identifier", spec.archival)
    transferring = _el(root, ns, "TransferringAgency")
    _el(transferring, ns, "Identifier", spec.transferring)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))


def build_zip(
    spec: SipSpec, *, manifest_bytes: bytes | None = None, store_files: bool = False
) -> bytes:
    """The SIP zip of ``spec`` (manifest at the root, files at their Uri), deflated; with
    ``store_files`` the files are stored as they are, as ``sae deposit`` packs scans."""
    out = io.BytesIO()
    files_method = zipfile.ZIP_STORED if store_files else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(
            "manifest.xml", manifest_bytes if manifest_bytes is not None else manifest(spec)
        )
        for f in spec.files:
            if f.in_zip:
                zf.writestr(f.uri, f.data, compress_type=files_method)
        for name, data in spec.extra_entries.items():
            zf.writestr(name, data)
    return out.getvalue()
