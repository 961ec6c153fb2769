"""Hypothesis strategies: valid-by-construction SEDA models, per version.

The generated models follow the reader's normal form (document order of units and objects,
``data_object_group_id`` resolved as the reader resolves it, no empty optional tokens), so that
``read(write(model)) == model`` is the property to test.
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime
from typing import Any

from hypothesis import strategies as st

import seda
from seda._writer import CODE_LIST_ORDER

XML_TEXT = st.characters(blacklist_categories=("Cs", "Cc", "Cn"), blacklist_characters="\r")
TEXT = st.text(XML_TEXT, max_size=30) | st.sampled_from(["Délibération n°1", "a\nb", " x "])
TOKEN = st.from_regex(
    r"[A-Za-z0-9À-ÿ][A-Za-z0-9À-ÿ_.:/-]{0,12}( [A-Za-z0-9]{1,5})?", fullmatch=True
)
DATES = st.dates(min_value=date(1800, 1, 1), max_value=date(2199, 12, 31))
NAIVE_OR_UTC: st.SearchStrategy[Any] = st.none() | st.just(UTC)
DATETIMES = st.datetimes(
    min_value=datetime(1950, 1, 1), max_value=datetime(2100, 1, 1), timezones=NAIVE_OR_UTC
)
SEDA_DATE = (
    DATES.map(date.isoformat)
    | DATETIMES.map(lambda d: d.replace(tzinfo=None, microsecond=0).isoformat())
    | st.integers(1000, 2100).map(str)
)
LEVELS = st.sampled_from(
    [
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
    ]
)
KEYWORD_TYPES = st.sampled_from(
    [
        "corpname",
        "famname",
        "geogname",
        "name",
        "occupation",
        "persname",
        "subject",
        "genreform",
        "function",
    ]
)
LANGUAGES = st.sampled_from(["fr", "en", "de-CH", "oc", "br"])
HEX = st.binary(min_size=16, max_size=64).map(bytes.hex)


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


def small_lists(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    return st.lists(strategy, max_size=2)


@st.composite
def rule_categories(draw: st.DrawFn, name: str) -> seda.RuleCategory:
    is_hold = name == "HoldRule"
    rules = []
    for _ in range(draw(st.integers(0, 2))):
        extra: dict[str, Any] = {}
        if is_hold:
            extra = {
                "hold_end_date": draw(optional(DATES)),
                "hold_owner": draw(optional(TOKEN)),
                "hold_reassessing_date": draw(optional(DATES)),
                "hold_reason": draw(optional(TOKEN)),
                "prevent_rearrangement": draw(optional(st.booleans())),
            }
        rules.append(seda.RuleRef(rule_id=draw(TOKEN), start_date=draw(optional(DATES)), **extra))
    blocking = draw(st.sampled_from(["none", "prevent", "refs"]))
    values: dict[str, Any] = {
        "prevent_inheritance": blocking == "prevent",
        "ref_non_rule_ids": draw(st.lists(TOKEN, min_size=1, max_size=2))
        if blocking == "refs"
        else [],
    }
    if name == "StorageRule":
        values["final_action"] = draw(st.sampled_from(["RestrictAccess", "Transfer", "Copy"]))
    elif name == "AppraisalRule":
        values["final_action"] = draw(st.sampled_from(["Keep", "Destroy"]))
    elif name == "ClassificationRule":
        values.update(
            classification_audience=draw(optional(TOKEN)),
            classification_level=draw(TOKEN),
            classification_owner=draw(TOKEN),
            classification_reassessing_date=draw(optional(DATES)),
            need_reassessing_authorization=draw(optional(st.booleans())),
        )
    return seda.RuleCategory(category=name, rules=rules, **values)


@st.composite
def managements(draw: st.DrawFn, version: seda.SedaVersion) -> seda.Management:
    names = [n for n in seda.RULE_CATEGORIES if n != "HoldRule" or version != "2.1"]
    chosen = draw(st.lists(st.sampled_from(names), unique=True, max_size=3))
    rules = {name: draw(rule_categories(name)) for name in seda.RULE_CATEGORIES if name in chosen}
    return seda.Management(rules=rules, need_authorization=draw(optional(st.booleans())))


@st.composite
def unit_fields(draw: st.DrawFn, version: seda.SedaVersion) -> dict[str, Any]:
    return {
        "title": draw(TEXT),
        "description": draw(optional(TEXT)),
        "description_level": draw(optional(LEVELS)),
        "start_date": draw(optional(SEDA_DATE)),
        "end_date": draw(optional(SEDA_DATE)),
        "created_date": draw(optional(SEDA_DATE)),
        "sent_date": draw(optional(SEDA_DATE)),
        "date_litteral": draw(optional(TOKEN)) if version != "2.1" else None,
        "originating_agency_identifier": draw(optional(TOKEN)),
        "submission_agency_identifier": draw(optional(TOKEN)),
        "archive_unit_profile": draw(optional(TOKEN)),
        "file_plan_positions": draw(small_lists(TOKEN)),
        "system_ids": draw(small_lists(TOKEN)),
        "originating_system_ids": draw(small_lists(TOKEN)),
        "archival_agency_archive_unit_identifiers": draw(small_lists(TOKEN)),
        "custodial_history": draw(small_lists(TEXT)),
        "type": draw(optional(TEXT)),
        "languages": draw(small_lists(LANGUAGES)),
        "description_language": draw(optional(LANGUAGES)),
        "status": draw(optional(TOKEN)),
        "version": draw(optional(TEXT)),
        "tags": draw(small_lists(TOKEN)),
        "keywords": draw(
            small_lists(
                st.builds(
                    seda.Keyword,
                    content=TEXT,
                    reference=optional(TOKEN),
                    type=optional(KEYWORD_TYPES),
                )
            )
        ),
        "source": draw(optional(TEXT)),
        "management": draw(managements(version)),
    }


@st.composite
def transfers(draw: st.DrawFn, version: seda.SedaVersion) -> seda.ArchiveTransfer:
    prefix = draw(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,4}", fullmatch=True))
    counter = itertools.count()

    def new_id(kind: str) -> str:
        return f"{prefix}{kind}{next(counter)}"

    # -- objects and groups, in the order the writer emits them
    binaries: list[seda.BinaryDataObject] = []
    physicals: list[seda.PhysicalDataObject] = []
    groups: list[seda.DataObjectGroup] = []
    group_of: dict[str, str] = {}

    def new_object(group_id: str | None) -> str:
        object_id = new_id("O")
        common: dict[str, Any] = {
            "id": object_id,
            "group_id": group_id,
            "data_object_version": draw(
                optional(st.sampled_from(["BinaryMaster_1", "Dissemination_1", "PhysicalMaster_1"]))
            ),
            "data_object_system_id": draw(optional(TOKEN)),
            "data_object_profile": draw(optional(TOKEN)) if version != "2.1" else None,
            "data_object_use": draw(optional(TOKEN)) if version == "2.3" else None,
            "data_object_number": draw(optional(st.integers(0, 99))) if version == "2.3" else None,
        }
        if draw(st.booleans()):
            uri = draw(optional(TOKEN.map(lambda t: "Content/" + t.replace(" ", "_"))))
            digest = draw(HEX) if uri else draw(optional(HEX))
            binaries.append(
                seda.BinaryDataObject(
                    **common,
                    uri=uri,
                    message_digest=digest,
                    digest_algorithm=draw(st.sampled_from(["SHA-512", "SHA-256", "MD5"]))
                    if digest
                    else None,
                    size=draw(optional(st.integers(1, 10**12))),
                    format=draw(
                        optional(
                            st.builds(
                                seda.FormatIdentification,
                                format_litteral=optional(TEXT),
                                mime_type=optional(
                                    st.sampled_from(["application/pdf", "text/plain"])
                                ),
                                format_id=optional(st.sampled_from(["fmt/354", "x-fmt/111"])),
                                encoding=optional(st.just("UTF-8")),
                            )
                        )
                    ),
                    file_info=draw(
                        optional(
                            st.builds(
                                seda.FileInfo,
                                filename=TEXT,
                                last_modified=optional(
                                    DATETIMES.map(lambda d: d.replace(microsecond=0).isoformat())
                                ),
                                creating_os=optional(TEXT),
                            )
                        )
                    ),
                )
            )
        else:
            physicals.append(seda.PhysicalDataObject(**common, physical_id=draw(optional(TOKEN))))
        if group_id:
            group_of[object_id] = group_id
        return object_id

    for _ in range(draw(st.integers(0, 3))):
        declared = draw(st.booleans())
        group_id = new_id("G")
        members = [new_object(group_id) for _ in range(draw(st.integers(0 if declared else 1, 3)))]
        groups.append(seda.DataObjectGroup(id=group_id, object_ids=members, declared=declared))
    loose = [new_object(None) for _ in range(draw(st.integers(0, 2)))]
    object_ids = [o.id for o in binaries] + [o.id for o in physicals]
    group_ids = [g.id for g in groups]
    del loose

    # -- the unit forest: nodes first, then references between top-level trees
    nodes: list[dict[str, Any]] = []

    def new_unit(parent: dict[str, Any] | None, depth: int) -> dict[str, Any]:
        node: dict[str, Any] = {
            "id": new_id("U"),
            "parent": parent,
            "children": [],
            "fields": draw(unit_fields(version)),
            "object_refs": draw(st.lists(st.sampled_from(object_ids), max_size=2))
            if object_ids
            else [],
            "group_refs": draw(st.lists(st.sampled_from(group_ids), max_size=2))
            if group_ids
            else [],
        }
        nodes.append(node)
        if depth < 3:
            for _ in range(draw(st.integers(0, 2))):
                node["children"].append(("unit", new_unit(node, depth + 1)))
        return node

    tops = [new_unit(None, 0) for _ in range(draw(st.integers(1, 3)))]
    for node in nodes:
        others = [t for t in tops if t is not node and t is not _top_of(node)]
        wants_reference: bool = draw(st.booleans())
        if others and wants_reference:
            target = draw(st.sampled_from(others))
            node["children"].append(("ref", new_id("R"), target["id"]))
        node["children"] = draw(st.permutations(node["children"]))

    units: list[seda.ArchiveUnit] = []
    references: list[seda.ArchiveUnitReference] = []

    def emit(node: dict[str, Any]) -> None:
        position = len(units)
        units.append(seda.ArchiveUnit(id=node["id"]))  # placeholder: document order
        child_ids, reference_ids = [], []
        for child in node["children"]:
            if child[0] == "unit":
                child_ids.append(child[1]["id"])
                emit(child[1])
            else:
                child_ids.append(child[2])
                reference_ids.append(child[1])
                references.append(
                    seda.ArchiveUnitReference(id=child[1], target_id=child[2], parent_id=node["id"])
                )
        group_id = next(iter(node["group_refs"]), None) or next(
            (group_of[o] for o in node["object_refs"] if o in group_of), None
        )
        units[position] = seda.ArchiveUnit(
            id=node["id"],
            **node["fields"],
            child_unit_ids=child_ids,
            reference_ids=reference_ids,
            data_object_ids=node["object_refs"],
            data_object_group_reference_ids=node["group_refs"],
            data_object_group_id=group_id,
            parent_id=node["parent"]["id"] if node["parent"] else None,
        )

    for top in tops:
        emit(top)

    code_lists = [n for n in CODE_LIST_ORDER if version != "2.1" or n != "HoldRuleCodeListVersion"]
    chosen_lists = draw(st.lists(st.sampled_from(code_lists), unique=True, max_size=4))
    package = seda.DataObjectPackage(
        binary_data_objects=binaries,
        physical_data_objects=physicals,
        data_object_groups=groups,
        archive_units=units,
        root_unit_ids=[t["id"] for t in tops],
        unit_references=references,
        management_metadata=seda.ManagementMetadata(
            archival_profile=draw(optional(TOKEN)),
            service_level=draw(optional(TOKEN)),
            acquisition_information=draw(optional(TOKEN)),
            legal_status=draw(
                optional(
                    st.sampled_from(
                        ["Public Archive", "Private Archive", "Public and Private Archive"]
                    )
                )
            ),
            originating_agency_identifier=draw(optional(TOKEN)),
            submission_agency_identifier=draw(optional(TOKEN)),
            management=draw(managements(version)),
        ),
    )
    return seda.ArchiveTransfer(
        version=version,
        message_identifier=draw(TOKEN),
        date=draw(DATETIMES),
        comments=draw(small_lists(TEXT)),
        archival_agreement=draw(optional(TOKEN)),
        archival_agency_identifier=draw(TOKEN),
        transferring_agency_identifier=draw(TOKEN),
        code_list_versions={n: draw(TOKEN) for n in code_lists if n in chosen_lists},
        related_transfer_references=draw(small_lists(TOKEN)),
        transfer_request_reply_identifier=draw(optional(TOKEN)),
        package=package,
    )


def _top_of(node: dict[str, Any]) -> dict[str, Any]:
    while node["parent"] is not None:
        node = node["parent"]
    return node
