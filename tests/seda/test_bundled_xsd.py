"""The official SEDA schemas shipped inside the package are the reference copies, and work."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import seda

from .helpers import manifest

VERSIONS = ("2.1", "2.2", "2.3")


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for version in VERSIONS
        for path in sorted((folder / version).glob("*.xsd"))
    }


def test_the_bundled_schemas_are_the_reference_copies(xsd_dir: Path) -> None:
    """Byte for byte the files of ../shared/seda-xsd (whose README gives their provenance)."""
    bundled = _digests(seda.BUNDLED_XSD_DIR)
    assert len(bundled) == 8 * len(VERSIONS)
    assert bundled == _digests(xsd_dir)


def test_the_licence_notice_ships_beside_them() -> None:
    notice = (seda.BUNDLED_XSD_DIR / "NOTICE.md").read_text(encoding="utf-8")
    assert "Licence" in notice
    assert "culturecommunication/seda" in notice


@pytest.mark.parametrize("version", VERSIONS)
def test_validating_against_the_bundled_schemas(version: str) -> None:
    assert seda.validate_transfer(manifest(version), xsd_dir=seda.BUNDLED_XSD_DIR).ok
    units = '<ArchiveUnit id="AU1"><Content><Bogus/></Content></ArchiveUnit>'
    bogus = manifest(version, units=units)
    report = seda.validate_transfer(bogus, xsd_dir=seda.BUNDLED_XSD_DIR)
    assert any(f.code == "xsd.invalid" and "Bogus" in f.message for f in report.errors)


def test_the_bundled_seda_1_0_schemas_are_the_reference_copies(xsd_dir: Path) -> None:
    """SEDA 1.0 (read for Pastell) ships too, byte for byte the reference copy."""

    def digests(folder: Path) -> dict[str, str]:
        return {
            str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*.xsd"))
        }

    bundled = digests(seda.BUNDLED_XSD_DIR / "1.0")
    assert "seda_v1-0.xsd" in bundled
    assert "v10/seda_v1-0_archivetransfer.xsd" in bundled
    assert bundled == digests(xsd_dir / "1.0")
