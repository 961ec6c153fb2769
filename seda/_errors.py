"""Faults and the exception tree of :mod:`seda`.

A :class:`Fault` is one problem found in a message: a stable ``code`` (dotted, lower case, never
reworded once published), a human ``message`` and ``where`` (an XPath, a line, or an element id).
Exceptions carry a list of faults so a caller can answer with every problem at once (for example
one ``Event`` per fault in a KO ArchiveTransferReply).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "Fault",
    "FaultCodes",
    "ForbiddenXMLConstruct",
    "MalformedXML",
    "SchemaInvalid",
    "SchemaUnavailable",
    "SedaError",
    "StructureInvalid",
    "UnexpectedMessage",
    "UnsupportedVersion",
    "WriteError",
    "XMLLimitExceeded",
    "XMLTooDeep",
    "XMLTooLarge",
]


@dataclass(frozen=True, slots=True)
class Fault:
    """One problem found in a SEDA message.

    ``code`` is stable (see :class:`FaultCodes`), ``message`` is for people, ``where`` locates the
    problem (an XPath, ``line N``, or ``ArchiveUnit[@id='X']``) when it can be located.
    """

    code: str
    message: str
    where: str | None = None


class FaultCodes:
    """The stable fault codes produced by :mod:`seda` (a namespace of string constants)."""

    # Layer 1: XML well-formedness and hardening.
    XML_EMPTY = "xml.empty"
    XML_MALFORMED = "xml.malformed"
    XML_TOO_LARGE = "xml.too_large"
    XML_TOO_DEEP = "xml.too_deep"
    XML_DTD_FORBIDDEN = "xml.dtd_forbidden"
    XML_ENTITY_FORBIDDEN = "xml.entity_forbidden"
    XML_LIMIT_EXCEEDED = "xml.limit_exceeded"
    # Layer 2: which message, which version.
    NOT_SEDA = "seda.not_seda"
    UNSUPPORTED_VERSION = "seda.unsupported_version"
    UNEXPECTED_ROOT = "seda.unexpected_root"
    # Layer 3: the official XSD.
    XSD_INVALID = "xsd.invalid"
    XSD_UNAVAILABLE = "xsd.unavailable"
    # Layer 4: rules the XSD cannot express.
    BAD_VALUE = "seda.bad_value"
    MISSING_VALUE = "seda.missing_value"
    DUPLICATE_ID = "seda.duplicate_id"
    EMPTY_REFERENCE = "seda.empty_reference"
    UNRESOLVED_UNIT_REF = "seda.unresolved_unit_reference"
    UNRESOLVED_OBJECT_REF = "seda.unresolved_object_reference"
    UNRESOLVED_GROUP_REF = "seda.unresolved_group_reference"
    UNIT_CYCLE = "seda.unit_cycle"
    UNIT_WITHOUT_CONTENT = "seda.unit_without_content"
    EMPTY_DIGEST = "seda.empty_digest"
    MISSING_DIGEST = "seda.missing_digest"
    DATE_ORDER = "seda.date_order"
    RULE_NOT_IN_VERSION = "seda.rule_not_in_version"
    NO_ARCHIVE_UNIT = "seda.no_archive_unit"
    # Warnings issued when a tolerance accepts a deviation.
    TOLERATED = "seda.tolerated"
    # Writing.
    WRITE_INVALID = "seda.write_invalid"


class SedaError(Exception):
    """Base of every error raised by :mod:`seda`; ``.faults`` lists what went wrong."""

    default_code = "seda.error"

    def __init__(
        self,
        message: str | None = None,
        *,
        faults: Iterable[Fault] | None = None,
        where: str | None = None,
    ) -> None:
        fault_list = list(faults or [])
        if not fault_list:
            fault_list = [Fault(self.default_code, message or self.default_code, where)]
        self.faults: list[Fault] = fault_list
        super().__init__(message or fault_list[0].message)

    @property
    def code(self) -> str:
        """The code of the first fault (the one that stopped processing)."""
        return self.faults[0].code


class MalformedXML(SedaError):
    """The bytes are not acceptable XML (not well-formed, empty, or refused by hardening)."""

    default_code = FaultCodes.XML_MALFORMED


class XMLTooLarge(MalformedXML):
    """The document is larger than ``max_bytes``."""

    default_code = FaultCodes.XML_TOO_LARGE


class XMLTooDeep(MalformedXML):
    """Elements are nested deeper than ``max_depth``."""

    default_code = FaultCodes.XML_TOO_DEEP


class ForbiddenXMLConstruct(MalformedXML):
    """A DTD, an entity declaration or an entity expansion: never accepted."""

    default_code = FaultCodes.XML_DTD_FORBIDDEN


class XMLLimitExceeded(MalformedXML):
    """A parser resource limit was hit (a huge text node or attribute, for example)."""

    default_code = FaultCodes.XML_LIMIT_EXCEEDED


class UnsupportedVersion(SedaError):
    """The root namespace is not SEDA 2.1, 2.2 or 2.3 (e.g. ``seda:v9.99``)."""

    default_code = FaultCodes.UNSUPPORTED_VERSION


class UnexpectedMessage(SedaError):
    """The root element is not the message expected (e.g. an ATR where a transfer was expected)."""

    default_code = FaultCodes.UNEXPECTED_ROOT


class SchemaInvalid(SedaError):
    """The message does not validate against the official XSD."""

    default_code = FaultCodes.XSD_INVALID


class SchemaUnavailable(SedaError):
    """The XSD folder is missing or a schema cannot be compiled (a configuration problem)."""

    default_code = FaultCodes.XSD_UNAVAILABLE


class StructureInvalid(SedaError):
    """The message breaks a rule the XSD cannot express (references, cycles, ids, dates...)."""

    default_code = "seda.structure_invalid"


class WriteError(SedaError):
    """A model cannot be written as a valid message (a required value is missing, for example)."""

    default_code = FaultCodes.WRITE_INVALID
