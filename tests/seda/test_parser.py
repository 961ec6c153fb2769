"""Hardening of the XML entry point: every attack is refused fast, with a specific fault code."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

import seda

from .helpers import NS

BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
        for i in range(1, 10)
    )
    + b"]><lolz>&lol9;</lolz>"
)
XXE_FILE = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>'
XXE_NETWORK = (
    b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "http://127.0.0.1:9/x">]><r>&x;</r>'
)
XXE_PARAMETER = (
    b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY % p SYSTEM "http://127.0.0.1:9/d">%p;]><r/>'
)
EXTERNAL_DTD = b'<?xml version="1.0"?><!DOCTYPE r SYSTEM "http://127.0.0.1:9/r.dtd"><r/>'
QUADRATIC = (
    b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "'
    + b"x" * 100_000
    + b'">]><r>'
    + b"&a;" * 20_000
    + b"</r>"
)
UTF16_DTD = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE r [<!ENTITY x "y">]><r>&x;</r>'


def _refused(
    data: bytes,
    exception: type[seda.SedaError],
    code: str,
    parse: Callable[[bytes], object] = seda.safe_parse,
) -> seda.SedaError:
    start = time.perf_counter()
    with pytest.raises(exception) as caught:
        parse(data)
    assert time.perf_counter() - start < 2.0, "refusal must be fast"
    assert caught.value.code == code
    assert caught.value.faults[0].message
    return caught.value



def test_iter_elements_streams_with_the_same_hardening() -> None:
    """``iter_elements`` reads a large document element by element (PRONOM's signature file)
    and refuses what ``safe_parse`` refuses."""
    data = b"<formats>" + b"".join(b"<format><puid>%d</puid></format>" % i for i in range(5))
    data += b"<other><format><puid>nested</puid></format></other></formats>"
    seen = []
    for element in seda.iter_elements(data, "format"):
        seen.append(element.findtext("puid"))
        # What came before was dropped: the tree never holds more than one element.
        assert element.getprevious() is None
    assert seen == ["0", "1", "2", "3", "4", "nested"]

    def read_all(data: bytes) -> object:
        return list(seda.iter_elements(data, "r"))

    for attack in (XXE_FILE, XXE_NETWORK, BILLION_LAUGHS, QUADRATIC):
        _refused(attack, seda.ForbiddenXMLConstruct, "xml.dtd_forbidden", read_all)
    _refused(b"<r>" * 10_000 + b"</r>" * 10_000, seda.XMLTooDeep, "xml.too_deep", read_all)
    _refused(b"x" * (seda.DEFAULT_MAX_BYTES + 1), seda.XMLTooLarge, "xml.too_large", read_all)

@pytest.mark.parametrize(
    "data",
    [XXE_FILE, XXE_NETWORK, XXE_PARAMETER, EXTERNAL_DTD, BILLION_LAUGHS, QUADRATIC],
    ids=[
        "xxe-file",
        "xxe-network",
        "xxe-parameter",
        "external-dtd",
        "billion-laughs",
        "quadratic-blowup",
    ],
)
def test_any_dtd_is_refused(data: bytes) -> None:
    error = _refused(data, seda.ForbiddenXMLConstruct, "xml.dtd_forbidden")
    assert "root:" not in str(error)


def test_dtd_in_utf16_is_refused_after_parsing() -> None:
    _refused(UTF16_DTD.encode("utf-16"), seda.ForbiddenXMLConstruct, "xml.dtd_forbidden")


def test_deep_nesting_10000_levels() -> None:
    data = b"<a>" * 10_000 + b"</a>" * 10_000
    _refused(data, seda.XMLTooDeep, "xml.too_deep")


def test_depth_limit_is_configurable() -> None:
    data = b"<a>" * 60 + b"</a>" * 60
    assert seda.safe_parse(data).tag == "a"
    with pytest.raises(seda.XMLTooDeep):
        seda.safe_parse(data, max_depth=50)


def test_huge_text_node() -> None:
    data = b"<a>" + b"x" * (11 * 1024 * 1024) + b"</a>"
    _refused(data, seda.XMLLimitExceeded, "xml.limit_exceeded")


def test_huge_attribute() -> None:
    data = b'<a b="' + b"x" * (11 * 1024 * 1024) + b'"/>'
    _refused(data, seda.XMLLimitExceeded, "xml.limit_exceeded")


def test_100_mb_manifest_is_refused_before_parsing() -> None:
    data = b"<a>" + b"<b>x</b>" * (100 * 1024 * 1024 // 8) + b"</a>"
    error = _refused(data, seda.XMLTooLarge, "xml.too_large")
    assert str(seda.DEFAULT_MAX_BYTES) in error.faults[0].message


def test_size_limit_is_configurable() -> None:
    with pytest.raises(seda.XMLTooLarge):
        seda.safe_parse(b"<a>" + b"x" * 2000 + b"</a>", max_bytes=1000)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "xml.empty"),
        (b"<a><b></a>", "xml.malformed"),
        (b"not xml at all", "xml.malformed"),
        (b"<a>&undefined;</a>", "xml.malformed"),
        (b"<?xml version='1.0' encoding='no-such-encoding'?><a/>", "xml.malformed"),
    ],
)
def test_malformed(data: bytes, code: str) -> None:
    with pytest.raises(seda.MalformedXML) as caught:
        seda.safe_parse(data)
    assert caught.value.code == code


def test_errors_are_seda_errors_never_lxml() -> None:
    for data in (b"<a", b"\xff\xfe<", b"<a>\x00</a>"):
        with pytest.raises(seda.SedaError):
            seda.safe_parse(data)


def test_not_bytes_is_a_programming_error() -> None:
    with pytest.raises(TypeError):
        seda.safe_parse("<a/>")  # type: ignore[arg-type]


def test_streaming_reader_has_the_same_hardening() -> None:
    deep = (
        f'<ArchiveTransfer xmlns="{NS["2.2"]}">'.encode()
        + b"<a>" * 10_000
        + b"</a>" * 10_000
        + b"</ArchiveTransfer>"
    )
    _refused(deep, seda.XMLTooDeep, "xml.too_deep", seda.read_transfer)
    _refused(XXE_FILE, seda.ForbiddenXMLConstruct, "xml.dtd_forbidden", seda.read_transfer)
    _refused(
        UTF16_DTD.encode("utf-16"),
        seda.ForbiddenXMLConstruct,
        "xml.dtd_forbidden",
        seda.read_transfer,
    )
    _refused(
        b"x" * (seda.DEFAULT_MAX_BYTES + 1), seda.XMLTooLarge, "xml.too_large", seda.read_transfer
    )
    big_text = (
        f'<ArchiveTransfer xmlns="{NS["2.2"]}"><Comment>'.encode()
        + b"x" * (11 * 1024 * 1024)
        + b"</Comment></ArchiveTransfer>"
    )
    _refused(big_text, seda.XMLLimitExceeded, "xml.limit_exceeded", seda.read_transfer)


@pytest.mark.parametrize("data", [XXE_FILE, BILLION_LAUGHS, b"<a>" * 10_000, b"<a><b></a>"])
def test_validate_transfer_never_raises(data: bytes) -> None:
    report = seda.validate_transfer(data)
    assert not report.ok
    assert report.transfer is None
    assert report.errors[0].code.startswith("xml.")
