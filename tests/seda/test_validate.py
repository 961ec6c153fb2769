"""Validation layers: root and version, XSD, the rules the XSD cannot express, tolerances."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from lxml import etree

import seda

from .helpers import NS, Sample, manifest


def codes(report: seda.TransferReport) -> list[str]:
    return [f.code for f in report.errors]


@pytest.mark.parametrize("version", ["2.1", "2.2", "2.3"])
def test_minimal_manifest_is_valid(version: str, xsd_dir: Path) -> None:
    report = seda.validate_transfer(manifest(version), xsd_dir=xsd_dir)
    assert report.ok, report.errors
    assert report.version == version
    assert report.transfer is not None
    unit = report.transfer.package.archive_units[0]
    assert unit.title == "Délibération"
    assert unit.data_object_group_id == "G1"


def test_unknown_namespace_is_unsupported_version() -> None:
    data = manifest(namespace="fr:gouv:culture:archivesdefrance:seda:v9.99")
    report = seda.validate_transfer(data)
    assert codes(report) == ["seda.unsupported_version"]
    assert report.version is None


def test_foreign_namespace_is_not_seda() -> None:
    report = seda.validate_transfer(b'<ArchiveTransfer xmlns="urn:other"/>')
    assert codes(report) == ["seda.not_seda"]


def test_other_message_is_unexpected_root() -> None:
    report = seda.validate_transfer(manifest(root="ArchiveTransferReply"))
    assert codes(report) == ["seda.unexpected_root"]


def test_abstract_global_element_is_refused_as_root(validator: seda.XsdValidator) -> None:
    root = seda.safe_parse(f'<OtherManagementAbstract xmlns="{NS["2.2"]}"/>'.encode())
    faults = validator.validate(root, "2.2")
    assert [f.code for f in faults] == ["seda.unexpected_root"]
    with pytest.raises(seda.UnexpectedMessage):
        seda.read_transfer(etree.tostring(root))


def test_xsd_faults_have_a_location(xsd_dir: Path) -> None:
    data = manifest(units='<ArchiveUnit id="AU1"><Content><Bogus/></Content></ArchiveUnit>')
    report = seda.validate_transfer(data, xsd_dir=xsd_dir)
    fault = next(f for f in report.errors if f.code == "xsd.invalid")
    assert "Bogus" in fault.message
    assert fault.where
    assert "line" in fault.where


def test_missing_schema_folder_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(seda.SchemaUnavailable):
        seda.validate_transfer(manifest(), xsd_dir=tmp_path / "nowhere")
    with pytest.raises(seda.SchemaUnavailable):
        seda.XsdValidator(tmp_path).schema("2.2")


UNIT = (
    '<ArchiveUnit id="{id}"><Content><Title>{id}</Title>{dates}</Content>{children}</ArchiveUnit>'
)


def unit(unit_id: str, children: str = "", dates: str = "") -> str:
    return UNIT.format(id=unit_id, children=children, dates=dates)


def ref(ref_id: str, target: str) -> str:
    return f'<ArchiveUnit id="{ref_id}"><ArchiveUnitRefId>{target}</ArchiveUnitRefId></ArchiveUnit>'


@pytest.mark.parametrize(
    ("units", "code"),
    [
        (unit("A", ref("R1", "NOPE")), "seda.unresolved_unit_reference"),
        (unit("A", ref("R1", "B")) + unit("B", ref("R2", "A")), "seda.unit_cycle"),
        (unit("A", ref("R1", "A")), "seda.unit_cycle"),
        (unit("A") + unit("A"), "seda.duplicate_id"),
        (
            unit(
                "A",
                "<DataObjectReference><DataObjectGroupReferenceId>ZZ</DataObjectGroupReferenceId>"
                "</DataObjectReference>",
            ),
            "seda.unresolved_group_reference",
        ),
        (
            unit(
                "A",
                "<DataObjectReference><DataObjectReferenceId>ZZ</DataObjectReferenceId>"
                "</DataObjectReference>",
            ),
            "seda.unresolved_object_reference",
        ),
        (
            unit(
                "A",
                "<DataObjectReference><DataObjectGroupReferenceId></DataObjectGroupReferenceId>"
                "</DataObjectReference>",
            ),
            "seda.empty_reference",
        ),
        (
            unit("A", dates="<StartDate>2020-01-01</StartDate><EndDate>2019-12-31</EndDate>"),
            "seda.date_order",
        ),
        ('<ArchiveUnit id="A"><Management/></ArchiveUnit>', "seda.unit_without_content"),
    ],
)
def test_structural_rules(units: str, code: str) -> None:
    report = seda.validate_transfer(manifest("2.2", units=units))
    assert code in codes(report), report.errors
    fault = next(f for f in report.errors if f.code == code)
    assert fault.where


def test_dates_of_different_precision_are_compared_on_what_they_share() -> None:
    dates = "<StartDate>2020</StartDate><EndDate>2020-06-01T10:00:00</EndDate>"
    assert seda.validate_transfer(manifest("2.2", units=unit("A", dates=dates))).ok


def test_long_reference_chain_has_no_recursion_limit() -> None:
    count = 3000
    units = "".join(unit(f"U{i}", ref(f"R{i}", f"U{i + 1}")) for i in range(count)) + unit(
        f"U{count}"
    )
    report = seda.validate_transfer(manifest("2.2", units=units))
    assert report.ok, report.errors[:3]
    looped = units.replace(unit(f"U{count}"), unit(f"U{count}", ref("RX", "U0")))
    assert "seda.unit_cycle" in codes(seda.validate_transfer(manifest("2.2", units=looped)))


@pytest.mark.parametrize(
    ("digest", "code"),
    [
        ("", "seda.missing_digest"),
        ('<MessageDigest algorithm="SHA-512"></MessageDigest>', "seda.empty_digest"),
    ],
)
def test_digest_rules(digest: str, code: str) -> None:
    objects = (
        f'<BinaryDataObject id="B1"><DataObjectGroupId>G1</DataObjectGroupId>'
        f"<Uri>Content/a</Uri>{digest}</BinaryDataObject>"
    )
    units = unit(
        "A",
        "<DataObjectReference><DataObjectGroupReferenceId>G1"
        "</DataObjectGroupReferenceId></DataObjectReference>",
    )
    report = seda.validate_transfer(manifest("2.1", units=units, objects=objects))
    assert code in codes(report)


HOLD = "<HoldRule><Rule>HOL-1</Rule><StartDate>2020-01-01</StartDate></HoldRule>"


def test_hold_rule_refused_in_2_1_without_xsd() -> None:
    data = manifest("2.1", management=HOLD)
    assert codes(seda.validate_transfer(data)) == ["seda.rule_not_in_version"]
    report = seda.validate_transfer(data, tolerances={"hold-rule-in-2.1"})
    assert report.ok
    assert [w.code for w in report.warnings] == ["seda.tolerated"]
    assert report.transfer is not None
    assert "HoldRule" in report.transfer.package.management_metadata.management.rules
    assert seda.validate_transfer(manifest("2.2", management=HOLD)).ok


def test_hold_end_date_before_start_date() -> None:
    hold = (
        "<HoldRule><Rule>HOL-1</Rule><StartDate>2020-01-01</StartDate>"
        "<HoldEndDate>2019-01-01</HoldEndDate></HoldRule>"
    )
    assert "seda.date_order" in codes(seda.validate_transfer(manifest("2.2", management=hold)))


def test_bad_typed_values_are_faults_not_exceptions() -> None:
    data = manifest("2.2").replace(b"<Size>4</Size>", b"<Size>four</Size>")
    report = seda.validate_transfer(data)
    assert codes(report) == ["seda.bad_value"]
    assert report.transfer is not None  # still readable: a KO reply needs its identifier
    assert report.transfer.message_identifier == "SIP-1"
    with pytest.raises(seda.StructureInvalid) as caught:
        seda.read_transfer(data)
    assert caught.value.code == "seda.bad_value"


def test_missing_header_values() -> None:
    data = manifest("2.2").replace(b"<MessageIdentifier>SIP-1</MessageIdentifier>", b"")
    report = seda.validate_transfer(data)
    assert codes(report) == ["seda.missing_value"]
    assert "MessageIdentifier" in report.errors[0].message


def test_unknown_tolerance_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown tolerance"):
        seda.validate_transfer(manifest(), tolerances={"anything-goes"})


VITAM_EXTENSION_SAMPLES = {
    # sample file: (tolerance needed, the element the schema fault names)
    "seda2.1-itests-SIP_OK_HoldRules_ManagementMetadata.zip": ("hold-rule-in-2.1", "HoldRule"),
    "seda2.2-vitam-OK_SEDA_2.2_SigningInformationAsExtension.zip": (
        "seda-2.3-elements-in-2.2",
        "SigningInformation",
    ),
    "seda2.2-vitam-holding_manifest.xml": ("vitam-content-extensions", "AgentGroup"),
    "seda2.3-vitamdoc-cookbook7_SigningInformation_champs_libres_SIP.zip": (
        "signing-information-extended",
        "Extended",
    ),
    "seda2.3-vitam-TEST_ELIMINATION_V2.zip": ("signing-information-extended", "Extended"),
}


@pytest.mark.parametrize("name", sorted(VITAM_EXTENSION_SAMPLES))
def test_tolerances_on_vitam_samples(name: str, index: list[Sample], xsd_dir: Path) -> None:
    sample = next(s for s in index if s.name == name)
    data = sample.manifest()
    assert data is not None
    _, element = VITAM_EXTENSION_SAMPLES[name]
    strict = seda.validate_transfer(data, xsd_dir=xsd_dir)
    assert not strict.ok
    assert any(f.code == "xsd.invalid" and element in f.message for f in strict.errors)
    tolerant = seda.validate_transfer(data, xsd_dir=xsd_dir, tolerances=seda.TOLERANCES.keys())
    assert tolerant.ok, tolerant.errors
    assert tolerant.warnings
    assert all(w.code == "seda.tolerated" for w in tolerant.warnings)
    assert any(element in w.message for w in tolerant.warnings)


def test_tolerance_does_not_hide_other_errors(index: list[Sample], xsd_dir: Path) -> None:
    sample = next(s for s in index if s.name == "seda2.3-vitam-KO_SEDA_2.3_Signature.zip")
    data = sample.manifest()
    assert data is not None
    report = seda.validate_transfer(data, xsd_dir=xsd_dir, tolerances=seda.TOLERANCES.keys())
    assert not report.ok


def test_thousand_units_in_well_under_a_second(xsd_dir: Path) -> None:
    units = "".join(unit(f"U{i}", dates="<StartDate>2020-01-01</StartDate>") for i in range(1000))
    data = manifest("2.2", units=units)
    seda.XsdValidator(xsd_dir).schema("2.2")  # compile once, as a long-running service does
    start = time.perf_counter()
    transfer = seda.read_transfer(data)
    read = time.perf_counter() - start
    report = seda.validate_transfer(data, xsd_dir=xsd_dir)
    total = time.perf_counter() - start
    assert len(transfer.package.archive_units) == 1000
    assert report.ok
    # Generous bounds, best of three: they catch a quadratic regression (seconds, not tenths)
    # without failing on a loaded machine. The figure itself is measured in bench/.
    for _ in range(2):
        start = time.perf_counter()
        seda.read_transfer(data)
        read = min(read, time.perf_counter() - start)
    assert read < 1.0, read
    assert total < 3.0, total
