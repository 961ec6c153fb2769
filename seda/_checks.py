"""The rules the XSD cannot express, checked on the model.

References resolve, no cycle in the unit graph, ids unique, digests present, dates in order, rule
categories allowed by the version. Each problem is a :class:`~seda.Fault` with a stable code and
the id of the element concerned.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

from ._errors import Fault, FaultCodes
from ._model import ArchiveTransfer, ArchiveUnit, RuleCategory
from ._versions import SedaVersion

__all__ = ["check_transfer"]

_PARTIAL_DATE = re.compile(r"^(-?\d{4,})(?:-(\d{2}))?(?:-(\d{2}))?(?:T(\d{2}):(\d{2}):(\d{2}))?")


def _unit_where(unit_id: str) -> str:
    return f"ArchiveUnit[@id='{unit_id}']"


def _sortable(value: str | None) -> tuple[int, ...] | None:
    """A comparable tuple from a SEDA date (date, dateTime, gYear, gYearMonth...)."""
    if not value:
        return None
    match = _PARTIAL_DATE.match(value.strip())
    if not match:
        return None
    return tuple(int(part) for part in match.groups() if part is not None)


def _before(start: tuple[int, ...], end: tuple[int, ...]) -> bool:
    common = min(len(start), len(end))
    return start[:common] <= end[:common]


def _find_cycle(units: dict[str, ArchiveUnit]) -> list[str] | None:
    """An iterative depth-first search; returns one cycle (list of ids) or ``None``."""
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(units, white)
    for start in units:
        if color[start] != white:
            continue
        path: list[str] = [start]
        iterators = [iter(units[start].child_unit_ids)]
        color[start] = grey
        while iterators:
            child = next(iterators[-1], None)
            if child is None:
                iterators.pop()
                color[path.pop()] = black
                continue
            if child not in units:
                continue
            if color[child] == grey:
                return [*path[path.index(child) :], child]
            if color[child] == white:
                color[child] = grey
                path.append(child)
                iterators.append(iter(units[child].child_unit_ids))
    return None


def check_transfer(
    transfer: ArchiveTransfer, tolerances: Iterable[str] = ()
) -> tuple[list[Fault], list[Fault]]:
    """Check ``transfer`` against the rules the XSD cannot express; returns (errors, warnings)."""
    tolerated = set(tolerances)
    errors: list[Fault] = []
    warnings: list[Fault] = []
    package = transfer.package

    # Unique ids across units, unit pointers, objects and groups (all xsd:ID in the manifest).
    counts = Counter(
        [u.id for u in package.archive_units]
        + [r.id for r in package.unit_references]
        + [o.id for o in package.binary_data_objects]
        + [o.id for o in package.physical_data_objects]
        + [g.id for g in package.data_object_groups]
    )
    for identifier, count in counts.items():
        if count > 1:
            errors.append(
                Fault(
                    FaultCodes.DUPLICATE_ID,
                    f"id {identifier!r} is used {count} times",
                    f"@id='{identifier}'",
                )
            )

    units = {u.id: u for u in package.archive_units}
    groups = {g.id for g in package.data_object_groups}
    objects = {o.id for o in package.binary_data_objects} | {
        o.id for o in package.physical_data_objects
    }

    if not package.archive_units:
        warnings.append(
            Fault(
                FaultCodes.NO_ARCHIVE_UNIT,
                "the transfer has no archive unit",
                "DescriptiveMetadata",
            )
        )

    for reference in package.unit_references:
        where = _unit_where(reference.id)
        if not reference.target_id:
            errors.append(Fault(FaultCodes.EMPTY_REFERENCE, "empty ArchiveUnitRefId", where))
        elif reference.target_id not in units:
            errors.append(
                Fault(
                    FaultCodes.UNRESOLVED_UNIT_REF,
                    f"ArchiveUnitRefId {reference.target_id!r} names no archive unit",
                    where,
                )
            )

    for unit in package.archive_units:
        where = _unit_where(unit.id)
        if not unit.content_xml:
            errors.append(
                Fault(
                    FaultCodes.UNIT_WITHOUT_CONTENT,
                    "archive unit without Content (nor ArchiveUnitRefId)",
                    where,
                )
            )
        for group_id in unit.data_object_group_reference_ids:
            if not group_id:
                errors.append(
                    Fault(FaultCodes.EMPTY_REFERENCE, "empty DataObjectGroupReferenceId", where)
                )
            elif group_id not in groups:
                errors.append(
                    Fault(
                        FaultCodes.UNRESOLVED_GROUP_REF,
                        f"DataObjectGroupReferenceId {group_id!r} names no object group",
                        where,
                    )
                )
        for object_id in unit.data_object_ids:
            if not object_id:
                errors.append(
                    Fault(FaultCodes.EMPTY_REFERENCE, "empty DataObjectReferenceId", where)
                )
            elif object_id not in objects:
                errors.append(
                    Fault(
                        FaultCodes.UNRESOLVED_OBJECT_REF,
                        f"DataObjectReferenceId {object_id!r} names no data object",
                        where,
                    )
                )
        start, end = _sortable(unit.start_date), _sortable(unit.end_date)
        if start and end and not _before(start, end):
            errors.append(
                Fault(
                    FaultCodes.DATE_ORDER,
                    f"StartDate {unit.start_date} is after EndDate {unit.end_date}",
                    where,
                )
            )
        _check_rules(transfer.version, unit.management.rules, where, tolerated, errors)

    _check_rules(
        transfer.version,
        package.management_metadata.management.rules,
        "ManagementMetadata",
        tolerated,
        errors,
    )

    object_groups = [(o.id, o.group_id) for o in package.binary_data_objects] + [
        (o.id, o.group_id) for o in package.physical_data_objects
    ]
    for object_id, object_group in object_groups:
        if object_group is not None and object_group not in groups:
            errors.append(
                Fault(
                    FaultCodes.UNRESOLVED_GROUP_REF,
                    f"DataObjectGroupReferenceId {object_group!r} names no object group",
                    f"@id='{object_id}'",
                )
            )

    for binary in package.binary_data_objects:
        where = f"BinaryDataObject[@id='{binary.id}']"
        if binary.uri is None and not binary.has_attachment:
            continue
        if binary.message_digest is None:
            errors.append(Fault(FaultCodes.MISSING_DIGEST, "no MessageDigest", where))
        elif not binary.message_digest:
            errors.append(Fault(FaultCodes.EMPTY_DIGEST, "empty MessageDigest", where))
        elif not binary.digest_algorithm:
            errors.append(Fault(FaultCodes.EMPTY_DIGEST, "MessageDigest without algorithm", where))

    cycle = _find_cycle(units)
    if cycle:
        errors.append(
            Fault(
                FaultCodes.UNIT_CYCLE,
                "the archive unit graph has a cycle: " + " -> ".join(cycle),
                _unit_where(cycle[0]),
            )
        )
    return errors, warnings


def _check_rules(
    version: SedaVersion,
    rules: dict[str, RuleCategory],
    where: str,
    tolerated: set[str],
    errors: list[Fault],
) -> None:
    for name, category in rules.items():
        if (
            name == "HoldRule"
            and version == SedaVersion.V2_1
            and ("hold-rule-in-2.1" not in tolerated)
        ):
            errors.append(
                Fault(
                    FaultCodes.RULE_NOT_IN_VERSION,
                    "HoldRule does not exist in SEDA 2.1 (it was added in 2.2)",
                    where,
                )
            )
        for rule in category.rules:
            if rule.start_date and rule.hold_end_date and rule.hold_end_date < rule.start_date:
                errors.append(
                    Fault(
                        FaultCodes.DATE_ORDER,
                        f"{name} {rule.rule_id}: HoldEndDate {rule.hold_end_date} "
                        f"is before StartDate {rule.start_date}",
                        where,
                    )
                )
