"""Typed helpers for the seda tests: samples, the INDEX, small manifests built in code."""

from __future__ import annotations

import csv
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Sample:
    """One row of ``shared/seda-samples/INDEX.csv``."""

    path: Path
    row: dict[str, str]

    @property
    def name(self) -> str:
        return self.path.name

    def manifest(self) -> bytes | None:
        """The manifest bytes (read from the zip with zipfile), or ``None`` when there is none."""
        if self.path.suffix == ".xml":
            return self.path.read_bytes()
        with zipfile.ZipFile(self.path) as archive:
            names = archive.namelist()
            if "manifest.xml" in names:
                return archive.read("manifest.xml")
            roots = [n for n in names if "/" not in n and n.endswith(".xml")]
            return archive.read(roots[0]) if len(roots) == 1 else None

    def count(self, column: str) -> int:
        value = self.row[column]
        return int(value) if value else 0


def load_index(samples_dir: Path) -> list[Sample]:
    with (samples_dir / "INDEX.csv").open(newline="", encoding="utf-8") as handle:
        return [Sample(samples_dir / row["file"], row) for row in csv.DictReader(handle)]


NS = {
    "2.1": "fr:gouv:culture:archivesdefrance:seda:v2.1",
    "2.2": "fr:gouv:culture:archivesdefrance:seda:v2.2",
    "2.3": "fr:gouv:culture:archivesdefrance:seda:v2.3",
}


def manifest(
    version: str = "2.2",
    *,
    units: str | None = None,
    objects: str = "",
    management: str = "",
    root: str = "ArchiveTransfer",
    namespace: str | None = None,
) -> bytes:
    """A small ArchiveTransfer; ``units`` is the DescriptiveMetadata content."""
    ns = namespace or NS[version]
    if units is None:
        units = (
            '<ArchiveUnit id="AU1"><Content><DescriptionLevel>Item</DescriptionLevel>'
            "<Title>Délibération</Title></Content>"
            "<DataObjectReference><DataObjectGroupReferenceId>G1</DataObjectGroupReferenceId>"
            "</DataObjectReference></ArchiveUnit>"
        )
        if not objects:
            objects = (
                '<DataObjectGroup id="G1"><BinaryDataObject id="BDO1">'
                "<DataObjectVersion>BinaryMaster_1</DataObjectVersion>"
                "<Uri>Content/a.pdf</Uri>"
                '<MessageDigest algorithm="SHA-512">abcd</MessageDigest>'
                "<Size>4</Size></BinaryDataObject></DataObjectGroup>"
            )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<{root} xmlns="{ns}">
  <Comment>test</Comment>
  <Date>2024-01-02T03:04:05</Date>
  <MessageIdentifier>SIP-1</MessageIdentifier>
  <ArchivalAgreement>AGR-1</ArchivalAgreement>
  <CodeListVersions/>
  <DataObjectPackage>
    {objects}
    <DescriptiveMetadata>{units}</DescriptiveMetadata>
    <ManagementMetadata>
      <OriginatingAgencyIdentifier>PRODUCER</OriginatingAgencyIdentifier>
      {management}
    </ManagementMetadata>
  </DataObjectPackage>
  <ArchivalAgency><Identifier>ARCHIVES</Identifier></ArchivalAgency>
  <TransferringAgency><Identifier>SERVICE</Identifier></TransferringAgency>
</{root}>""".encode()
