"""From a checked sheet to SEDA SIPs: plan (check every row, hash every file), then write zips.

Every problem of the sheet is reported at once, in French, with its line number, before anything
is sent: a clerk fixes the sheet once, not forty times.
"""

from __future__ import annotations

import hashlib
import os
import unicodedata
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import seda
from sae.deposit.sheet import Row
from sae.ingest import formats

CHUNK = 1024 * 1024
# Start events the tool can derive from the document's date; others need a start_date column.
DERIVABLE_START = {"document_date", "sitting", "notification", "list_date", "election"}
END_OF_YEAR_START = {"end_of_year", "census_year"}


@dataclass(frozen=True)
class RecordType:
    """What a ``record_type`` cell resolves to: the appraisal rule and its schedule data."""

    rule_id: str
    label: str
    final_action: str
    start_event: str | None = None
    access_rule: str | None = None


def _fold(text: str) -> str:
    """Case- and accent-insensitive comparison form of a label."""
    decomposed = unicodedata.normalize("NFKD", text)
    return " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).lower().split())


class RuleResolver:
    """Resolves record types and rule ids against the archive's referential.

    ``rules`` are the referential's rules as mappings (``id``, ``type``, ``value``, ``meta``);
    ``schedule`` (optional) the shipped schedule, used to find the rule of a record type label
    that the referential knows by id only.
    """

    def __init__(
        self,
        rules: Iterable[Mapping[str, Any]],
        schedule: Iterable[Mapping[str, Any]] = (),
    ) -> None:
        self.rules = {str(r["id"]): r for r in rules}
        self._by_label: dict[str, str] = {}
        for source in (schedule, self.rules.values()):
            for rule in source:
                if rule.get("type") != "AppraisalRule":
                    continue
                meta = rule.get("meta") or {}
                for label in (meta.get("record_type"), rule.get("value")):
                    if label:
                        self._by_label.setdefault(_fold(str(label)), str(rule["id"]))
        self._schedule = {str(r["id"]): r for r in schedule}

    def resolve(self, value: str) -> tuple[RecordType | None, str | None]:
        """The record type, or None and a French explanation."""
        rule_id = value if value in self.rules or value in self._schedule else None
        rule_id = rule_id or self._by_label.get(_fold(value))
        if rule_id is None:
            return None, f"type de document inconnu : « {value} »"
        rule = self.rules.get(rule_id)
        if rule is None:
            return None, (
                f"« {value} » correspond à la règle {rule_id}, absente du référentiel du SAE "
                "(faites importer le tableau de gestion : sae rules import)"
            )
        if rule.get("type") != "AppraisalRule":
            return None, f"« {value} » est une règle {rule.get('type')}, pas une règle de DUA"
        meta = dict(self._schedule.get(rule_id, {}).get("meta") or {})
        meta.update(rule.get("meta") or {})
        final = str(meta.get("final_action") or "Keep")
        # SEDA knows Keep and Destroy; sampling ("tri") keeps some units when the disposal list
        # is built, so the units themselves are declared Destroy.
        final = "Destroy" if final in ("Destroy", "Sample") else "Keep"
        return (
            RecordType(
                rule_id=rule_id,
                label=str(rule.get("value") or rule_id),
                final_action=final,
                start_event=meta.get("start_event"),
                access_rule=meta.get("access_rule"),
            ),
            None,
        )


@dataclass(frozen=True)
class DerivedFile:
    """Another version of a row's document, in the same object group as the file itself (the
    master): the searchable PDF/A of a scan made by ``sae deposit --ocr``."""

    path: Path
    uri: str
    size: int
    sha512: str
    mime_type: str
    version: str  # SEDA DataObjectVersion, e.g. Dissemination_1


@dataclass
class PlannedFile:
    """A checked row: its file, digests and the unit it becomes."""

    row: Row
    path: Path
    uri: str
    size: int
    sha512: str
    mime_type: str | None
    title: str
    doc_date: date
    record: RecordType
    start_date: date | None
    end_date: date | None
    description: str | None
    keywords: list[str]
    identifier: str | None
    access_rule: str | None
    access_start: date | None
    #: Versions made from the file before the SIP is built (``sae.deposit.ocr``).
    derived: list[DerivedFile] = field(default_factory=list)


@dataclass
class Plan:
    items: list[PlannedFile] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _date(row: Row, column: str, problems: list[str]) -> date | None:
    text = row.get(column)
    if not text:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        problems.append(f"ligne {row.line} : {column} « {text} » n'est pas une date (AAAA-MM-JJ)")
        return None


def _file_digest(path: Path) -> tuple[str, int, bytes]:
    digest = hashlib.sha512()
    size = 0
    head = b""
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            if not head:
                head = chunk[:8192]
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size, head


def plan(
    directory: Path,
    rows: Sequence[Row],
    resolver: RuleResolver,
    *,
    progress: Callable[[int], None] | None = None,
) -> Plan:
    """Check every row and hash every file; nothing is sent while ``problems`` is not empty."""
    result = Plan()
    root = directory.resolve()
    seen: dict[str, int] = {}
    for row in rows:
        problems: list[str] = []
        name = row.get("file")
        title = row.get("title")
        if not title:
            problems.append(f"ligne {row.line} : le titre est vide")
        doc_date = _date(row, "date", problems)
        if doc_date is None and row.get("date") == "":
            problems.append(f"ligne {row.line} : la date est vide")
        record, why = resolver.resolve(row.get("record_type"))
        if record is None:
            problems.append(f"ligne {row.line} : {why}")
        start = _date(row, "start_date", problems)
        end = _date(row, "end_date", problems)
        access_start = _date(row, "access_start_date", problems)
        final = row.get("final_action")
        if final and final not in ("Keep", "Destroy"):
            problems.append(f"ligne {row.line} : final_action « {final} » : Keep ou Destroy")
        path = (root / name).resolve() if name else None
        if not name:
            problems.append(f"ligne {row.line} : la colonne file est vide")
        elif path is None or not path.is_relative_to(root):
            problems.append(f"ligne {row.line} : « {name} » est en dehors du dossier déposé")
        elif not path.is_file():
            problems.append(f"ligne {row.line} : fichier introuvable : {name}")
        elif name in seen:
            problems.append(f"ligne {row.line} : « {name} » figure déjà ligne {seen[name]}")
        if name:
            seen.setdefault(name, row.line)
        if problems or record is None or doc_date is None or path is None:
            result.problems.extend(problems)
            continue
        if final:
            record = RecordType(
                record.rule_id, record.label, final, record.start_event, record.access_rule
            )
        if start is None:
            if record.start_event in END_OF_YEAR_START:
                start = date(doc_date.year, 12, 31)
            elif record.start_event in (None, *DERIVABLE_START):
                start = doc_date
            else:
                result.warnings.append(
                    f"ligne {row.line} : la DUA court à partir de « {record.start_event} » : "
                    "sans colonne start_date, aucune échéance n'est calculée (jamais éliminable)"
                )
        sha512, size, head = _file_digest(path)
        rel = PurePosixPath(path.relative_to(root).as_posix())
        result.items.append(
            PlannedFile(
                row=row,
                path=path,
                uri=f"Content/{rel}",
                size=size,
                sha512=sha512,
                mime_type=formats.identify(head),
                title=title,
                doc_date=doc_date,
                record=record,
                start_date=start,
                end_date=end,
                description=row.get("description") or None,
                keywords=[k.strip() for k in row.get("keywords").split(";") if k.strip()],
                identifier=row.get("identifier") or None,
                access_rule=row.get("access_rule") or record.access_rule,
                access_start=access_start or doc_date,
            )
        )
        if progress is not None:
            progress(1)
    if not rows:
        result.problems.append("le tableur ne contient aucune ligne")
    return result


def batches(
    items: Sequence[PlannedFile], max_files: int, max_bytes: int
) -> Iterator[list[PlannedFile]]:
    """Split the plan into SIPs of at most ``max_files`` files and ``max_bytes`` bytes."""
    batch: list[PlannedFile] = []
    size = 0
    for item in items:
        if batch and (len(batch) >= max_files or size + item.size > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += item.size + sum(extra.size for extra in item.derived)
    if batch:
        yield batch


def manifest(
    batch: Sequence[PlannedFile],
    *,
    producer: str,
    archival_agency: str,
    message_identifier: str,
    version: str = "2.2",
    known_rules: Mapping[str, Any] | None = None,
) -> bytes:
    """The ArchiveTransfer of one batch: one Item unit and one object per row."""
    units = []
    groups = []
    objects = []
    for index, item in enumerate(batch, start=1):
        rules: dict[str, seda.RuleCategory] = {
            "AppraisalRule": seda.RuleCategory(
                category="AppraisalRule",
                rules=[seda.RuleRef(rule_id=item.record.rule_id, start_date=item.start_date)],
                final_action=item.record.final_action,
            )
        }
        if item.access_rule and (known_rules is None or item.access_rule in known_rules):
            rules["AccessRule"] = seda.RuleCategory(
                category="AccessRule",
                rules=[seda.RuleRef(rule_id=item.access_rule, start_date=item.access_start)],
            )
        group_id, object_id, unit_id = f"GOT-{index}", f"BDO-{index}", f"AU-{index}"
        objects.append(
            seda.BinaryDataObject(
                id=object_id,
                group_id=group_id,
                uri=item.uri,
                message_digest=item.sha512,
                digest_algorithm="SHA-512",
                size=item.size,
                format=seda.FormatIdentification(mime_type=item.mime_type)
                if item.mime_type
                else None,
                file_info=seda.FileInfo(filename=item.path.name),
                data_object_version="BinaryMaster_1",
            )
        )
        object_ids = [object_id]
        for n, extra in enumerate(item.derived, start=1):
            object_ids.append(f"{object_id}-{n}")
            objects.append(
                seda.BinaryDataObject(
                    id=object_ids[-1],
                    group_id=group_id,
                    uri=extra.uri,
                    message_digest=extra.sha512,
                    digest_algorithm="SHA-512",
                    size=extra.size,
                    format=seda.FormatIdentification(mime_type=extra.mime_type),
                    file_info=seda.FileInfo(filename=PurePosixPath(extra.uri).name),
                    data_object_version=extra.version,
                )
            )
        groups.append(seda.DataObjectGroup(id=group_id, object_ids=object_ids))
        units.append(
            seda.ArchiveUnit(
                id=unit_id,
                title=item.title,
                description=item.description,
                description_level="Item",
                start_date=item.doc_date.isoformat(),
                end_date=(item.end_date or item.doc_date).isoformat(),
                originating_agency_archive_unit_identifiers=(
                    [item.identifier] if item.identifier else []
                ),
                keywords=[seda.Keyword(content=k) for k in item.keywords],
                management=seda.Management(rules=rules),
                data_object_group_id=group_id,
            )
        )
    transfer = seda.ArchiveTransfer(
        version=seda.SedaVersion(version),
        message_identifier=message_identifier,
        date=datetime.now(UTC).replace(microsecond=0),
        comments=[f"Dépôt de {len(batch)} document(s) par sae deposit"],
        archival_agency_identifier=archival_agency,
        transferring_agency_identifier=producer,
        package=seda.DataObjectPackage(
            binary_data_objects=objects,
            data_object_groups=groups,
            archive_units=units,
            root_unit_ids=[u.id for u in units],
            management_metadata=seda.ManagementMetadata(originating_agency_identifier=producer),
        ),
    )
    return seda.write_archive_transfer(transfer)


def write_sip(batch: Sequence[PlannedFile], manifest_xml: bytes, out: Path) -> Path:
    """The SIP zip: manifest.xml then every file at its Uri (stored: scans are compressed)."""
    tmp = out.with_name(out.name + ".part")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        zf.writestr("manifest.xml", manifest_xml, compress_type=zipfile.ZIP_DEFLATED)
        for item in batch:
            zf.write(item.path, item.uri)
            for extra in item.derived:
                zf.write(extra.path, extra.uri)
    os.replace(tmp, out)
    return out
