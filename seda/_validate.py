"""Layered validation of an incoming ArchiveTransfer, and the tolerance list.

Layers, in order; each fault has a stable code:

1. well-formedness and hardening (:func:`~seda.safe_parse`): ``xml.*``;
2. root element and version: ``seda.unsupported_version``, ``seda.not_seda``,
   ``seda.unexpected_root``;
3. the official XSD, when a schema folder is given: ``xsd.invalid``;
4. reading into the model (typed values, required header values): ``seda.bad_value``,
   ``seda.missing_value``;
5. the rules the XSD cannot express (:mod:`seda._checks`).

Tolerances (all off by default) accept deviations common in SIPs made by Vitam-based tools: the
elements they name are reported as ``seda.tolerated`` warnings and left out of XSD validation.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from ._checks import check_transfer
from ._errors import Fault, FaultCodes, SedaError
from ._model import ArchiveTransfer
from ._parser import DEFAULT_MAX_BYTES, DEFAULT_MAX_DEPTH, safe_parse
from ._reader import check_root, transfer_from_tree
from ._versions import SedaVersion
from ._xsd import XsdValidator

__all__ = ["TOLERANCES", "Tolerance", "TransferReport", "validate_message", "validate_transfer"]

XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"


@dataclass(frozen=True)
class Tolerance:
    """A documented deviation that may be accepted with a warning instead of a refusal."""

    name: str
    description: str
    versions: frozenset[SedaVersion]
    xpath: str


_ALL = frozenset(SedaVersion)

#: The tolerance list, by name. Pass names in ``tolerances=`` to turn them on.
TOLERANCES: dict[str, Tolerance] = {
    t.name: t
    for t in (
        Tolerance(
            "hold-rule-in-2.1",
            "HoldRule (and HoldRuleCodeListVersion) in a SEDA 2.1 manifest: HoldRule only exists "
            "from 2.2, Vitam accepts it in 2.1 as a back-port. The rule is read and kept.",
            frozenset({SedaVersion.V2_1}),
            "//s:Management/s:HoldRule | //s:ManagementMetadata/s:HoldRule"
            " | //s:CodeListVersions/s:HoldRuleCodeListVersion",
        ),
        Tolerance(
            "seda-2.3-elements-in-2.2",
            "SEDA 2.3 elements in a 2.2 manifest (Vitam anticipation): SigningInformation and "
            "PersistentIdentifier in Content, PersistentIdentifier/DataObjectUse/DataObjectNumber "
            "on data objects. Kept verbatim in content_xml.",
            frozenset({SedaVersion.V2_2}),
            "//s:Content/s:SigningInformation | //s:Content/s:PersistentIdentifier"
            " | //s:BinaryDataObject/s:PersistentIdentifier"
            " | //s:PhysicalDataObject/s:PersistentIdentifier"
            " | //s:BinaryDataObject/s:DataObjectUse | //s:BinaryDataObject/s:DataObjectNumber"
            " | //s:PhysicalDataObject/s:DataObjectUse | //s:PhysicalDataObject/s:DataObjectNumber",
        ),
        Tolerance(
            "update-operation",
            "Vitam's UpdateOperation in a unit's Management (attach the unit to one already "
            "archived). Kept verbatim in Management.extensions.",
            _ALL,
            "//s:Management/s:UpdateOperation",
        ),
        Tolerance(
            "signing-information-extended",
            "SEDA 2.3 SigningInformation/Extended holding free fields without xsi:type (the "
            "official XSD types Extended with the abstract OpenType). Kept verbatim in "
            "content_xml.",
            frozenset({SedaVersion.V2_3}),
            "//s:SigningInformation/s:Extended[not(@xsi:type)]",
        ),
        Tolerance(
            "vitam-content-extensions",
            "Vitam descriptive elements missing from the official schema: AgentGroup and "
            "Arrangement in Content. Kept verbatim in content_xml.",
            _ALL,
            "//s:Content/s:AgentGroup | //s:Content/s:Arrangement",
        ),
    )
}


@dataclass(frozen=True)
class TransferReport:
    """The outcome of :func:`validate_transfer`.

    ``transfer`` is the model when the message could be read (even with errors: a KO reply still
    needs its MessageIdentifier), ``None`` when it could not. ``ok`` is true when there is no
    error; warnings never make a transfer fail.
    """

    transfer: ArchiveTransfer | None
    errors: list[Fault] = field(default_factory=list)
    warnings: list[Fault] = field(default_factory=list)
    version: SedaVersion | None = None

    @property
    def ok(self) -> bool:
        """True when no error was found."""
        return not self.errors


def _check_tolerance_names(tolerances: Iterable[str]) -> frozenset[str]:
    names = frozenset(tolerances)
    unknown = names - TOLERANCES.keys()
    if unknown:
        raise ValueError(
            f"unknown tolerance(s): {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(TOLERANCES))}"
        )
    return names


def _tolerated_elements(
    root: etree._Element, version: SedaVersion, names: frozenset[str]
) -> tuple[list[etree._Element], list[Fault]]:
    found: list[etree._Element] = []
    warnings: list[Fault] = []
    namespaces = {"s": version.namespace, "xsi": "http://www.w3.org/2001/XMLSchema-instance"}
    tree = root.getroottree()
    for name in sorted(names):
        tolerance = TOLERANCES[name]
        if version not in tolerance.versions:
            continue
        result = root.xpath(tolerance.xpath, namespaces=namespaces)
        assert isinstance(result, list)
        for element in result:
            if not isinstance(element, etree._Element):
                continue
            found.append(element)
            local = etree.QName(element).localname
            warnings.append(
                Fault(
                    FaultCodes.TOLERATED,
                    f"{local} accepted by tolerance {name!r} (not valid SEDA {version.value})",
                    f"{tree.getpath(element)} (line {element.sourceline})",
                )
            )
    return found, warnings


def _pruned_copy(root: etree._Element, elements: list[etree._Element]) -> etree._Element:
    """A copy of ``root`` without ``elements`` (they are located by path in the copy)."""
    tree = root.getroottree()
    paths = [tree.getpath(e) for e in elements]
    clone = copy.deepcopy(root)
    clone_tree = clone.getroottree()
    targets: list[etree._Element] = []
    for path in paths:
        result = clone_tree.xpath(path)
        if isinstance(result, list):
            targets.extend(e for e in result if isinstance(e, etree._Element))
    for target in targets:
        parent = target.getparent()
        if parent is not None:
            parent.remove(target)
    return clone


def validate_transfer(
    data: bytes,
    *,
    xsd_dir: Path | str | None = None,
    tolerances: Iterable[str] = frozenset(),
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> TransferReport:
    """Validate an incoming ArchiveTransfer in layers and read it; never raises for bad input.

    With ``xsd_dir`` (the folder holding ``2.1/``, ``2.2/``, ``2.3/``) the official XSD is
    applied; without it only the built-in checks run. ``tolerances`` names entries of
    :data:`TOLERANCES` to accept with a warning. Raises only for a programming or configuration
    error: an unknown tolerance name (``ValueError``) or an unusable schema folder
    (:class:`~seda.SchemaUnavailable`).
    """
    names = _check_tolerance_names(tolerances)
    validator = XsdValidator(xsd_dir) if xsd_dir is not None else None
    try:
        root = safe_parse(data, max_bytes=max_bytes, max_depth=max_depth)
        version = check_root(root, "ArchiveTransfer").version
    except SedaError as error:
        return TransferReport(None, list(error.faults), [], None)
    errors: list[Fault] = []
    tolerated, warnings = _tolerated_elements(root, version, names)
    if validator is not None:
        checked = _pruned_copy(root, tolerated) if tolerated else root
        errors.extend(validator.validate(checked, version))
    try:
        transfer, read_faults = transfer_from_tree(root)
    except SedaError as error:  # pragma: no cover - the root was checked above
        return TransferReport(None, errors + list(error.faults), warnings, version)
    errors.extend(read_faults)
    structure_errors, structure_warnings = check_transfer(transfer, names)
    errors.extend(structure_errors)
    warnings.extend(structure_warnings)
    return TransferReport(transfer, errors, warnings, version)


def validate_message(
    data: bytes, xsd_dir: Path | str, *, expected: str | Iterable[str] | None = None
) -> list[Fault]:
    """Parse any SEDA message and validate it against the official XSD of its version.

    Returns the faults (empty when valid); never raises for bad input. ``expected`` restricts
    the root element (e.g. ``"ArchiveTransferReply"``).
    """
    validator = XsdValidator(xsd_dir)
    try:
        root = safe_parse(data)
        version = check_root(root, expected).version
    except SedaError as error:
        return list(error.faults)
    return validator.validate(root, version)
