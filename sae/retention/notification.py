"""The SEDA ArchiveDestructionNotification sent after a destruction (one per producer).

A pure function, model in, bytes out. It lives here until ``seda`` offers
``write_archive_destruction_notification``; the output is validated against the official XSD
in the tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lxml import etree

NAMESPACES = {v: f"fr:gouv:culture:archivesdefrance:seda:v{v}" for v in ("2.1", "2.2", "2.3")}


@dataclass(frozen=True)
class DestructionNotification:
    """What the notification says: which units went, under which authorisation."""

    message_identifier: str
    date: datetime
    authorization_reply_identifier: str
    unit_identifiers: Sequence[str]
    archival_agency: str
    originating_agency: str
    comments: Sequence[str] = ()
    version: str = "2.2"


def write_destruction_notification(note: DestructionNotification) -> bytes:
    """The XML of ``note`` (elements in the order of ``ArchiveDestructionNotificationType``)."""
    if not note.unit_identifiers:
        raise ValueError("a destruction notification names at least one unit")
    ns = NAMESPACES[note.version]

    def el(parent: etree._Element, tag: str, text: str | None = None) -> etree._Element:
        element = etree.SubElement(parent, f"{{{ns}}}{tag}")
        if text is not None:
            element.text = text
        return element

    nsmap: Any = {None: ns}
    root = etree.Element(f"{{{ns}}}ArchiveDestructionNotification", nsmap=nsmap)
    for comment in note.comments:
        el(root, "Comment", comment)
    el(root, "Date", note.date.replace(microsecond=0).isoformat())
    el(root, "MessageIdentifier", note.message_identifier)
    codes = el(root, "CodeListVersions")
    el(codes, "ReplyCodeListVersion", "ReplyCodeListVersion0")
    el(codes, "MessageDigestAlgorithmCodeListVersion", "MessageDigestAlgorithmCodeListVersion0")
    el(codes, "FileFormatCodeListVersion", "FileFormatCodeListVersion0")
    el(root, "AuthorizationRequestReplyIdentifier", note.authorization_reply_identifier)
    for unit in note.unit_identifiers:
        el(root, "UnitIdentifier", unit)
    el(el(root, "ArchivalAgency"), "Identifier", note.archival_agency)
    el(el(root, "OriginatingAgency"), "Identifier", note.originating_agency)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))
