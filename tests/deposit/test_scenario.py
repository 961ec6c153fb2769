"""Issue 20's scenario, end to end against a running server (``sae serve``, real HTTP).

A generated folder of 200 scans (TIFF, JPEG, PNG and PDF, made with Pillow; accents and spaces
in the names; nested folders) and a sheet with three planted mistakes: ``--dry-run`` names the
three rows and sends nothing; the sheet fixed, the deposit is killed (SIGKILL) midway, run again
to its end, then run again without its state file: every file is archived exactly once.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest
from openpyxl import Workbook
from PIL import Image, ImageDraw
from sqlalchemy import create_engine, text

from tests.crash.harness import ServerProcess

RULES = """RuleId,RuleType,RuleValue,RuleDescription,RuleDuration,RuleMeasurement
APP-COM-DELIB,AppraisalRule,Délibérations du conseil municipal,,1,YEAR
APP-COM-FACTURES,AppraisalRule,"Factures (fonctionnement, investissement)",,10,YEAR
ACC-00001,AccessRule,Communicabilité immédiate,,0,YEAR
"""
FILES = 200
BATCH = 10
HEADER = [
    "file",
    "title",
    "date",
    "record_type",
    "scanner",
    "scan_resolution",
    "scan_operator",
    "scan_date",
    "paper_original",
]
#: The sheet's line (header is line 1) of each planted mistake.
BAD_DATE, UNKNOWN_TYPE, MISSPELT_FILE = 12, 87, 151


def _scan(path: Path, number: int) -> None:
    """A small real scan: an image with the number drawn on it, in the suffix's format."""
    image = Image.new("RGB", (48, 32), (255 - number % 200, 250, 240))
    ImageDraw.Draw(image).text((2, 10), f"{number:03d}", fill=(0, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".tif":
        image.save(path, format="TIFF", dpi=(300, 300))
    elif path.suffix == ".jpg":
        image.save(path, format="JPEG", quality=80)
    elif path.suffix == ".png":
        image.save(path, format="PNG")
    else:
        image.save(path, format="PDF", resolution=300.0)


def _folder(root: Path) -> list[str]:
    """200 scans in nested folders; their names relative to ``root``."""
    names = []
    suffixes = (".tif", ".jpg", ".png", ".pdf")
    for number in range(FILES):
        year = 2020 + number % 4
        where = f"Délibérations {year}/séance n°{number % 7 + 1}"
        name = f"{where}/délibération {number:03d} — état civil{suffixes[number % 4]}"
        _scan(root / name, number)
        names.append(name)
    return names


def _rows(names: list[str]) -> list[list[object]]:
    rows: list[list[object]] = []
    for number, name in enumerate(names):
        year = 2020 + number % 4
        rows.append(
            [
                name,
                f"Délibération n° {number:03d} du conseil municipal",
                date(year, 1 + number % 12, 1 + number % 28),
                "Délibérations du conseil municipal" if number % 3 else "APP-COM-DELIB",
                "Fujitsu fi-7160",
                300 if number % 2 else "400 dpi",
                "Marie Dupont",
                date(2025, 6, 2),
                "détruit" if number % 5 == 0 else "conservé",
            ]
        )
    return rows


def _xlsx(path: Path, rows: list[list[object]]) -> None:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(HEADER)
    for row in rows:
        sheet.append(row)
    workbook.save(path)


def _deposit(
    server: ServerProcess, token: str, folder: Path, sheet: Path, *extra: str
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "sae",
        "deposit",
        str(folder),
        "--sheet",
        str(sheet),
        "--producer",
        "SECRETARIAT-GENERAL",
        "--server",
        server.url,
        "--token",
        token,
        "--batch",
        str(BATCH),
        *extra,
    ]


def _env(tmp_path: Path) -> dict[str, str]:
    # The deposit is a client: nothing of the server's settings, a data directory of its own.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAE_")}
    return {**env, "SAE_DATA_DIR": str(tmp_path / "client"), "COLUMNS": "200"}


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=300, check=False)


def _archived(server: ServerProcess) -> dict[str, int]:
    """How many live data objects the server's catalogue holds, per SHA-512."""
    engine = create_engine(f"sqlite:///{server.data_dir / 'sae.db'}")
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT sha512, count(*) FROM data_objects WHERE status = 'active' "
                    "GROUP BY sha512"
                )
            ).all()
    finally:
        engine.dispose()
    return {str(sha512): int(count) for sha512, count in rows}


@pytest.fixture
def server(tmp_path: Path) -> ServerProcess:
    from tests.conftest import XSD_DIR

    process = ServerProcess(
        tmp_path / "server",
        env={"SAE_SEDA_XSD_DIR": str(XSD_DIR), "SAE_CLAMD_REQUIRED": "0"},
    )
    process.start()
    yield process  # type: ignore[misc]
    process.stop()


def test_two_hundred_scans_dry_run_kill_and_resume(server: ServerProcess, tmp_path: Path) -> None:
    with server.client() as client:
        response = client.put(
            "/api/v1/rules", content=RULES.encode(), headers={"Content-Type": "text/csv"}
        )
        assert response.status_code == 200, response.text
    created = server.cli(
        "token", "create", "--role", "depositor", "--producer", "SECRETARIAT-GENERAL"
    )
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    folder = tmp_path / "numérisations du greffe"
    names = _folder(folder)
    digests = {hashlib.sha512((folder / name).read_bytes()).hexdigest(): name for name in names}
    assert len(digests) == FILES
    env = _env(tmp_path)

    # The sheet with three planted mistakes (line = index + 2: the header is line 1).
    rows = _rows(names)
    rows[BAD_DATE - 2][2] = "2023-02-30"
    rows[UNKNOWN_TYPE - 2][3] = "Factures de cantine"
    rows[MISSPELT_FILE - 2][0] = str(rows[MISSPELT_FILE - 2][0]).replace(
        "délibération", "deliberation"
    )
    sheet = tmp_path / "bordereau du greffe.xlsx"
    _xlsx(sheet, rows)
    dry = _run(_deposit(server, token, folder, sheet, "--dry-run"), env)
    assert dry.returncode != 0, dry.stdout + dry.stderr
    said = " ".join(dry.stderr.split())
    assert f"ligne {BAD_DATE} : date « 2023-02-30 » n'est pas une date" in said
    assert f"ligne {UNKNOWN_TYPE} : type de document inconnu : « Factures de cantine »" in said
    assert f"ligne {MISSPELT_FILE} : fichier introuvable" in said
    assert f"(vouliez-vous dire « {names[MISSPELT_FILE - 2]} » ?)" in said
    assert "aucune ligne du tableur ne le décrit" in said  # the misspelt row's real file
    assert "rien n'a été déposé" in said
    assert _archived(server) == {}

    # Fixed, the dry run finds nothing and still sends nothing.
    _xlsx(sheet, _rows(names))
    dry = _run(_deposit(server, token, folder, sheet, "--dry-run"), env)
    assert dry.returncode == 0, dry.stderr
    assert f"{FILES} fichier(s) contrôlé(s), aucun problème" in " ".join(dry.stderr.split())
    assert _archived(server) == {}

    # Killed midway: once the state file records a few acknowledged transfers.
    state = sheet.with_name(sheet.name + ".etat-depot.json")
    process = subprocess.Popen(
        _deposit(server, token, folder, sheet),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    acknowledged = 0
    while time.monotonic() < deadline and process.poll() is None:
        try:
            acknowledged = len(json.loads(state.read_text(encoding="utf-8"))["transfers"])
        except (FileNotFoundError, ValueError):
            acknowledged = 0
        if acknowledged >= 4:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL, "the deposit ended before it was killed"
    partial = _archived(server)
    assert 0 < sum(partial.values()) < FILES
    assert set(partial.values()) == {1}

    # Run again: it resumes and ends; every file archived, once.
    again = _run(_deposit(server, token, folder, sheet), env)
    assert again.returncode == 0, again.stderr
    resumed = " ".join(again.stderr.split())
    assert "déjà archivé(s) lors d'un dépôt précédent" in resumed
    assert "Résumé du dépôt" in resumed
    archived = _archived(server)
    assert archived == {sha512: 1 for sha512 in digests}

    # Without its state file, every batch is sent again under the same identifier: the
    # archive answers that it already holds it, counted as done, nothing doubled.
    state.unlink()
    third = _run(_deposit(server, token, folder, sheet), env)
    assert third.returncode == 0, third.stderr
    said = " ".join(third.stderr.split())
    assert said.count("déjà archivé (") == FILES // BATCH, said
    assert f"0 accepté(s), {FILES // BATCH} déjà archivé(s)" in said
    assert _archived(server) == archived

    # The scan chain reached the catalogue, per object, and the API shows it.
    with server.client() as client:
        units = client.get(
            "/api/v1/units",
            params={"limit": 1, "title": "Délibération n° 010 du conseil municipal"},
        ).json()["items"]
        assert len(units) == 1, units
        unit = client.get(f"/api/v1/units/{units[0]['id']}").json()
        scan = unit["objects"][0]["scan_chain"]
        assert scan == {
            "scanner": "Fujitsu fi-7160",
            "resolution_dpi": 400,  # written « 400 dpi »
            "operator": "Marie Dupont",
            "scan_date": "2025-06-02",
            "paper_original": "destroyed",
        }
        obj = client.get(unit["objects"][0]["url"]).json()
        assert obj["scan_chain"] == scan
    engine = create_engine(f"sqlite:///{server.data_dir / 'sae.db'}")
    try:
        with engine.connect() as connection:
            accepted = connection.scalar(text("SELECT count(*) FROM transfers WHERE status = 'OK'"))
            unit_count = connection.scalar(
                text("SELECT count(*) FROM archive_units WHERE status = 'active'")
            )
    finally:
        engine.dispose()
    assert accepted == FILES // BATCH  # the batches of the resumed run: the same ones
    assert unit_count == FILES
