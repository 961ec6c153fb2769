"""OCR of scans into searchable PDF/A-2b with the real ocrmypdf and Tesseract (issue #20 item
3): ``sae deposit --ocr`` sends the scan, unchanged and still the master, and its PDF/A in the
same object group; the PDF/A's words are found by search."""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

import pytest
from pypdf import PdfReader
from typer.testing import CliRunner

from sae.cli import app as cli
from sae.extraction.ocrmypdf import OcrFailed, available, is_pdfa2, to_pdfa
from sae.extraction.service import extract_pending
from tests.conftest import Api, require
from tests.extraction.pdfs import text_pdf
from tests.extraction.scans import scan

RULES = """RuleId,RuleType,RuleValue,RuleDescription,RuleDuration,RuleMeasurement
APP-COM-DELIB,AppraisalRule,Délibérations,,10,YEAR
"""


@pytest.fixture(autouse=True)
def _ocrmypdf() -> None:
    require(available(), "ocrmypdf (Debian packages ocrmypdf and tesseract-ocr-fra)")


def test_an_image_becomes_a_pdfa_2b_with_its_text(tmp_path: Path) -> None:
    source = tmp_path / "scan.jpg"
    scan(source, dpi=None)  # no resolution declared: 300 dpi assumed
    out = tmp_path / "scan.pdf"
    to_pdfa(source, out, mime_type="image/jpeg")
    assert is_pdfa2(out)
    text = PdfReader(out).pages[0].extract_text().lower()
    assert "lampadaires" in text
    assert "tilleuls" in text
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    with pytest.raises(OcrFailed, match="ocrmypdf a échoué"):
        to_pdfa(broken, tmp_path / "broken.pdf", mime_type="image/png")
    assert not (tmp_path / "broken.pdf").exists()


def test_deposit_ocr_sends_the_scan_and_its_searchable_pdfa(api: Api, tmp_path: Path) -> None:
    api.load_rules(RULES)
    folder = tmp_path / "scans"
    folder.mkdir()
    image = scan(folder / "délibération 12.tif")
    # A PNG cut short: libmagic reads its header, Tesseract cannot read its pixels.
    (folder / "broken.png").write_bytes(scan(tmp_path / "whole.png")[:200])
    (folder / "rapport.pdf").write_bytes(text_pdf("Rapport", ["Un texte deja lisible."]))
    sheet = tmp_path / "depot.csv"
    with sheet.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "title", "date", "record_type"])
        writer.writerow(
            ["délibération 12.tif", "Délibération n° 12", "2024-03-01", "APP-COM-DELIB"]
        )
        writer.writerow(["broken.png", "Pièce abîmée", "2024-03-02", "APP-COM-DELIB"])
        writer.writerow(["rapport.pdf", "Rapport", "2024-03-03", "APP-COM-DELIB"])
    result = CliRunner().invoke(
        cli,
        ["deposit", str(folder), "--sheet", str(sheet), "--producer", "MAIRIE", "--ocr"],
        env={"SAE_DATA_DIR": str(api.settings.data_dir), "SAE_DATABASE_URL": api.settings.db_url},
    )
    assert result.exit_code == 0, result.output
    # The broken image is deposited alone, with a warning naming its row.
    assert "ligne 3 : OCR impossible" in result.output
    assert "1 PDF/A" in result.output

    units = {
        u["title"]: u for u in api.client.get("/api/v1/units", headers=api.auth()).json()["items"]
    }
    detail = api.client.get(
        f"/api/v1/units/{units['Délibération n° 12']['id']}", headers=api.auth()
    )
    objects = {}
    for summary in detail.json()["objects"]:
        obj = api.client.get(f"/api/v1/objects/{summary['id']}", headers=api.auth()).json()
        objects[obj["data_object_version"]] = obj
    assert set(objects) == {"BinaryMaster_1", "Dissemination_1"}
    master, pdfa = objects["BinaryMaster_1"], objects["Dissemination_1"]
    assert master["sha512"] == hashlib.sha512(image).hexdigest()  # the scan, unchanged
    content = api.client.get(f"/api/v1/objects/{pdfa['id']}/content", headers=api.auth())
    assert content.status_code == 200
    assert hashlib.sha512(content.content).hexdigest() == pdfa["sha512"]
    reader = PdfReader(io.BytesIO(content.content))
    assert "tilleuls" in reader.pages[0].extract_text().lower()
    for title in ("Pièce abîmée", "Rapport"):  # not OCRed: a broken image, a PDF with text
        other = api.client.get(f"/api/v1/units/{units[title]['id']}", headers=api.auth()).json()
        assert len(other["objects"]) == 1

    extract_pending(
        api.runtime.sessions, api.runtime.offer_set.copies(), api.settings.data_dir / "tmp"
    )
    found = api.client.get(
        "/api/v1/units", params={"q": "lampadaires tilleuls"}, headers=api.auth()
    ).json()["items"]
    assert [u["title"] for u in found] == ["Délibération n° 12"]


def test_sae_ocr_is_refused_without_its_languages() -> None:
    from sae.config import ConfigurationError, load_settings

    assert load_settings(ocr=True).ocr_languages == "fra"
    # "zzz" stands for a language whose Tesseract package is not installed.
    with pytest.raises(ConfigurationError, match="tesseract-ocr-zzz"):
        load_settings(ocr=True, ocr_languages="fra+zzz")
    with pytest.raises(ConfigurationError, match="SAE_OCR_LANGUAGES"):
        load_settings(ocr=True, ocr_languages="--help")
