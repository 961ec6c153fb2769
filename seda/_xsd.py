"""Validation against the official SEDA XSDs (one compiled schema per version, cached)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from lxml import etree

from ._errors import Fault, FaultCodes, SchemaUnavailable
from ._versions import SedaVersion

__all__ = ["BUNDLED_XSD_DIR", "MESSAGE_ROOTS", "XsdValidator"]

#: The official SEDA 2.1/2.2/2.3 schemas shipped inside this package (``2.1/``, ``2.2/``,
#: ``2.3/``; provenance, licence and the two local edits in ``xsd/NOTICE.md``). Shipped so that
#: an installed package validates against the official schemas with nothing else on the disk.
BUNDLED_XSD_DIR: Path = Path(__file__).resolve().parent / "xsd"

#: The 15 message root elements of SEDA 2.x. The XSDs also declare abstract global elements
#: (extension points) that ``XMLSchema.validate`` would accept as a root: we never do.
MESSAGE_ROOTS: frozenset[str] = frozenset(
    {
        "ArchiveTransfer",
        "ArchiveTransferReply",
        "ArchiveTransferRequest",
        "ArchiveTransferRequestReply",
        "ArchiveDeliveryRequest",
        "ArchiveDeliveryRequestReply",
        "ArchiveRestitutionRequest",
        "ArchiveRestitutionRequestReply",
        "ArchiveDestructionNotification",
        "ArchiveModificationNotification",
        "AuthorizationOriginatingAgencyRequest",
        "AuthorizationOriginatingAgencyRequestReply",
        "AuthorizationControlAuthorityRequest",
        "AuthorizationControlAuthorityRequestReply",
        "Acknowledgement",
    }
)

_CACHE: dict[tuple[Path, SedaVersion], etree.XMLSchema] = {}
_CACHE_LOCK = threading.Lock()
_MAX_ERRORS = 200


def compile_schema(path: Path) -> etree.XMLSchema:
    """Compile the schema file at ``path`` (local includes only, no network), or
    :class:`SchemaUnavailable`. For schemas outside the 2.x layout (SEDA 1.0)."""
    try:
        parser = etree.XMLParser(resolve_entities=False, no_network=True)
        return etree.XMLSchema(etree.parse(str(path), parser))
    except (etree.XMLSchemaParseError, etree.XMLSyntaxError, OSError) as error:
        raise SchemaUnavailable(
            faults=[Fault(FaultCodes.XSD_UNAVAILABLE, f"cannot load {path}: {error}")]
        ) from None


class XsdValidator:
    """Validates messages against the official XSDs found in ``xsd_dir``.

    ``xsd_dir`` holds one folder per version: ``2.1/seda-2.1-main.xsd``, ``2.2/...``,
    ``2.3/...`` (the layout of :data:`BUNDLED_XSD_DIR` and of ``shared/seda-xsd``). Schemas are
    compiled on first use and cached for the process (compiling takes a fraction of a second;
    validating is fast). Thread-safe.
    """

    def __init__(self, xsd_dir: Path | str) -> None:
        self.xsd_dir = Path(xsd_dir).resolve()
        if not self.xsd_dir.is_dir():
            raise SchemaUnavailable(
                faults=[Fault(FaultCodes.XSD_UNAVAILABLE, f"XSD folder not found: {self.xsd_dir}")]
            )

    def schema(self, version: SedaVersion | str) -> etree.XMLSchema:
        """The compiled schema of ``version`` (raises :class:`SchemaUnavailable`)."""
        version = SedaVersion(version)
        key = (self.xsd_dir, version)
        with _CACHE_LOCK:
            cached = _CACHE.get(key)
            if cached is not None:
                return cached
            path = self.xsd_dir / version.value / f"seda-{version.value}-main.xsd"
            if not path.is_file():
                raise SchemaUnavailable(
                    faults=[Fault(FaultCodes.XSD_UNAVAILABLE, f"schema not found: {path}")]
                )
            try:
                parser = etree.XMLParser(resolve_entities=False, no_network=True)
                schema = etree.XMLSchema(etree.parse(str(path), parser))
            except (etree.XMLSchemaParseError, etree.XMLSyntaxError, OSError) as error:
                raise SchemaUnavailable(
                    faults=[Fault(FaultCodes.XSD_UNAVAILABLE, f"cannot load {path}: {error}")]
                ) from None
            _CACHE[key] = schema
            return schema

    def validate(self, root: etree._Element, version: SedaVersion | str) -> list[Fault]:
        """Validate ``root`` (a message element) against the schema of ``version``.

        Returns the faults (empty when valid). The root must be one of the 15 SEDA message
        elements in the version's namespace; anything else is one ``seda.unexpected_root`` fault.
        """
        version = SedaVersion(version)
        qname = etree.QName(root)
        if qname.namespace != version.namespace or qname.localname not in MESSAGE_ROOTS:
            return [
                Fault(
                    FaultCodes.UNEXPECTED_ROOT,
                    f"{qname.text} is not a SEDA {version.value} message element",
                    "/*",
                )
            ]
        schema = self.schema(version)
        # XMLSchema objects are not safe to share between threads while validating.
        with _CACHE_LOCK:
            valid = schema.validate(root)
            log: Any = schema.error_log
            entries: list[Any] = [] if valid else list(log)
        prefix = "{" + version.namespace + "}"
        faults = []
        for entry in entries[:_MAX_ERRORS]:
            message = entry.message.replace(prefix, "")
            where = entry.path or None
            if entry.line:
                where = f"{where} (line {entry.line})" if where else f"line {entry.line}"
            faults.append(Fault(FaultCodes.XSD_INVALID, message, where))
        if len(entries) > _MAX_ERRORS:
            faults.append(
                Fault(
                    FaultCodes.XSD_INVALID,
                    f"{len(entries) - _MAX_ERRORS} more schema errors not listed",
                )
            )
        return faults
