"""ArchiveTransferReply: OK and KO, in 2.1, 2.2 and 2.3, valid against the official XSD."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import pytest

import seda

from .helpers import Sample, manifest

WHEN = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
VERSIONS = ["2.1", "2.2", "2.3"]


def ok_reply(version: str) -> seda.ArchiveTransferReply:
    transfer = seda.read_transfer(manifest(version))
    package = transfer.package
    return seda.ArchiveTransferReply(
        version=seda.SedaVersion(version),
        message_identifier="ATR-0001",
        date=WHEN,
        message_request_identifier=transfer.message_identifier,
        reply_code="OK",
        grant_date=WHEN,
        archival_agency_identifier=transfer.archival_agency_identifier,
        transferring_agency_identifier=transfer.transferring_agency_identifier,
        archival_agreement=transfer.archival_agreement,
        code_list_versions={"ReplyCodeListVersion": "SAE-1", "HoldRuleCodeListVersion": "x"},
        units=[
            seda.ReplyUnit(sip_id=u.id, system_id=f"sae-unit-{i}", title=u.title)
            for i, u in enumerate(package.archive_units)
        ],
        objects=[
            seda.ReplyObject(
                sip_id=o.id,
                group_sip_id=o.group_id,
                system_id="sae-obj-1",
                group_system_id="sae-group-1",
                kind="binary",
                data_object_version=o.data_object_version,
                message_digest="ab" * 64,
                digest_algorithm="SHA-512",
                size=o.size,
            )
            for o in package.binary_data_objects
        ]
        + [seda.ReplyObject(sip_id="P1", kind="physical", system_id="sae-obj-2")],
        events=[seda.ReplyEvent(type="ingest.accepted", outcome="OK", detail="1 unit")],
    )


def ko_reply(version: str, faults: list[seda.Fault]) -> seda.ArchiveTransferReply:
    return seda.ArchiveTransferReply(
        version=seda.SedaVersion(version),
        message_identifier="ATR-0002",
        date=WHEN,
        message_request_identifier="SIP-1",
        reply_code="KO",
        archival_agency_identifier="ARCHIVES",
        transferring_agency_identifier="SERVICE",
        events=[seda.ReplyEvent.from_fault(f, date=WHEN) for f in faults],
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_ok_reply_is_valid_and_lists_what_was_archived(version: str, xsd_dir: Path) -> None:
    data = seda.write_archive_transfer_reply(ok_reply(version))
    assert seda.validate_message(data, xsd_dir, expected="ArchiveTransferReply") == []
    back = seda.read_transfer_reply(data)
    assert back.reply_code == "OK"
    assert back.message_request_identifier == "SIP-1"
    assert [(u.sip_id, u.system_id) for u in back.units] == [("AU1", "sae-unit-0")]
    assert {o.sip_id: o.kind for o in back.objects} == {"BDO1": "binary", "P1": "physical"}
    assert back.objects[0].group_sip_id == "G1"
    assert back.objects[0].message_digest == "ab" * 64
    assert ("HoldRuleCodeListVersion" in back.code_list_versions) == (version != "2.1")


@pytest.mark.parametrize("version", VERSIONS)
def test_ko_reply_has_one_event_per_fault(version: str, xsd_dir: Path) -> None:
    report = seda.validate_transfer(
        manifest(
            version,
            units='<ArchiveUnit id="A"><Content/>'
            '<ArchiveUnit id="R"><ArchiveUnitRefId>'
            "NOPE</ArchiveUnitRefId></ArchiveUnit>"
            "</ArchiveUnit><ArchiveUnit id='A'>"
            "<Content/></ArchiveUnit>",
        ),
        xsd_dir=xsd_dir,
    )
    assert not report.ok
    data = seda.write_archive_transfer_reply(ko_reply(version, report.errors))
    assert seda.validate_message(data, xsd_dir, expected="ArchiveTransferReply") == []
    back = seda.read_transfer_reply(data)
    assert back.reply_code == "KO"
    assert [e.type for e in back.events] == [f.code for f in report.errors]
    assert [e.detail for e in back.events] == [" ".join(f.message.split()) for f in report.errors]
    assert all(e.outcome == "KO" for e in back.events)


@pytest.mark.parametrize("version", VERSIONS)
def test_ko_reply_for_unreadable_input(version: str, xsd_dir: Path) -> None:
    report = seda.validate_transfer(b"<ArchiveTransfer><oops></ArchiveTransfer>\x00\x01")
    faults = report.errors + [seda.Fault("x.control", "bad \x00\x01\x1f chars \ud800 & <tags>")]
    data = seda.write_archive_transfer_reply(ko_reply(version, faults))
    assert seda.validate_message(data, xsd_dir, expected="ArchiveTransferReply") == []


def test_required_values_are_enforced() -> None:
    reply = dataclasses.replace(
        ko_reply("2.2", []), message_request_identifier="  ", archival_agency_identifier=""
    )
    with pytest.raises(seda.WriteError) as caught:
        seda.write_archive_transfer_reply(reply)
    assert {f.code for f in caught.value.faults} == {"seda.write_invalid"}
    assert len(caught.value.faults) == 2


def test_ids_must_be_xml_ids() -> None:
    reply = dataclasses.replace(
        ok_reply("2.2"), units=[seda.ReplyUnit(sip_id="1 bad", system_id="x")]
    )
    with pytest.raises(seda.WriteError):
        seda.write_archive_transfer_reply(reply)


def test_vitam_atr_sample_round_trips(index: list[Sample], xsd_dir: Path) -> None:
    sample = next(s for s in index if s.name == "seda2.1-vitam-atr-with-seda-2.1.xml")
    data = sample.manifest()
    assert data is not None
    reply = seda.read_transfer_reply(data)
    again = seda.write_archive_transfer_reply(reply)
    assert seda.validate_message(again, xsd_dir) == []
    assert seda.read_transfer_reply(again) == reply
