"""SEDA 1.0 (Pastell): read into the 2.1 model, replies valid against the official 1.0 XSD,
attachments read with the hostile-archive guards."""

from __future__ import annotations

import io
import tarfile
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

import seda
from tests.pastell.samples import hostile, seda10, targz

PDF = b"%PDF-1.4 acte"
NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def test_a_pastell_seda_1_0_transfer_maps_to_a_valid_2_1_manifest() -> None:
    read = seda.read_transfer_v10(seda10("TR-1", "COMMUNE-1", {"acte.pdf": PDF}))
    transfer = read.transfer
    assert transfer.message_identifier == "TR-1"
    assert transfer.transferring_agency_identifier == "COMMUNE-1"
    assert transfer.archival_agency_identifier == "FRAD035"
    package = transfer.package
    assert package.top_unit_ids() == read.archive_unit_ids
    assert len(read.archive_unit_ids) == 1
    root = package.unit(read.archive_unit_ids[0])
    assert root is not None
    assert root.title.startswith("Délibération 2026-042")
    assert root.management.rules["AccessRule"].rules[0].rule_id == "AR038"
    assert root.management.rules["AppraisalRule"].final_action == "Keep"
    assert read.appraisal_durations == {root.id: "P10Y"}
    assert root.start_date == "2026-11-25"
    assert root.end_date == "2026-11-28"
    (bdo,) = package.binary_data_objects
    assert (bdo.uri, bdo.digest_algorithm, bdo.size) == ("acte.pdf", "SHA-256", len(PDF))
    manifest = seda.write_archive_transfer(transfer)
    report = seda.validate_transfer(manifest, xsd_dir=seda.BUNDLED_XSD_DIR)
    assert report.ok, report.errors


def test_an_invalid_1_0_bordereau_is_refused_by_the_official_xsd() -> None:
    data = seda10("TR-1", "COMMUNE-1", {"a.pdf": PDF}).replace(b"<Name>Acte", b"<Nom>Acte")
    data = data.replace(b"annexes</Name>", b"annexes</Nom>")
    with pytest.raises(seda.SchemaInvalid) as caught:
        seda.read_transfer_v10(data)
    assert any("Nom" in f.message for f in caught.value.faults)
    with pytest.raises(seda.UnexpectedMessage):
        seda.read_transfer_v10(b'<ArchiveTransfer xmlns="urn:other"/>')


def test_acknowledgement_and_replies_are_valid_seda_1_0_as_pastell_reads_them() -> None:
    bordereau = seda10("TR-1", "COMMUNE-1", {"acte.pdf": PDF})
    ack = seda.safe_parse(
        seda.write_acknowledgement_v10(
            identifier="ACK-1",
            date=NOW,
            received_identifier="TR-1",
            receiver="COMMUNE-1",
            sender="FRAD035",
        )
    )
    ns = {"s": seda.SEDA10_NAMESPACE}
    assert ack.tag == f"{{{seda.SEDA10_NAMESPACE}}}Acknowledgement"
    assert ack.prefix is None
    assert ack.xpath("s:MessageReceivedIdentifier/text()", namespaces=ns) == ["TR-1"]
    assert seda.validate_v10(ack) == []
    accepted = seda.safe_parse(
        seda.write_archive_transfer_reply_v10(
            bordereau=bordereau,
            identifier="ATR-1",
            date=NOW,
            reply_code="000",
            archival_identifiers={0: "SAE-UNIT-1"},
            grant_date=NOW,
        )
    )
    assert seda.validate_v10(accepted) == []
    assert accepted.xpath("s:ReplyCode/text()", namespaces=ns) == ["000"]
    assert accepted.xpath("s:TransferReplyIdentifier/text()", namespaces=ns) == ["ATR-1"]
    assert accepted.xpath("s:Archive/s:ArchivalAgencyArchiveIdentifier/text()", namespaces=ns) == [
        "SAE-UNIT-1"
    ]
    refused = seda.safe_parse(
        seda.write_archive_transfer_reply_v10(
            bordereau=bordereau, identifier="ATR-2", date=NOW, reply_code="200", comments=["non"]
        )
    )
    assert seda.validate_v10(refused) == []
    assert refused.xpath("s:Comment/text()", namespaces=ns) == ["non"]
    assert refused.xpath("s:Archive", namespaces=ns) == []


def _write(tmp_path: Path, data: bytes, name: str = "archive_0") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_attachments_are_told_apart_by_their_magic_bytes(tmp_path: Path) -> None:
    limits = seda.AttachmentLimits()
    tgz = _write(tmp_path, targz({"acte.pdf": PDF, "annexes/a.pdf": b"x"}), "1a.yml_sae_archive_0")
    assert seda.attachments_format(tgz) == "tar.gz"
    assert [(n, s.read()) for n, s in seda.iter_attachments(tgz, limits)] == [
        ("acte.pdf", PDF),
        ("annexes/a.pdf", b"x"),
    ]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("acte.pdf", PDF)
    zipped = _write(tmp_path, out.getvalue(), "archive.tar.gz")  # a misleading name
    assert seda.attachments_format(zipped) == "zip"
    assert [(n, s.read()) for n, s in seda.iter_attachments(zipped, limits)] == [("acte.pdf", PDF)]
    other = _write(tmp_path, b"not an archive at all")
    with pytest.raises(seda.StructureInvalid) as caught:
        list(seda.iter_attachments(other, limits))
    assert caught.value.code == "attachments.unknown_format"


def _read_all(path: Path) -> None:
    for _name, stream in seda.iter_attachments(path, seda.AttachmentLimits()):
        stream.read()


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        ("traversal", "attachments.unsafe_path"),
        ("absolute", "attachments.unsafe_path"),
        ("symlink", "attachments.unsafe_entry"),
        ("hardlink", "attachments.unsafe_entry"),
        ("device", "attachments.unsafe_entry"),
    ],
)
def test_hostile_tar_members_are_refused(tmp_path: Path, kind: str, code: str) -> None:
    path = _write(tmp_path, targz({"acte.pdf": PDF}, extra=[hostile(kind)]))
    with pytest.raises(seda.StructureInvalid) as caught:
        _read_all(path)
    assert caught.value.code == code


def test_a_gzip_bomb_is_stopped_by_the_caps_on_what_is_read(tmp_path: Path) -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        info = tarfile.TarInfo("big.bin")
        info.size = 50 * 1024 * 1024
        archive.addfile(info, io.BytesIO(bytes(info.size)))
    path = _write(tmp_path, out.getvalue())
    assert path.stat().st_size < 1024 * 1024
    limits = seda.AttachmentLimits(max_total_bytes=10 * 1024 * 1024)
    with pytest.raises(seda.StructureInvalid) as caught:
        list(seda.iter_attachments(path, limits))
    assert caught.value.code == "attachments.too_large"
    limits = seda.AttachmentLimits(max_members=1)
    two = _write(tmp_path, targz({"a": b"1", "b": b"2"}))
    with pytest.raises(seda.StructureInvalid) as caught:
        list(seda.iter_attachments(two, limits))
    assert caught.value.code == "attachments.too_many"
