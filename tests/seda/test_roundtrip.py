"""Property: generated model -> ArchiveTransfer XML -> parsed -> equal, and the XML is XSD-valid."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import seda

from .strategies import transfers


def without_content(transfer: seda.ArchiveTransfer) -> seda.ArchiveTransfer:
    package = transfer.package
    units = [dataclasses.replace(u, content_xml=b"") for u in package.archive_units]
    return dataclasses.replace(transfer, package=dataclasses.replace(package, archive_units=units))


@pytest.mark.parametrize("version", list(seda.SedaVersion))
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_round_trip(version: seda.SedaVersion, data: st.DataObject, xsd_dir: Path) -> None:
    transfer = data.draw(transfers(version))
    xml = seda.write_archive_transfer(transfer)
    assert seda.validate_message(xml, xsd_dir, expected="ArchiveTransfer") == []
    back = seda.read_transfer(xml)
    assert without_content(back) == transfer
    # the verbatim Content path: writing what was read gives the same model again
    again = seda.read_transfer(seda.write_archive_transfer(back))
    assert again == back
