"""From a checked sheet to SEDA SIPs: plan (check every row, hash every file), then write zips.

Every problem of the sheet is reported at once, in French, with its line number, before anything
is sent: a clerk fixes the sheet once, not forty times.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
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
    scan: seda.Digitization | None = None
    #: Versions made from the file before the SIP is built (``sae.deposit.ocr``).
    derived: list[DerivedFile] = field(default_factory=list)


@dataclass
class Plan:
    items: list[PlannedFile] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


#: Files a scanner or a desktop leaves in a folder, which no row is expected to name.
IGNORED_NAMES = frozenset({"thumbs.db", "desktop.ini", ".ds_store"})
#: How a clerk may write the paper original's fate, folded (``_fold``).
PAPER_FATES = {
    "conserve": "kept",
    "kept": "kept",
    "garde": "kept",
    "detruit": "destroyed",
    "destroyed": "destroyed",
    "elimine": "destroyed",
}
_DPI = re.compile(r"^(\d+)\s*(dpi|ppp|ppi)?$")


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


def _key(name: str) -> str:
    """How a file is named, compared: slashes, no ``./``, Unicode NFC (a sheet typed on
    Windows and a folder copied from a Mac spell « é » differently)."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    return unicodedata.normalize("NFC", "/".join(parts))


def folder_files(root: Path, ignore: Iterable[Path] = ()) -> dict[str, Path]:
    """Every file under ``root`` by :func:`_key` of its relative path, but hidden ones, those
    of :data:`IGNORED_NAMES` and ``ignore`` (the sheet, the state file)."""
    skipped = {p.resolve() for p in ignore}
    found: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in sorted(filenames):
            if filename.startswith(".") or filename.lower() in IGNORED_NAMES:
                continue
            path = Path(dirpath) / filename
            if path.resolve() in skipped or not path.is_file():
                continue
            found[_key(path.relative_to(root).as_posix())] = path
    return found


def _near(key: str, files: Mapping[str, Path]) -> str | None:
    """The folder's file a misspelt name most likely meant: the same but for case, accents
    and spaces."""
    wanted = _fold(key).replace(" ", "")
    for candidate in files:
        if _fold(candidate).replace(" ", "") == wanted:
            return candidate
    return None


def _scan(row: Row, doc_date: date | None, problems: list[str]) -> seda.Digitization | None:
    """The row's capture record (columns of ``sheet.SCAN``), checked; None when it has none."""
    resolution: int | None = None
    text = row.get("scan_resolution")
    if text:
        match = _DPI.match(text.lower())
        resolution = int(match.group(1)) if match else None
        if resolution is None or not 50 <= resolution <= 10000:
            problems.append(
                f"ligne {row.line} : scan_resolution « {text} » n'est pas une résolution en "
                "points par pouce (un nombre entre 50 et 10000, par exemple 300)"
            )
            resolution = None
    scan_date = _date(row, "scan_date", problems)
    if scan_date is not None and scan_date > date.today():
        problems.append(f"ligne {row.line} : scan_date « {scan_date} » est dans le futur")
    elif scan_date is not None and doc_date is not None and scan_date < doc_date:
        problems.append(
            f"ligne {row.line} : scan_date « {scan_date} » précède la date du document "
            f"({doc_date}) : un document ne peut être numérisé avant d'exister"
        )
    paper: str | None = None
    text = row.get("paper_original")
    if text:
        paper = PAPER_FATES.get(_fold(text))
        if paper is None:
            problems.append(
                f"ligne {row.line} : paper_original « {text} » : « conservé » ou « détruit »"
            )
    scan = seda.Digitization(
        scanner=row.get("scanner") or None,
        resolution_dpi=resolution,
        operator=row.get("scan_operator") or None,
        scan_date=scan_date,
        paper_original=paper,
    )
    return None if scan.is_empty() else scan


def plan(
    directory: Path,
    rows: Sequence[Row],
    resolver: RuleResolver,
    *,
    progress: Callable[[int], None] | None = None,
    ignore: Iterable[Path] = (),
) -> Plan:
    """Check every row and hash every file; nothing is sent while ``problems`` is not empty.

    Also a problem: a file of the folder that no row names (``ignore``: files of the folder
    that are not to be deposited, such as the sheet itself).
    """
    result = Plan()
    root = directory.resolve()
    files = folder_files(root, ignore)
    seen: dict[str, int] = {}
    same_row: dict[tuple[tuple[str, str], ...], int] = {}
    same_bytes: dict[str, int] = {}
    for row in rows:
        problems: list[str] = []
        name = row.get("file")
        title = row.get("title")
        values = tuple(sorted((k, v.strip()) for k, v in row.values.items() if v.strip()))
        first = same_row.setdefault(values, row.line)
        if first != row.line:
            result.problems.append(f"ligne {row.line} : ligne en double de la ligne {first}")
            if progress is not None:
                progress(1)
            continue
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
        scan = _scan(row, doc_date, problems)
        final = row.get("final_action")
        if final and final not in ("Keep", "Destroy"):
            problems.append(f"ligne {row.line} : final_action « {final} » : Keep ou Destroy")
        key = _key(name) if name else ""
        path = files.get(key) if key else None
        if not name:
            problems.append(f"ligne {row.line} : la colonne file est vide")
        elif not (root / key).resolve().is_relative_to(root):
            problems.append(f"ligne {row.line} : « {name} » est en dehors du dossier déposé")
        elif key in seen:
            problems.append(f"ligne {row.line} : « {name} » figure déjà ligne {seen[key]}")
        elif path is None and (root / key).is_dir():
            problems.append(
                f"ligne {row.line} : « {name} » est un dossier : une ligne décrit un fichier"
            )
        elif path is None:
            near = _near(key, files)
            hint = f" (vouliez-vous dire « {near} » ?)" if near else ""
            problems.append(f"ligne {row.line} : fichier introuvable : {name}{hint}")
        if key:
            seen.setdefault(key, row.line)
        if problems or record is None or doc_date is None or path is None:
            result.problems.extend(problems)
            if progress is not None:
                progress(1)
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
        twin = same_bytes.setdefault(sha512, row.line)
        if twin != row.line:
            result.warnings.append(
                f"ligne {row.line} : « {name} » a exactement le même contenu que le fichier de "
                f"la ligne {twin} (numérisé deux fois ?)"
            )
        result.items.append(
            PlannedFile(
                row=row,
                path=path,
                uri=f"Content/{key}",
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
                scan=scan,
            )
        )
        if progress is not None:
            progress(1)
    for key in sorted(set(files) - set(seen)):
        result.problems.append(f"fichier « {key} » : aucune ligne du tableur ne le décrit")
    if not rows:
        result.problems.append("le tableur ne contient aucune ligne")
    return result


def message_identifier(
    batch: Sequence[PlannedFile], *, producer: str, archival_agency: str, version: str
) -> str:
    """The MessageIdentifier of a batch, derived from its content alone: the producer, the
    archival agency, the SEDA version, and for each file its path, its SHA-512 and its row's
    values (the line number aside), sorted. Sending the same batch again names the same
    message, which the archive accepts once (``check_duplicate``): a deposit run again after
    an interruption can never archive a file twice, whatever the local state file says."""
    entries = sorted(
        [
            item.uri,
            item.sha512,
            sorted((k, v.strip()) for k, v in item.row.values.items() if v.strip()),
        ]
        for item in batch
    )
    canonical = json.dumps(
        {
            "producer": producer,
            "archival_agency": archival_agency,
            "version": version,
            "files": entries,
        },
        ensure_ascii=False,
        separators=(",", ":"),
        sort_keys=True,
    )
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return f"DEPOT-{producer}-{digest[:40]}"


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
                digitization=item.scan,
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
