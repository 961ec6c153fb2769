"""Scan-chain metadata (issue 20 item 6) from the sheet to the catalogue and back, and what
``sae deposit`` checks of it; a local deposit run twice archives nothing twice.

The capture record travels as MIX in the object's ``Metadata/Image`` (``seda.Digitization``),
is recorded per object (``data_objects.scan_chain``), shown by ``GET /units/{id}``, ``GET
/objects/{id}`` and the unit's console page, and comes back when the catalogue is rebuilt from
the offer (it is in the transfer's record).
"""

from __future__ import annotations

import html
import io
import zipfile
from datetime import date
from pathlib import Path

import pytest
from openpyxl import load_workbook
from typer.testing import CliRunner

import seda
from sae.cli import app as cli
from sae.config import Settings
from sae.recovery.rebuild import rebuild
from tests.console.helpers import login
from tests.recovery.test_rebuild import (  # noqa: F401  (the autouse fixture)
    _other_owners_pending,
    publish,
    running,
    sqlite_target,
)

RULES = """RuleId,RuleType,RuleValue,RuleDescription,RuleDuration,RuleMeasurement
APP-COM-ARRETES,AppraisalRule,Arrêtés du maire (registre ou collection),,1,YEAR
APP-COM-FACTURES,AppraisalRule,"Factures (fonctionnement, investissement)",,10,YEAR
ACC-00001,AccessRule,Communicabilité immédiate,,0,YEAR
"""
HEADER = (
    "file;title;date;record_type;scanner;scan_resolution;scan_operator;scan_date;paper_original\n"
)


def _env(settings: Settings) -> dict[str, str]:
    return {"SAE_DATA_DIR": str(settings.data_dir), "SAE_DATABASE_URL": settings.db_url}


def _folder(root: Path) -> None:
    for name, data in {
        "registre/arrêté 001.pdf": b"%PDF-1.4 arrete 1",
        "registre/arrêté 002.pdf": b"%PDF-1.4 arrete 2",
        "factures/facture 457.pdf": b"%PDF-1.4 facture",
    }.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)


def test_scan_chain_reaches_the_catalogue_the_console_and_a_rebuild(
    settings: Settings, tmp_path: Path
) -> None:
    folder = tmp_path / "scans"
    _folder(folder)
    sheet = tmp_path / "depot.csv"
    sheet.write_text(
        HEADER + "registre/arrêté 001.pdf;Arrêté n° 1;2024-01-15;Arrêtés du maire;Fujitsu fi-7160;"
        "300 ppp;Marie Dupont;2024-06-03;détruit\n"
        "registre/arrêté 002.pdf;Arrêté n° 2;2024-01-16;Arrêtés du maire;;;;;\n"
        "factures/facture 457.pdf;Facture n° 457;2024-03-02;APP-COM-FACTURES;;600;;;Conservé\n",
        encoding="utf-8",
    )
    args = ["deposit", str(folder), "--sheet", str(sheet), "--producer", "URBANISME"]
    with running(settings) as api:
        api.load_rules(RULES)
        first = CliRunner().invoke(cli, args, env=_env(settings))
        assert first.exit_code == 0, first.output
        said = " ".join(first.output.split())
        assert "Résumé du dépôt" in said
        assert "1 accepté(s), 0 déjà archivé(s), 0 refusé(s)" in said
        assert "unités d'archives créées : 3" in said
        assert "(ATR) : 1 OK" in said

        # Run again, state file removed: the same batch, the same identifier, already archived.
        state = sheet.with_name(sheet.name + ".etat-depot.json")
        assert state.is_file()
        again = CliRunner().invoke(cli, args, env=_env(settings))
        assert again.exit_code == 0, again.output
        assert "tout est déjà archivé" in " ".join(again.output.split())
        state.unlink()
        third = CliRunner().invoke(cli, args, env=_env(settings))
        assert third.exit_code == 0, third.output
        said = " ".join(third.output.split())
        assert "lot 1 : déjà archivé" in said
        assert "0 accepté(s), 1 déjà archivé(s)" in said

        units = {
            u["title"]: u
            for u in api.client.get("/api/v1/units?limit=50", headers=api.auth()).json()["items"]
        }
        assert sorted(units) == ["Arrêté n° 1", "Arrêté n° 2", "Facture n° 457"]
        scanned = api.client.get(
            f"/api/v1/units/{units['Arrêté n° 1']['id']}", headers=api.auth()
        ).json()
        chain = {
            "scanner": "Fujitsu fi-7160",
            "resolution_dpi": 300,
            "operator": "Marie Dupont",
            "scan_date": "2024-06-03",
            "paper_original": "destroyed",
        }
        assert scanned["objects"][0]["scan_chain"] == chain
        object_id = scanned["objects"][0]["id"]
        obj = api.client.get(f"/api/v1/objects/{object_id}", headers=api.auth()).json()
        assert obj["scan_chain"] == chain
        plain = api.client.get(
            f"/api/v1/units/{units['Arrêté n° 2']['id']}", headers=api.auth()
        ).json()
        assert plain["objects"][0]["scan_chain"] is None
        invoice = api.client.get(
            f"/api/v1/units/{units['Facture n° 457']['id']}", headers=api.auth()
        ).json()
        assert invoice["objects"][0]["scan_chain"] == {
            "scanner": None,
            "resolution_dpi": 600,
            "operator": None,
            "scan_date": None,
            "paper_original": "kept",
        }

        # A DIP carries it on to the reader, as MIX on the object.
        dip = api.client.get(f"/api/v1/units/{scanned['id']}/dip", headers=api.auth())
        assert dip.status_code == 200, dip.text
        with zipfile.ZipFile(io.BytesIO(dip.content)) as package:
            delivered = seda.safe_parse(package.read("manifest.xml"))
        mix = "{" + seda.MIX_NAMESPACE + "}"
        assert delivered.findtext(f".//{mix}scannerModelName") == "Fujitsu fi-7160"
        assert delivered.findtext(f".//{{{seda.SCAN_NAMESPACE}}}paperOriginal") == "destroyed"

        # The unit's console page says it, in French.
        assert login(api.client, api.admin).status_code == 303
        page = html.unescape(api.client.get(f"/console/unites/{scanned['id']}").text)
        text = " ".join(page.split())
        assert "Numérisation" in text
        assert "le 2024-06-03, par Marie Dupont, scanner Fujitsu fi-7160, 300 ppp" in text
        assert "Original papier</dt><dd>détruit" in text.replace("> <", "><")
        page = html.unescape(api.client.get(f"/console/unites/{invoice['id']}").text)
        text = " ".join(page.split()).replace("> <", "><")
        assert "<dt>Numérisation</dt><dd>600 ppp</dd>" in text
        assert "Original papier</dt><dd>conservé" in text
        page = html.unescape(api.client.get(f"/console/unites/{plain['id']}").text)
        assert "Numérisation" not in page
        api.client.cookies.clear()
        publish(api)

    # Rebuilt from the offer alone, the catalogue holds the same capture record.
    target = sqlite_target(tmp_path)
    report = rebuild(settings, "local", target)
    assert report.admin_token_path is not None
    rebuilt = settings.model_copy(update={"database_url": target})
    with running(rebuilt) as api:
        token = report.admin_token_path.read_text().strip()
        again_obj = api.client.get(f"/api/v1/objects/{object_id}", headers=api.auth(token))
        assert again_obj.status_code == 200, again_obj.text
        assert again_obj.json()["scan_chain"] == chain


def test_scan_columns_are_checked_in_the_dry_run(settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "scans"
    _folder(folder)
    (folder / "registre" / "sous-dossier").mkdir()
    next_year = date.today().year + 1
    sheet = tmp_path / "depot.csv"
    sheet.write_text(
        HEADER + "registre/arrêté 001.pdf;Arrêté n° 1;2024-01-15;Arrêtés du maire;;trois cents;;;\n"
        "registre/arrêté 002.pdf;Arrêté n° 2;2024-01-16;Arrêtés du maire;;;;2023-12-01;brûlé\n"
        "registre/arrêté 002.pdf;Arrêté n° 2;2024-01-16;Arrêtés du maire;;;;2023-12-01;brûlé\n"
        f"registre/sous-dossier;Dossier;2024-01-16;Arrêtés du maire;;;;{next_year}-01-01;\n",
        encoding="utf-8",
    )
    with running(settings) as api:
        api.load_rules(RULES)
        result = CliRunner().invoke(
            cli,
            ["deposit", str(folder), "--sheet", str(sheet), "--producer", "URBANISME", "--dry-run"],
            env=_env(settings),
        )
        assert result.exit_code == 2, result.output
        said = " ".join(result.output.split())
        assert "ligne 2 : scan_resolution « trois cents » n'est pas une résolution" in said
        assert "ligne 3 : scan_date « 2023-12-01 » précède la date du document" in said
        assert "ligne 3 : paper_original « brûlé » : « conservé » ou « détruit »" in said
        assert "ligne 4 : ligne en double de la ligne 3" in said
        assert f"ligne 5 : scan_date « {next_year}-01-01 » est dans le futur" in said
        assert "ligne 5 : « registre/sous-dossier » est un dossier" in said
        assert "fichier « factures/facture 457.pdf » : aucune ligne du tableur ne le décrit" in said
        assert "rien n'a été déposé" in said
        units = api.client.get("/api/v1/units", headers=api.auth()).json()["items"]
        assert units == []


def test_template_carries_the_record_types_dates_and_help(
    settings: Settings, tmp_path: Path
) -> None:
    with running(settings) as api:
        api.load_rules(RULES)
    path = tmp_path / "depot.xlsx"
    result = CliRunner().invoke(cli, ["deposit", "template", str(path)], env=_env(settings))
    assert result.exit_code == 0, result.output
    workbook = load_workbook(path)
    assert workbook.sheetnames == ["Dépôt", "Types", "Aide"]
    types = [row[0] for row in workbook["Types"].iter_rows(min_row=2, values_only=True)]
    assert types == [
        "Arrêtés du maire (registre ou collection)",
        "Factures (fonctionnement, investissement)",
    ]
    sheet = workbook["Dépôt"]
    header = [c.value for c in sheet[1]]
    validations = {str(dv.sqref): dv for dv in sheet.data_validations.dataValidation}
    record_col = chr(ord("A") + header.index("record_type"))
    choice = next(dv for ref, dv in validations.items() if ref.startswith(f"{record_col}2:"))
    assert choice.type == "list"
    assert choice.formula1 == "Types!$A$2:$A$3"
    date_col = chr(ord("A") + header.index("date"))
    assert sheet[f"{date_col}2"].number_format == "yyyy-mm-dd"
    assert sheet[f"{date_col}2"].value.date() == date(2024, 1, 15)
    assert any(
        dv.type == "date" and f"{date_col}2:" in str(dv.sqref) for dv in validations.values()
    )
    fate_col = chr(ord("A") + header.index("paper_original"))
    fate = next(dv for ref, dv in validations.items() if f"{fate_col}2:" in ref)
    assert fate.formula1 == '"conservé,détruit"'
    aide = " ".join(
        str(c) for row in workbook["Aide"].iter_rows(values_only=True) for c in row if c
    )
    assert "--dry-run" in aide
    assert "liste déroulante" in aide


def test_digitization_round_trips_through_seda_2_1_to_2_3() -> None:
    from datetime import UTC, datetime

    scan = seda.Digitization(
        scanner="Canon DR-G2140",
        resolution_dpi=400,
        operator="É. Martin",
        scan_date=date(2025, 1, 31),
        paper_original="kept",
    )
    for version in ("2.1", "2.2", "2.3"):
        transfer = seda.ArchiveTransfer(
            version=seda.SedaVersion(version),
            message_identifier="MSG-SCAN",
            date=datetime(2025, 2, 1, tzinfo=UTC),
            archival_agency_identifier="SAE",
            transferring_agency_identifier="P",
            package=seda.DataObjectPackage(
                binary_data_objects=[
                    seda.BinaryDataObject(
                        id="BDO-1",
                        group_id="GOT-1",
                        uri="Content/a.tif",
                        message_digest="a" * 128,
                        digest_algorithm="SHA-512",
                        size=1,
                        data_object_version="BinaryMaster_1",
                        digitization=scan,
                    )
                ],
                data_object_groups=[seda.DataObjectGroup(id="GOT-1", object_ids=["BDO-1"])],
                archive_units=[
                    seda.ArchiveUnit(
                        id="AU-1", title="t", description_level="Item", data_object_group_id="GOT-1"
                    )
                ],
                root_unit_ids=["AU-1"],
                management_metadata=seda.ManagementMetadata(originating_agency_identifier="P"),
            ),
        )
        from tests.conftest import XSD_DIR

        report = seda.validate_transfer(seda.write_archive_transfer(transfer), xsd_dir=XSD_DIR)
        assert report.errors == [], (version, report.errors)
        assert report.transfer is not None
        assert report.transfer.package.binary_data_objects[0].digitization == scan


def test_a_refused_token_stops_the_deposit_at_the_first_batch(
    settings: Settings, tmp_path: Path
) -> None:
    from sae.deposit.build import RuleResolver, plan
    from sae.deposit.runner import HttpTarget, send_all
    from sae.deposit.sheet import read_sheet

    folder = tmp_path / "scans"
    _folder(folder)
    sheet = tmp_path / "depot.csv"
    sheet.write_text(
        "file;title;date;record_type\n"
        "registre/arrêté 001.pdf;A1;2024-01-15;APP-COM-ARRETES\n"
        "registre/arrêté 002.pdf;A2;2024-01-15;APP-COM-ARRETES\n"
        "factures/facture 457.pdf;F;2024-01-15;APP-COM-FACTURES\n",
        encoding="utf-8",
    )
    with running(settings) as api:
        api.load_rules(RULES)
        rules = api.client.get("/api/v1/rules", headers=api.auth()).json()
        planned = plan(folder, read_sheet(sheet), RuleResolver(rules), ignore=[sheet])
        assert planned.problems == []
        other = api.token("depositor", ["FINANCES"])  # not URBANISME's
        target = HttpTarget("http://testserver", other)
        target.client = api.client  # the app in this process, through its real routes
        target.client.headers["Authorization"] = f"Bearer {other}"
        results = send_all(
            target,
            planned.items,
            producer="URBANISME",
            archival_agency="SAE",
            max_files=1,
            max_bytes=1 << 30,
        )
        assert [r.status for r in results] == ["ERROR"]
        assert results[0].errors[0]["code"] == "auth.producer_forbidden"
        api.client.headers.pop("Authorization", None)
        units = api.client.get("/api/v1/units", headers=api.auth()).json()["items"]
        assert units == []


def test_a_state_file_of_another_deposit_is_refused(tmp_path: Path) -> None:
    from sae.deposit.state import DepositState, StateError

    path = tmp_path / "etat.json"
    state = DepositState.open(
        path, producer="URBANISME", target="local", max_files=10, max_bytes=100
    )
    state.record("DEPOT-URBANISME-abc", "accepted", "t-1", [["Content/a.pdf", "0" * 128]])
    again = DepositState.open(
        path, producer="URBANISME", target="local", max_files=500, max_bytes=1000
    )
    assert again.done_files() == {("Content/a.pdf", "0" * 128)}
    assert (again.max_files, again.max_bytes) == (10, 100)  # the batches are cut as before
    with pytest.raises(StateError, match="concerne le service URBANISME"):
        DepositState.open(path, producer="FINANCES", target="local", max_files=1, max_bytes=1)
    with pytest.raises(StateError, match="indiquez un autre fichier avec --state"):
        DepositState.open(
            path, producer="URBANISME", target="https://sae", max_files=1, max_bytes=1
        )
    assert [p.name for p in tmp_path.iterdir()] == ["etat.json"]  # no temporary file left
