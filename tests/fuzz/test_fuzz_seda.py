"""Fuzzing the SEDA reader: hostile and mutated manifests raise only the library's own errors
(``seda.SedaError`` subclasses), ``validate_transfer`` never raises, and nothing hangs.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import seda
from tests.fuzz.corpus import FUZZ, HOSTILE_XML, XML_SNIPPETS, mutated, seed_manifests, xsd_dir

pytestmark = pytest.mark.timeout(600)

MANIFESTS = mutated(seed_manifests(), XML_SNIPPETS)
ANY_BYTES = st.binary(max_size=4096) | st.sampled_from(HOSTILE_XML) | MANIFESTS


def test_seeds_are_real() -> None:
    # The mutations start from valid manifests: if the seeds were all broken, the fuzzing
    # would only ever test the first line of the parser.
    reports = [seda.validate_transfer(m) for m in seed_manifests()[:3]]
    assert all(r.transfer is not None for r in reports), [r.errors for r in reports]


@FUZZ
@given(ANY_BYTES)
@example(b"<a>" * 100_000)
def test_safe_parse_raises_only_malformed_xml(data: bytes) -> None:
    try:
        seda.safe_parse(data)
    except seda.MalformedXML:
        pass


@FUZZ
@given(ANY_BYTES)
def test_read_transfer_raises_only_seda_errors(data: bytes) -> None:
    try:
        transfer = seda.read_transfer(data)
    except seda.SedaError:
        return
    assert isinstance(transfer, seda.ArchiveTransfer)


@FUZZ
@given(ANY_BYTES)
def test_read_transfer_reply_raises_only_seda_errors(data: bytes) -> None:
    try:
        seda.read_transfer_reply(data)
    except seda.SedaError:
        pass


@FUZZ
@given(MANIFESTS | st.sampled_from(HOSTILE_XML))
def test_validate_transfer_never_raises(data: bytes) -> None:
    report = seda.validate_transfer(data, xsd_dir=xsd_dir())
    # Either a readable transfer, or at least one fault saying why not.
    assert report.transfer is not None or report.errors
    for fault in [*report.errors, *report.warnings]:
        assert isinstance(fault.code, str)
        assert fault.code
