"""Every file of shared/seda-samples is read; counts and XSD verdicts match INDEX.csv."""

from __future__ import annotations

from pathlib import Path

import pytest

import seda

from .helpers import Sample, load_index

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "seda-samples"
NAMES = [s.name for s in load_index(SAMPLES)] if (SAMPLES / "INDEX.csv").is_file() else []


@pytest.fixture(params=NAMES or ["(no samples)"])
def sample(request: pytest.FixtureRequest, index: list[Sample]) -> Sample:
    return next(s for s in index if s.name == request.param)


def test_index_lists_every_file(samples_dir: Path, index: list[Sample]) -> None:
    on_disk = {p.name for p in samples_dir.iterdir() if p.suffix in (".zip", ".xml")}
    assert on_disk == {s.name for s in index}


def test_sample_is_read(sample: Sample) -> None:
    data = sample.manifest()
    verdict = sample.row["official_xsd_result"]
    if verdict == "no-manifest":
        assert data is None
        return
    assert data is not None
    if verdict == "not-well-formed":
        with pytest.raises(seda.MalformedXML) as malformed:
            seda.read_transfer(data)
        assert malformed.value.code == "xml.malformed"
        return
    if verdict == "unknown-namespace":
        with pytest.raises(seda.UnsupportedVersion) as caught:
            seda.read_transfer(data)
        assert caught.value.code == "seda.unsupported_version"
        assert "9.99" in caught.value.faults[0].message
        return
    if sample.row["root_element"] == "ArchiveTransferReply":
        reply = seda.read_transfer_reply(data)
        assert reply.version == sample.row["seda_version"]
        assert len(reply.units) == sample.count("archive_units")
        groups = {o.group_sip_id for o in reply.objects if o.group_sip_id}
        assert len(groups) == sample.count("data_object_groups")
        assert sum(o.kind == "binary" for o in reply.objects) == sample.count("binary_data_objects")
        assert sum(o.kind == "physical" for o in reply.objects) == sample.count(
            "physical_data_objects"
        )
        assert reply.reply_code in ("OK", "KO")
        if reply.reply_code == "KO":
            assert reply.events
            assert all(e.outcome == "KO" for e in reply.events)
        else:
            assert all(u.system_id for u in reply.units)
        return
    transfer = seda.read_transfer(data)
    package = transfer.package
    assert transfer.version == sample.row["seda_version"]
    assert transfer.message_identifier
    assert len(package.archive_units) == sample.count("archive_units")
    assert len(package.unit_references) == sample.count("au_references")
    assert len(package.data_object_groups) == sample.count("data_object_groups")
    assert len(package.binary_data_objects) == sample.count("binary_data_objects")
    assert len(package.physical_data_objects) == sample.count("physical_data_objects")
    expected_rules = {r for r in sample.row["rules"].split("|") if r}
    assert package.rule_categories() == expected_rules
    for unit in package.archive_units:
        assert unit.content_xml.startswith(b"<Content")
        assert seda.safe_parse(unit.content_xml).tag.endswith("}Content")


def test_xsd_verdict_matches_index(sample: Sample, xsd_dir: Path) -> None:
    data = sample.manifest()
    verdict = sample.row["official_xsd_result"]
    if data is None:
        assert verdict == "no-manifest"
        return
    faults = seda.validate_message(data, xsd_dir)
    codes = {f.code for f in faults}
    if verdict == "valid":
        assert faults == []
    elif verdict == "invalid":
        assert codes == {"xsd.invalid"}
        assert len(faults) >= sample.count("xsd_error_count") > 0
    elif verdict == "not-well-formed":
        assert codes == {"xml.malformed"}
    elif verdict == "unknown-namespace":
        assert codes == {"seda.unsupported_version"}
    else:  # pragma: no cover - a new verdict in INDEX.csv
        pytest.fail(f"unknown verdict {verdict}")


def test_validate_transfer_agrees_with_index(sample: Sample, xsd_dir: Path) -> None:
    data = sample.manifest()
    if data is None:
        return
    report = seda.validate_transfer(data, xsd_dir=xsd_dir)
    verdict = sample.row["official_xsd_result"]
    xsd_errors = [f for f in report.errors if f.code == "xsd.invalid"]
    if sample.row["root_element"] == "ArchiveTransferReply":
        assert [f.code for f in report.errors] == ["seda.unexpected_root"]
    elif verdict == "valid":
        assert not xsd_errors
        # the schema-valid Vitam KO cases: the cycle is ours to find; digest and two-manifest
        # problems need the zip, they are the ingest's job
        assert report.ok == (sample.row["au_cycle"] != "True")
    elif verdict == "invalid":
        assert xsd_errors
        assert not report.ok
    else:
        assert not report.ok
        assert report.transfer is None


def test_cycle_sample_names_the_cycle(index: list[Sample]) -> None:
    sample = next(s for s in index if s.row["au_cycle"] == "True")
    data = sample.manifest()
    assert data is not None
    report = seda.validate_transfer(data)
    assert [f.code for f in report.errors] == ["seda.unit_cycle"]
    assert "->" in report.errors[0].message
