"""`sae deposit`: a folder of scans and a spreadsheet become accepted transfers."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pytest
from openpyxl import Workbook, load_workbook
from typer.testing import CliRunner

from sae.cli import app as cli
from sae.deposit.sheet import COLUMNS, REQUIRED
from tests.conftest import REPO, Api

RULES = """RuleId,RuleType,RuleValue,RuleDescription,RuleDuration,RuleMeasurement
APP-COM-ARRETES,AppraisalRule,Arrêtés du maire (registre ou collection),,1,YEAR
APP-COM-FACTURES,AppraisalRule,"Factures (fonctionnement, investissement)",,10,YEAR
ACC-00001,AccessRule,Communicabilité immédiate,,0,YEAR
"""


def _scans(folder: Path) -> dict[str, bytes]:
    files = {
        "2024/arrêté 2024-001.pdf": b"%PDF-1.4 arrete 1",
        "2024/arrêté 2024-002.pdf": b"%PDF-1.4 arrete 2",
        "factures/facture n°457.pdf": b"%PDF-1.4 facture",
    }
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return files


def _xlsx(path: Path, rows: list[list[object]]) -> None:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["file", "title", "date", "record_type", "start_date", "keywords"])
    for row in rows:
        sheet.append(row)
    workbook.save(path)


def _env(api: Api) -> dict[str, str]:
    return {
        "SAE_DATA_DIR": str(api.settings.data_dir),
        "SAE_DATABASE_URL": api.settings.db_url,
    }


def test_template_has_the_columns(tmp_path: Path) -> None:
    runner = CliRunner()
    for name in ("depot.csv", "depot.xlsx"):
        result = runner.invoke(cli, ["deposit", "template", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
    with (tmp_path / "depot.csv").open(encoding="utf-8") as fh:
        header = next(csv.reader(fh))
    assert tuple(header[: len(REQUIRED)]) == REQUIRED
    sheet = load_workbook(tmp_path / "depot.xlsx").worksheets[0]
    assert tuple(c.value for c in sheet[1]) == COLUMNS


def test_deposit_a_folder_locally(api: Api, tmp_path: Path) -> None:
    from datetime import date

    api.load_rules(RULES)
    folder = tmp_path / "scans"
    files = _scans(folder)
    sheet = tmp_path / "depot.xlsx"
    _xlsx(
        sheet,
        [
            [
                "2024/arrêté 2024-001.pdf",
                "Arrêté n° 2024-001",
                date(2024, 1, 15),
                "Arrêtés du maire",
                None,
                "voirie; stationnement",
            ],
            [
                "2024/arrêté 2024-002.pdf",
                "Arrêté n° 2024-002",
                "2024-02-01",
                "arretes du maire",
                None,
                None,
            ],
            [
                "factures/facture n°457.pdf",
                "Facture n° 457",
                "2024-03-02",
                "APP-COM-FACTURES",
                "2024-12-31",
                None,
            ],
        ],
    )
    result = CliRunner().invoke(
        cli,
        ["deposit", str(folder), "--sheet", str(sheet), "--producer", "URBANISME", "--batch", "2"],
        env=_env(api),
    )
    assert result.exit_code == 0, result.output
    transfers = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("OK ")]
    assert len(transfers) == 2  # 3 files in batches of 2
    for transfer_id in transfers:  # committed as the API commits: a signed head covers it
        transfer = api.client.get(f"/api/v1/transfers/{transfer_id}", headers=api.auth()).json()
        assert transfer["journal"]["tree_size"] is not None, transfer
    units = api.client.get("/api/v1/units?limit=50", headers=api.auth()).json()["items"]
    assert sorted(u["title"] for u in units) == [
        "Arrêté n° 2024-001",
        "Arrêté n° 2024-002",
        "Facture n° 457",
    ]
    facture = next(u for u in units if u["title"] == "Facture n° 457")
    detail = api.client.get(f"/api/v1/units/{facture['id']}", headers=api.auth()).json()
    assert detail["appraisal_end"] == "2034-12-31"
    assert detail["final_action"] in ("Keep", "Destroy")
    obj = detail["objects"][0]
    assert obj["sha512"] == hashlib.sha512(files["factures/facture n°457.pdf"]).hexdigest()
    assert detail["producer"] == "URBANISME"


def test_every_problem_is_listed_and_nothing_is_sent(api: Api, tmp_path: Path) -> None:
    api.load_rules(RULES)
    folder = tmp_path / "scans"
    _scans(folder)
    (tmp_path / "secret.pdf").write_bytes(b"outside")
    sheet = tmp_path / "depot.csv"
    sheet.write_text(
        "file;title;date;record_type\n"
        "2024/arrêté 2024-001.pdf;Arrêté;2024-13-45;Arrêtés du maire\n"
        "absent.pdf;Absent;2024-01-01;Arrêtés du maire\n"
        "../secret.pdf;Secret;2024-01-01;Arrêtés du maire\n"
        "factures/facture n°457.pdf;;2024-01-01;Type inconnu\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(
        cli,
        ["deposit", str(folder), "--sheet", str(sheet), "--producer", "URBANISME"],
        env=_env(api),
    )
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())
    assert "ligne 2 : date « 2024-13-45 » n'est pas une date" in output
    assert "ligne 3 : fichier introuvable : absent.pdf" in output
    assert "ligne 4 : « ../secret.pdf » est en dehors du dossier déposé" in output
    assert "ligne 5 : le titre est vide" in output
    assert "ligne 5 : type de document inconnu : « Type inconnu »" in output
    assert api.client.get("/api/v1/units", headers=api.auth()).json()["items"] == []


def test_record_type_must_be_in_the_referential(api: Api, tmp_path: Path) -> None:
    folder = tmp_path / "scans"
    _scans(folder)
    sheet = tmp_path / "depot.csv"
    sheet.write_text(
        "file,title,date,record_type\n2024/arrêté 2024-001.pdf,Arrêté,2024-01-15,Factures\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(
        cli,
        ["deposit", str(folder), "--sheet", str(sheet), "--producer", "URBANISME"],
        env=_env(api),
    )
    assert result.exit_code == 2
    assert "absente du référentiel" in " ".join(result.output.split())


@pytest.mark.parametrize("bad", ["depot.ods", "depot.txt"])
def test_unsupported_sheet_format(tmp_path: Path, bad: str) -> None:
    (tmp_path / bad).write_text("x")
    (tmp_path / "d").mkdir()
    result = CliRunner().invoke(
        cli,
        ["deposit", str(tmp_path / "d"), "--sheet", str(tmp_path / bad), "--producer", "P"],
        env={"SAE_DATA_DIR": str(tmp_path / "data")},
    )
    assert result.exit_code == 2
    assert "format non pris en charge" in " ".join(result.output.split())


def test_shipped_schedule_exists() -> None:
    assert any((REPO / "retention_rules").glob("*.yaml"))
