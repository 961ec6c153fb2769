"""The deposit spreadsheet (CSV or XLSX): one row per file.

Required columns: ``file`` (path relative to the folder), ``title``, ``date`` (ISO),
``record_type`` (a record type of the shipped schedule, or an AppraisalRule id). Optional:
``description``, ``start_date`` (the start of the retention period when it is not the document's
date: closure of a register, end of a contract…), ``end_date``, ``keywords`` (separated by ``;``),
``identifier`` (the producer's own reference), ``final_action`` (Keep/Destroy, to override the
schedule's), ``access_rule``, ``access_start_date``. Messages are in French: clerks read them.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

REQUIRED = ("file", "title", "date", "record_type")
OPTIONAL = (
    "description",
    "start_date",
    "end_date",
    "keywords",
    "identifier",
    "final_action",
    "access_rule",
    "access_start_date",
)
COLUMNS = REQUIRED + OPTIONAL

EXAMPLE_ROWS = [
    {
        "file": "2024/arrete-2024-001.pdf",
        "title": "Arrêté du maire n° 2024-001 portant réglementation du stationnement",
        "date": "2024-01-15",
        "record_type": "Arrêtés du maire",
        "description": "Rue de la République, marché du samedi",
        "keywords": "voirie; stationnement",
        "identifier": "AR-2024-001",
    },
    {
        "file": "2024/facture-0457.pdf",
        "title": "Facture n° 457 — fournitures scolaires",
        "date": "2024-03-02",
        "record_type": "APP-COM-FACTURES",
        "start_date": "2024-12-31",
    },
]


class SheetError(Exception):
    """The spreadsheet cannot be used; ``problems`` lists every problem (in French)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Row:
    """One line of the sheet, its number as the clerk sees it (header is line 1)."""

    line: int
    values: dict[str, str]

    def get(self, column: str) -> str:
        return self.values.get(column, "").strip()


def _normalise_header(cells: list[object]) -> list[str]:
    return [str(c or "").strip().lower() for c in cells]


def _check_header(header: list[str], path: Path) -> None:
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise SheetError(
            [
                f"{path.name} : colonne(s) obligatoire(s) absente(s) : {', '.join(missing)} "
                f"(colonnes attendues : {', '.join(REQUIRED)})"
            ]
        )


def read_sheet(path: Path) -> list[Row]:
    """The rows of a .csv (UTF-8, comma or semicolon) or .xlsx sheet."""
    suffix = path.suffix.lower()
    if suffix == ".xlsx":
        return _read_xlsx(path)
    if suffix == ".csv":
        return _read_csv(path)
    raise SheetError([f"{path.name} : format non pris en charge (attendu : .csv ou .xlsx)"])


def _read_csv(path: Path) -> list[Row]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise SheetError(
            [f"{path.name} : le fichier n'est pas en UTF-8 (enregistrez-le en « CSV UTF-8 »)"]
        ) from None
    first = text.split("\n", 1)[0]
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        header = _normalise_header(list(next(reader)))
    except StopIteration:
        raise SheetError([f"{path.name} : le tableur est vide"]) from None
    _check_header(header, path)
    rows = []
    for number, cells in enumerate(reader, start=2):
        if not any(c.strip() for c in cells):
            continue
        rows.append(Row(number, dict(zip(header, cells, strict=False))))
    return rows


def _read_xlsx(path: Path) -> list[Row]:
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a damaged file
        raise SheetError([f"{path.name} : classeur illisible ({exc})"]) from None
    try:
        sheet = workbook.worksheets[0]
        lines = sheet.iter_rows(values_only=True)
        try:
            header = _normalise_header(list(next(lines)))
        except StopIteration:
            raise SheetError([f"{path.name} : le tableur est vide"]) from None
        _check_header(header, path)
        rows = []
        for number, cells in enumerate(lines, start=2):
            values = {h: _cell(c) for h, c in zip(header, cells, strict=False) if h}
            if not any(v.strip() for v in values.values()):
                continue
            rows.append(Row(number, values))
        return rows
    finally:
        workbook.close()


def _cell(value: object) -> str:
    """A cell as text; spreadsheet dates become ISO dates."""
    from datetime import date, datetime

    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def write_template(path: Path) -> None:
    """A sheet with the columns (required first) and two example rows."""
    if path.suffix.lower() == ".xlsx":
        from openpyxl import Workbook

        workbook = Workbook()
        sheet = workbook.active
        assert sheet is not None
        sheet.title = "Dépôt"
        sheet.append(list(COLUMNS))
        for example in EXAMPLE_ROWS:
            sheet.append([example.get(c, "") for c in COLUMNS])
        workbook.save(path)
        return
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        for example in EXAMPLE_ROWS:
            writer.writerow([example.get(c, "") for c in COLUMNS])
