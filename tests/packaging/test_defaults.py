"""What an installation gets with no setting: the official SEDA schemas shipped in the package."""

from __future__ import annotations

from pathlib import Path

import pytest

import seda
from sae.config import Settings
from sae.ingest.service import parse_manifest
from tests.seda.helpers import manifest


def test_sae_validates_against_them_with_no_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("SAE_SEDA_XSD_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env nor sae.toml that could name a folder
    assert Settings().seda_xsd_dir == seda.BUNDLED_XSD_DIR
    monkeypatch.setenv("SAE_SEDA_XSD_DIR", str(tmp_path))
    (tmp_path / "2.2").mkdir()
    (tmp_path / "2.2" / "seda-2.2-main.xsd").write_bytes(b"")
    assert Settings().seda_xsd_dir == tmp_path.resolve()  # the setting still overrides


def test_the_ingest_refuses_an_xsd_invalid_manifest_with_no_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("SAE_SEDA_XSD_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    # Structurally sound (the model reads it): only the official schema knows Bogus is not SEDA.
    units = (
        '<ArchiveUnit id="AU1"><Content><DescriptionLevel>Item</DescriptionLevel>'
        "<Title>Délibération</Title><Bogus/></Content></ArchiveUnit>"
    )
    report = parse_manifest(manifest("2.2", units=units), Settings())
    assert [f.code for f in report.errors] == ["xsd.invalid"]
    assert "Bogus" in report.errors[0].message
