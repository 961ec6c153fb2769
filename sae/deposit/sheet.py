"""The deposit spreadsheet (CSV or XLSX): one row per file.

Required columns: ``file`` (path relative to the folder), ``title``, ``date`` (ISO),
``record_type`` (a record type of the shipped schedule, or an AppraisalRule id). Optional:
``description``, ``start_date`` (the start of the retention period when it is not the document's
date: closure of a register, end of a contract…), ``end_date``, ``keywords`` (separated by ``;``),
``identifier`` (the producer's own reference), ``final_action`` (Keep/Destroy, to override the
schedule's), ``access_rule``, ``access_start_date``; and the scan's capture record (NF Z42-026):
``scanner``, ``scan_resolution`` (dpi), ``scan_operator``, ``scan_date``, ``paper_original``
(``conservé``/``détruit``). Messages are in French: clerks read them.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

REQUIRED = ("file", "title", "date", "record_type")
OPTIONAL: tuple[str, ...] = (
    "description",
    "start_date",
    "end_date",
    "keywords",
    "identifier",
    "final_action",
    "access_rule",
    "access_start_date",
)
#: The scan's capture record, per row (``seda.Digitization``).
SCAN = ("scanner", "scan_resolution", "scan_operator", "scan_date", "paper_original")
OPTIONAL = OPTIONAL + SCAN
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
        "scanner": "Fujitsu fi-7160",
        "scan_resolution": "300",
        "scan_operator": "Marie Dupont",
        "scan_date": "2024-06-03",
        "paper_original": "conservé",
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


#: Columns that hold dates: formatted and checked as dates in the xlsx template.
DATE_COLUMNS = ("date", "start_date", "end_date", "access_start_date", "scan_date")
#: Rows of the xlsx template that carry the drop-down lists and date formats.
TEMPLATE_ROWS = 5000

HELP = [
    ("Colonne", "Obligatoire", "Ce qu'on y écrit"),
    (
        "file",
        "oui",
        "Chemin du fichier dans le dossier déposé, avec ses sous-dossiers "
        "(ex. : 2024/arrêté 2024-001.pdf). Un fichier par ligne ; chaque fichier du dossier doit "
        "avoir sa ligne.",
    ),
    ("title", "oui", "Intitulé du document, tel qu'on le cherchera."),
    ("date", "oui", "Date du document (AAAA-MM-JJ, ou une date du tableur)."),
    (
        "record_type",
        "oui",
        "Type de document du tableau de gestion : choisissez-le dans la "
        "liste déroulante (feuille « Types »).",
    ),
    ("description", "non", "Description libre."),
    (
        "start_date",
        "non",
        "Début de la durée d'utilité administrative quand ce n'est pas la "
        "date du document (clôture d'un registre, fin d'un marché…).",
    ),
    ("end_date", "non", "Date de fin, pour un dossier couvrant une période."),
    ("keywords", "non", "Mots-clés séparés par des points-virgules."),
    ("identifier", "non", "Référence du document dans le service (numéro d'arrêté…)."),
    (
        "final_action",
        "non",
        "Sort final, pour remplacer celui du tableau de gestion : Keep "
        "(conserver) ou Destroy (éliminer).",
    ),
    ("access_rule", "non", "Règle de communicabilité (identifiant du référentiel)."),
    ("access_start_date", "non", "Point de départ de la communicabilité."),
    ("scanner", "non", "Numérisation : marque et modèle du scanner (ex. : Fujitsu fi-7160)."),
    ("scan_resolution", "non", "Numérisation : résolution en points par pouce (ex. : 300)."),
    ("scan_operator", "non", "Numérisation : qui a numérisé."),
    ("scan_date", "non", "Numérisation : date de la numérisation."),
    ("paper_original", "non", "Original papier après numérisation : conservé ou détruit."),
    ("", "", ""),
    (
        "Avant d'envoyer",
        "",
        "sae deposit DOSSIER --sheet CE_FICHIER --producer SERVICE "
        "--dry-run liste tous les problèmes, avec leur numéro de ligne, sans rien envoyer.",
    ),
    (
        "Reprise",
        "",
        "Un dépôt interrompu se relance avec la même commande : les fichiers déjà "
        "archivés ne sont pas renvoyés, et aucun ne l'est deux fois.",
    ),
]


def write_template(path: Path, record_types: list[str] | None = None) -> None:
    """A sheet with the columns (required first) and two example rows; in xlsx, the record
    types of the referential in force as a drop-down list, date columns formatted and checked
    as dates, the scan columns checked, and a help sheet in French."""
    if path.suffix.lower() == ".xlsx":
        _write_xlsx_template(path, record_types or [])
        return
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        for example in EXAMPLE_ROWS:
            writer.writerow([example.get(c, "") for c in COLUMNS])


def _write_xlsx_template(path: Path, record_types: list[str]) -> None:
    from datetime import date

    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font
    from openpyxl.utils import get_column_letter
    from openpyxl.worksheet.datavalidation import DataValidation

    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = "Dépôt"
    sheet.append(list(COLUMNS))
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    sheet.freeze_panes = "A2"
    for example in EXAMPLE_ROWS:
        values: list[object] = []
        for column in COLUMNS:
            value = example.get(column, "")
            if column in DATE_COLUMNS and value:
                values.append(date.fromisoformat(value))
            elif column == "scan_resolution" and value:
                values.append(int(value))
            else:
                values.append(value or None)
        sheet.append(values)
    letter = {column: get_column_letter(i) for i, column in enumerate(COLUMNS, start=1)}
    last = TEMPLATE_ROWS + 1

    def cells(column: str) -> str:
        return f"{letter[column]}2:{letter[column]}{last}"

    # The record types live on their own sheet: a list written in the validation itself is
    # limited to 255 characters, which a schedule exceeds at once.
    types = workbook.create_sheet("Types")
    types.append(["Types de document du tableau de gestion"])
    types["A1"].font = Font(bold=True)
    for label in record_types:
        types.append([label])
    types.column_dimensions["A"].width = 80
    if record_types:
        choice = DataValidation(
            type="list",
            formula1=f"Types!$A$2:$A${len(record_types) + 1}",
            allow_blank=True,
            showErrorMessage=True,
            errorTitle="Type de document inconnu",
            error="Choisissez un type de document de la liste (feuille « Types »).",
            promptTitle="Type de document",
            prompt="Choisissez le type de document dans la liste.",
        )
        choice.add(cells("record_type"))
        sheet.add_data_validation(choice)
    dates = DataValidation(
        type="date",
        operator="greaterThan",
        formula1="DATE(1000,1,1)",
        allow_blank=True,
        showErrorMessage=True,
        errorTitle="Date invalide",
        error="Saisissez une date (AAAA-MM-JJ).",
    )
    for column in DATE_COLUMNS:
        dates.add(cells(column))
        for row in range(2, last + 1):
            sheet[f"{letter[column]}{row}"].number_format = "yyyy-mm-dd"
    sheet.add_data_validation(dates)
    fate = DataValidation(
        type="list",
        formula1='"conservé,détruit"',
        allow_blank=True,
        showErrorMessage=True,
        errorTitle="Original papier",
        error="conservé ou détruit",
    )
    fate.add(cells("paper_original"))
    sheet.add_data_validation(fate)
    final = DataValidation(type="list", formula1='"Keep,Destroy"', allow_blank=True)
    final.add(cells("final_action"))
    sheet.add_data_validation(final)
    dpi = DataValidation(
        type="whole",
        operator="between",
        formula1="50",
        formula2="10000",
        allow_blank=True,
        showErrorMessage=True,
        errorTitle="Résolution",
        error="Une résolution en points par pouce, par exemple 300.",
    )
    dpi.add(cells("scan_resolution"))
    sheet.add_data_validation(dpi)
    widths = {"file": 36, "title": 50, "record_type": 40, "description": 40, "keywords": 24}
    for column in COLUMNS:
        sheet.column_dimensions[letter[column]].width = widths.get(column, 16)

    helper = workbook.create_sheet("Aide")
    for line in HELP:
        helper.append(list(line))
    for cell in helper[1]:
        cell.font = Font(bold=True)
    helper.column_dimensions["A"].width = 20
    helper.column_dimensions["B"].width = 12
    helper.column_dimensions["C"].width = 100
    for row_cells in helper.iter_rows(min_row=2):
        row_cells[2].alignment = Alignment(wrap_text=True, vertical="top")
    workbook.save(path)
