"""Transfers as Pastell sends them: a bordereau (SEDA 1.0, 2.1 or 2.2) and a tar.gz of its files."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

HERE = Path(__file__).parent

_DOCUMENT_10 = """      <Document>
        <Attachment format="fmt/18" mimeCode="application/pdf" filename="{name}"/>
        <Description>{name}</Description>
        <Integrity algorithme="http://www.w3.org/2001/04/xmlenc#sha256">{digest}</Integrity>
        <Size unitCode="2P">{size}</Size>
        <Type listVersionID="edition 2009">CDO</Type>
      </Document>"""


def seda10(transfer_id: str, agency: str, files: dict[str, bytes]) -> bytes:
    """A SEDA 1.0 bordereau shaped like Pastell's seda-ng ones (access code AR038, appraisal
    ``conserver`` for ``P10Y``, SHA-256 by its xmlenc URI)."""
    template = (HERE / "seda10_actes.xml").read_text(encoding="utf-8")
    documents = "\n".join(
        _DOCUMENT_10.format(name=name, digest=hashlib.sha256(data).hexdigest(), size=len(data))
        for name, data in files.items()
    )
    return (
        template.replace("{TRANSFER_ID}", transfer_id)
        .replace("{AGENCY}", agency)
        .replace("{DOCUMENTS}", documents)
        .encode()
    )


def seda2(version: str, transfer_id: str, agency: str, files: dict[str, bytes]) -> bytes:
    """A SEDA 2.1/2.2 bordereau as Pastell's SEDA generator writes it (one top unit, one unit
    per file, digests named by xmlenc URI)."""
    objects = "".join(
        f'<DataObjectGroup id="G{i}"><BinaryDataObject id="B{i}">'
        "<DataObjectVersion>BinaryMaster_1</DataObjectVersion>"
        f"<Uri>{name}</Uri>"
        '<MessageDigest algorithm="http://www.w3.org/2001/04/xmlenc#sha256">'
        f"{hashlib.sha256(data).hexdigest()}</MessageDigest>"
        f"<Size>{len(data)}</Size>"
        f"<FileInfo><Filename>{name.rsplit('/', 1)[-1]}</Filename></FileInfo>"
        "</BinaryDataObject></DataObjectGroup>"
        for i, (name, data) in enumerate(files.items())
    )
    children = "".join(
        f'<ArchiveUnit id="U{i}"><Content><DescriptionLevel>Item</DescriptionLevel>'
        f"<Title>{name}</Title></Content>"
        f"<DataObjectReference><DataObjectGroupReferenceId>G{i}</DataObjectGroupReferenceId>"
        "</DataObjectReference></ArchiveUnit>"
        for i, name in enumerate(files)
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<ArchiveTransfer xmlns="fr:gouv:culture:archivesdefrance:seda:v{version}">
  <Comment>Versement Pastell</Comment>
  <Date>2026-11-30T10:12:44+01:00</Date>
  <MessageIdentifier>{transfer_id}</MessageIdentifier>
  <CodeListVersions/>
  <DataObjectPackage>
    {objects}
    <DescriptiveMetadata>
      <ArchiveUnit id="ROOT"><Content><DescriptionLevel>File</DescriptionLevel>
        <Title>Délibération 2026-042</Title></Content>{children}</ArchiveUnit>
    </DescriptiveMetadata>
    <ManagementMetadata>
      <OriginatingAgencyIdentifier>{agency}</OriginatingAgencyIdentifier>
    </ManagementMetadata>
  </DataObjectPackage>
  <ArchivalAgency><Identifier>FRAD035</Identifier></ArchivalAgency>
  <TransferringAgency><Identifier>{agency}</Identifier></TransferringAgency>
</ArchiveTransfer>
""".encode()


def bordereau(version: str, transfer_id: str, agency: str, files: dict[str, bytes]) -> bytes:
    if version == "1.0":
        return seda10(transfer_id, agency, files)
    return seda2(version, transfer_id, agency, files)


def targz(files: dict[str, bytes], *, extra: list[tarfile.TarInfo] | None = None) -> bytes:
    """A tar.gz as Pastell builds it (``tar -czf``), optionally with hostile members."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for info in extra or []:
            archive.addfile(info)
    return out.getvalue()


def hostile(kind: str) -> tarfile.TarInfo:
    """A tar member that must be refused: ``traversal``, ``symlink``, ``hardlink``, ``device``,
    ``absolute``."""
    if kind == "traversal":
        info = tarfile.TarInfo("../../etc/evil.pdf")
    elif kind == "absolute":
        info = tarfile.TarInfo("/etc/evil.pdf")
    elif kind == "symlink":
        info = tarfile.TarInfo("link.pdf")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
    elif kind == "hardlink":
        info = tarfile.TarInfo("hard.pdf")
        info.type, info.linkname = tarfile.LNKTYPE, "acte.pdf"
    elif kind == "device":
        info = tarfile.TarInfo("dev.pdf")
        info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
    else:
        raise ValueError(kind)
    return info
