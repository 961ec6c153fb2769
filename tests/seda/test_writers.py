"""Every message type written, in 2.1, 2.2 and 2.3, validated against the official XSD."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from lxml import etree

import seda
from seda._reader import canonical_bytes

from .helpers import Sample, manifest

WHEN = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
VERSIONS = ["2.1", "2.2", "2.3"]


def valid(data: bytes, xsd_dir: Path, root: str) -> None:
    assert seda.validate_message(data, xsd_dir, expected=root) == []


def rich_transfer(version: str) -> seda.ArchiveTransfer:
    """A transfer using most of what the model can carry."""
    appraisal = seda.RuleCategory(
        category="AppraisalRule",
        final_action="Destroy",
        rules=[seda.RuleRef(rule_id="APP-10Y", start_date=date(2020, 1, 1))],
    )
    access = seda.RuleCategory(category="AccessRule", ref_non_rule_ids=["ACC-00001"])
    storage = seda.RuleCategory(
        category="StorageRule", final_action="Copy", prevent_inheritance=True
    )
    classification = seda.RuleCategory(
        category="ClassificationRule",
        classification_level="Secret",
        classification_owner="Mairie",
        classification_audience="interne",
        classification_reassessing_date=date(2030, 1, 1),
        need_reassessing_authorization=True,
        rules=[seda.RuleRef(rule_id="CLASS-1")],
    )
    hold = seda.RuleCategory(
        category="HoldRule",
        rules=[
            seda.RuleRef(
                rule_id="HOL-1",
                start_date=date(2024, 1, 1),
                hold_end_date=date(2025, 1, 1),
                hold_owner="Greffe",
                hold_reason="Contentieux",
                prevent_rearrangement=True,
            )
        ],
    )
    rules = {
        "AppraisalRule": appraisal,
        "AccessRule": access,
        "StorageRule": storage,
        "ClassificationRule": classification,
    }
    if version != "2.1":
        rules["HoldRule"] = hold
    root = seda.ArchiveUnit(
        id="AU1",
        title="Conseil municipal",
        description="Délibérations 2020",
        description_level="File",
        start_date="2020-01-01",
        end_date="2020-12-31",
        file_plan_positions=["1.2"],
        originating_system_ids=["GED-42"],
        custodial_history=["Versé par le greffe"],
        languages=["fr"],
        tags=["conseil"],
        keywords=[seda.Keyword(content="Budget", type="subject")],
        originating_agency_identifier="MAIRIE",
        child_unit_ids=["AU2", "AU3"],
        reference_ids=["REF1"],
        management=seda.Management(rules=rules, need_authorization=False),
        date_litteral="année 2020" if version != "2.1" else None,
    )
    child = seda.ArchiveUnit(
        id="AU2",
        title="Séance du 3 mars",
        description_level="Item",
        parent_id="AU1",
        data_object_group_id="G1",
        data_object_group_reference_ids=["G1"],
    )
    shared = seda.ArchiveUnit(
        id="AU3",
        title="Annexe partagée",
        description_level="Item",
        data_object_ids=["P1"],
        data_object_group_id="G2",
    )
    binary = seda.BinaryDataObject(
        id="B1",
        group_id="G1",
        uri="Content/seance.pdf",
        message_digest="ab" * 64,
        digest_algorithm="SHA-512",
        size=1234,
        data_object_version="BinaryMaster_1",
        format=seda.FormatIdentification(
            format_litteral="PDF/A", mime_type="application/pdf", format_id="fmt/354"
        ),
        file_info=seda.FileInfo(filename="séance.pdf", last_modified="2020-03-03T10:00:00"),
    )
    physical = seda.PhysicalDataObject(
        id="P1", group_id="G2", physical_id="BOX-7", data_object_version="PhysicalMaster_1"
    )
    package = seda.DataObjectPackage(
        binary_data_objects=[binary],
        physical_data_objects=[physical],
        data_object_groups=[
            seda.DataObjectGroup(id="G1", object_ids=["B1"]),
            seda.DataObjectGroup(id="G2", object_ids=["P1"], declared=False),
        ],
        archive_units=[root, child, shared],
        root_unit_ids=["AU1", "AU3"],
        unit_references=[seda.ArchiveUnitReference(id="REF1", target_id="AU3", parent_id="AU1")],
        management_metadata=seda.ManagementMetadata(
            archival_profile="PROFIL-DELIB",
            acquisition_information="Versement",
            legal_status="Public Archive",
            originating_agency_identifier="MAIRIE",
            submission_agency_identifier="GREFFE",
            management=seda.Management(rules={"AppraisalRule": appraisal}),
        ),
    )
    return seda.ArchiveTransfer(
        version=seda.SedaVersion(version),
        message_identifier="OUT-1",
        date=WHEN,
        comments=["Transfert sortant"],
        archival_agreement="CONV-AD",
        archival_agency_identifier="AD-XX",
        transferring_agency_identifier="MAIRIE",
        code_list_versions={"ReplyCodeListVersion": "R1", "HoldRuleCodeListVersion": "H1"},
        related_transfer_references=["OLD-1"],
        package=package,
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_outgoing_transfer_is_valid_and_round_trips(version: str, xsd_dir: Path) -> None:
    transfer = rich_transfer(version)
    data = seda.write_archive_transfer(transfer)
    valid(data, xsd_dir, "ArchiveTransfer")
    report = seda.validate_transfer(data, xsd_dir=xsd_dir)
    assert report.ok, report.errors
    back = report.transfer
    assert back is not None
    expected_codes = {
        k: v
        for k, v in transfer.code_list_versions.items()
        if version != "2.1" or k != "HoldRuleCodeListVersion"
    }
    assert back.code_list_versions == expected_codes
    units = {u.id: u for u in back.package.archive_units}
    for unit in transfer.package.archive_units:
        assert dataclasses.replace(units[unit.id], content_xml=b"") == unit
    assert (
        dataclasses.replace(
            back, package=transfer.package, code_list_versions=transfer.code_list_versions
        )
        == transfer
    )
    assert back.package.data_object_groups == transfer.package.data_object_groups
    assert back.package.binary_data_objects == transfer.package.binary_data_objects
    assert back.package.physical_data_objects == transfer.package.physical_data_objects
    assert back.package.management_metadata == transfer.package.management_metadata
    assert back.package.unit_references == transfer.package.unit_references
    assert back.package.top_unit_ids() == ["AU1"]


def test_hold_rule_cannot_be_written_in_2_1() -> None:
    transfer = dataclasses.replace(rich_transfer("2.2"), version=seda.SedaVersion.V2_1)
    with pytest.raises(seda.WriteError, match="HoldRule"):
        seda.write_archive_transfer(transfer)


def test_missing_final_action_is_refused() -> None:
    transfer = rich_transfer("2.2")
    unit = dataclasses.replace(
        transfer.package.archive_units[1],
        management=seda.Management(
            rules={"AppraisalRule": seda.RuleCategory(category="AppraisalRule")}
        ),
    )
    package = dataclasses.replace(
        transfer.package,
        archive_units=[transfer.package.archive_units[0], unit, transfer.package.archive_units[2]],
    )
    with pytest.raises(seda.WriteError) as caught:
        seda.write_archive_transfer(dataclasses.replace(transfer, package=package))
    assert "FinalAction" in caught.value.faults[0].message


@pytest.mark.parametrize("version", VERSIONS)
def test_verbatim_content_survives_and_changes_namespace(version: str, xsd_dir: Path) -> None:
    source = seda.read_transfer(manifest("2.2"))
    out = seda.write_archive_transfer(
        dataclasses.replace(source, version=seda.SedaVersion(version))
    )
    valid(out, xsd_dir, "ArchiveTransfer")
    again = seda.read_transfer(out)
    unit = again.package.archive_units[0]
    assert unit.title == "Délibération"
    assert f"seda:v{version}".encode() in unit.content_xml
    assert seda.write_archive_transfer(again) == out


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("reply_code", ["OK", "KO"])
def test_delivery_request_reply(version: str, reply_code: str, xsd_dir: Path) -> None:
    transfer = rich_transfer(version)
    reply = seda.ArchiveDeliveryRequestReply(
        version=seda.SedaVersion(version),
        message_identifier="DIP-1",
        date=WHEN,
        message_request_identifier="REQ-1",
        archival_agency_identifier="ARCHIVES",
        requester_identifier="CITOYEN-1",
        unit_identifiers=["AU1", "AU2"],
        reply_code=reply_code,
        authorization_request_reply_identifier="DEROG-1",
        events=[
            seda.ReplyEvent(
                type="access.refused", outcome="KO", detail="not yet communicable", where="AU1"
            )
        ]
        if reply_code == "KO"
        else [],
        package=transfer.package if reply_code == "OK" else None,
    )
    data = seda.write_archive_delivery_request_reply(reply)
    valid(data, xsd_dir, "ArchiveDeliveryRequestReply")


def test_delivery_reply_returns_the_content_unchanged(index: list[Sample], xsd_dir: Path) -> None:
    sample = next(s for s in index if s.name == "seda2.3-vitam-WARNING_SIP_mail_Seda2.3.zip")
    data = sample.manifest()
    assert data is not None
    transfer = seda.read_transfer(data)
    reply = seda.ArchiveDeliveryRequestReply(
        version=transfer.version,
        message_identifier="DIP-2",
        date=WHEN,
        message_request_identifier="REQ-2",
        archival_agency_identifier="ARCHIVES",
        requester_identifier="AGENT",
        unit_identifiers=[u.id for u in transfer.package.archive_units],
        package=transfer.package,
    )
    out = seda.write_archive_delivery_request_reply(reply)
    valid(out, xsd_dir, "ArchiveDeliveryRequestReply")
    root = seda.safe_parse(out)
    namespace = {"s": transfer.version.namespace}
    contents = root.xpath("//s:ArchiveUnit/s:Content", namespaces=namespace)
    assert isinstance(contents, list)
    written = [canonical_bytes(c) for c in contents if isinstance(c, etree._Element)]
    assert written == [u.content_xml for u in transfer.package.archive_units]


@pytest.mark.parametrize("version", VERSIONS)
def test_destruction_notification(version: str, xsd_dir: Path) -> None:
    notification = seda.ArchiveDestructionNotification(
        version=seda.SedaVersion(version),
        message_identifier="ELIM-1",
        date=WHEN,
        authorization_request_reply_identifier="VISA-AD-2024-12",
        unit_identifiers=["sae-unit-1", "sae-unit-2"],
        archival_agency_identifier="ARCHIVES",
        originating_agency_identifier="MAIRIE",
        comments=["Liste d'élimination 2024-3"],
    )
    valid(
        seda.write_archive_destruction_notification(notification),
        xsd_dir,
        "ArchiveDestructionNotification",
    )
    with pytest.raises(seda.WriteError):
        seda.write_archive_destruction_notification(
            dataclasses.replace(notification, unit_identifiers=[])
        )


@pytest.mark.parametrize("version", VERSIONS)
def test_acknowledgement(version: str, xsd_dir: Path) -> None:
    acknowledgement = seda.Acknowledgement(
        version=seda.SedaVersion(version),
        message_identifier="ACK-1",
        date=WHEN,
        message_received_identifier="SIP-1",
        sender_identifier="ARCHIVES",
        receiver_identifier="MAIRIE",
    )
    valid(seda.write_acknowledgement(acknowledgement), xsd_dir, "Acknowledgement")


def test_models_accept_version_strings_and_refuse_unknown_ones() -> None:
    ack = seda.Acknowledgement(
        version="2.3",
        message_identifier="A",
        date=WHEN,  # type: ignore[arg-type]
        message_received_identifier="B",
        sender_identifier="C",
        receiver_identifier="D",
    )
    assert ack.version is seda.SedaVersion.V2_3
    with pytest.raises(ValueError, match="9.99"):
        dataclasses.replace(ack, version="9.99")  # type: ignore[arg-type]
