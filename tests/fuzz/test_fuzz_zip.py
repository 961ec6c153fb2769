"""Fuzzing the zip reader and the whole deposit: crafted and mutated SIP zips raise only
``SipRefused`` from ``SipArchive``, and a deposit of one is never answered 5xx.
"""

from __future__ import annotations

import io
import stat
import tempfile
import warnings
import zipfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sae.ingest.errors import SipRefused
from sae.ingest.ziparchive import SipArchive, ZipLimits
from tests.conftest import Api
from tests.fuzz.corpus import FUZZ, mutated, seed_zips
from tests.sipfactory import manifest, simple_sip

pytestmark = pytest.mark.timeout(600)

LIMITS = ZipLimits(
    max_entries=200,
    max_uncompressed_bytes=64 * 1024 * 1024,
    max_compression_ratio=200,
    max_manifest_bytes=1024 * 1024,
)

NAMES = st.sampled_from(
    [
        "manifest.xml",
        "Content/a.pdf",
        "Content/../../etc/passwd",
        "/abs/path.pdf",
        "C:/windows.pdf",
        "Content\\back.pdf",
        "Content/nul\x00.pdf",
        "./Content/a.pdf",
        "Content/é.pdf",
        "Content/e\u0301.pdf",
        "Content/",
        "",
        "a" * 300,
        "Content/%2e%2e/x.pdf",
    ]
) | st.text(max_size=40)

ZIP_BYTES = st.binary(max_size=2048) | mutated(seed_zips(), [b"PK\x03\x04", b"PK\x01\x02", b"\x00"])


@st.composite
def crafted_zips(draw: st.DrawFn) -> bytes:
    """Zips written entry by entry with hostile names, modes, methods and flags."""
    out = io.BytesIO()
    # Duplicate names are a case to test, not a mistake: silence zipfile's warning about them.
    with warnings.catch_warnings(), zipfile.ZipFile(out, "w") as zf:
        warnings.simplefilter("ignore", UserWarning)
        if draw(st.booleans()):
            zf.writestr("manifest.xml", manifest(simple_sip()))
        for _ in range(draw(st.integers(0, 6))):
            info = zipfile.ZipInfo(draw(NAMES) or "x")
            info.compress_type = draw(
                st.sampled_from(
                    [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]
                )
            )
            kind = draw(
                st.sampled_from([0, stat.S_IFREG, stat.S_IFLNK, stat.S_IFCHR, stat.S_IFIFO])
            )
            info.external_attr = (kind | 0o644) << 16
            info.create_system = draw(st.sampled_from([0, 3]))
            body = draw(
                st.binary(max_size=512) | st.integers(0, 3 * 1024 * 1024).map(lambda n: b"\x00" * n)
            )
            zf.writestr(info, body)
    data = bytearray(out.getvalue())
    # Then forge a few header bytes (sizes, flags, methods, name lengths) after the fact.
    for _ in range(draw(st.integers(0, 4))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


def read_all(data: bytes) -> None:
    """Everything ingest does with a SIP zip: vet, find, stream every entry, read the manifest."""
    with tempfile.NamedTemporaryFile(suffix=".zip") as fh:
        fh.write(data)
        fh.flush()
        with SipArchive(Path(fh.name), LIMITS) as archive:
            for name in list(archive.entries):
                archive.find(name)
                for _chunk in archive.stream(name):
                    pass
            if "manifest.xml" in archive.entries:
                archive.read_small("manifest.xml", LIMITS.max_manifest_bytes)


def exercise(data: bytes) -> None:
    """Only SipRefused, with at least one coded fault, may come out of reading ``data``."""
    faults = None
    try:
        read_all(data)
    except SipRefused as refused:
        faults = refused.faults
    if faults is not None:
        assert faults
        assert all(f.code for f in faults)


@FUZZ
@given(ZIP_BYTES)
def test_zip_reader_on_mutated_zips(data: bytes) -> None:
    exercise(data)


@FUZZ
@given(crafted_zips())
def test_zip_reader_on_crafted_zips(data: bytes) -> None:
    exercise(data)


@FUZZ
@given(ZIP_BYTES | crafted_zips())
def test_deposit_of_hostile_zips_is_never_a_5xx(api: Api, data: bytes) -> None:
    response = api.deposit(data)
    assert response.status_code in (201, 400, 409, 413, 415, 422), (
        response.status_code,
        response.text[:1000],
    )


def _corrupt_deflate() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.xml", manifest(simple_sip()))
    data = bytearray(out.getvalue())
    start = 30 + len("manifest.xml")  # the local header, then the compressed stream
    data[start + 40 : start + 60] = b"\xff" * 20
    return bytes(data)


FOUND_BY_FUZZING = {
    # zlib.error escaped SipArchive.stream (a 500 on deposit).
    "corrupt deflate stream": _corrupt_deflate(),
    # ZipInfo.is_dir() raised IndexError on an empty entry name.
    "empty entry name": (
        b"PK\x03\x04\x14\x00\x00\x00\x00\x00\x00\x00!\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
        b"\x00\x00\x00\x00\x00\x00\x00PK\x01\x02\x14\x00\x14\x00\x00\x00\x00\x00\x00\x00!\x00"
        b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
        b"\x00\x00\x00\xa4\x01\x00\x00\x00\x00PK\x05\x06\x00\x00\x00\x00\x01\x00\x01\x00.\x00"
        b"\x00\x00\x1e\x00\x00\x00\x00\x00"
    ),
    # NotImplementedError ("zip file version 6.4") escaped the constructor.
    "zip version 6.4": (
        b"PK\x03\x04?\x00\x02\x00\x0e\x00\x00\x00!\x00j#\xd1\xc4\x17\x00\x00\x00\x13\x01\x00"
        b"\x00\x10\x00\x00\x00Content\\back.pdf\t\x04\x05\x00]\x00\x00\x80\x00\x00\x00o\xfc@"
        b"\x8b\xfd\xef\xff\xff\xc0\x01\x00\x00PK\x01\x02?\x00@\x00\x02\x00\x0e\x00\x00\x00!\x00"
        b"j#\xd1\xc4\x17\x00\x00\x00\x13\x01\x00\x00\x10\x00\x00\x00\x00\x00\x00\x00\x00\x00"
        b"\x00\x00\xa4\x01\x00\x00\x00\x00Content\\back.pdfPK\x05\x06\x00\x00\x00\x00\x01\x00"
        b"\x01\x00>\x00\x00\x00E\x00\x00\x00\x00\x00"
    ),
    # UnicodeDecodeError from a local header name that is not UTF-8.
    "local name not UTF-8": (
        b"PK\x03\x04\x14\x00\x00\x08\x00\x00\x00\x00!\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
        b"\x00\x00\x00\x02\x00\x00\x00\x00\x80PK\x01\x02\x14\x00\x14\x00\x00\x08\x00\x00\x00"
        b"\x00!\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00"
        b"\x00\x00\x00\x00\x00\xa4\x01\x00\x00\x00\x00\xc2\x80PK\x05\x06\x00\x00\x00\x00\x01"
        b"\x00\x01\x000\x00\x00\x00 \x00\x00\x00\x00\x00"
    ),
}


@pytest.mark.parametrize("case", sorted(FOUND_BY_FUZZING))
def test_inputs_found_by_fuzzing_are_refused(case: str) -> None:
    with pytest.raises(SipRefused):
        read_all(FOUND_BY_FUZZING[case])


@pytest.mark.parametrize("case", sorted(FOUND_BY_FUZZING))
def test_inputs_found_by_fuzzing_are_not_a_5xx(api: Api, case: str) -> None:
    response = api.deposit(FOUND_BY_FUZZING[case])
    assert response.status_code in (400, 422), (response.status_code, response.text[:500])
