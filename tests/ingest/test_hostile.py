"""Hostile SIPs are refused quickly with a 4xx; the server keeps serving; nothing is stored."""

from __future__ import annotations

import io
import time
import zipfile

import pytest

from tests.conftest import Api
from tests.sipfactory import build_zip, manifest, simple_sip


def _assert_refused(api: Api, response: object, *, seconds: float, started: float) -> list[str]:
    elapsed = time.monotonic() - started
    status = response.status_code  # type: ignore[attr-defined]
    assert 400 <= status < 500, response.text  # type: ignore[attr-defined]
    assert elapsed < seconds, f"took {elapsed:.1f}s"
    # Nothing stored, and the server still serves.
    assert api.client.get("/api/v1/units", headers=api.auth()).json()["items"] == []
    for offer in api.runtime.offer_set.offers.values():
        assert list(offer.list_keys("objects/")) == []
    assert api.client.get("/health").status_code == 200
    body = response.json()  # type: ignore[attr-defined]
    return [e["code"] for e in body.get("errors", [])] or [body.get("code")]


def _zip(entries: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return out.getvalue()


XXE_FILE = b"""<?xml version="1.0"?>
<!DOCTYPE ArchiveTransfer [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<ArchiveTransfer xmlns="fr:gouv:culture:archivesdefrance:seda:v2.2"><Comment>&xxe;</Comment>
</ArchiveTransfer>"""

XXE_NETWORK = b"""<?xml version="1.0"?>
<!DOCTYPE ArchiveTransfer SYSTEM "http://127.0.0.1:9/evil.dtd">
<ArchiveTransfer xmlns="fr:gouv:culture:archivesdefrance:seda:v2.2"/>"""

LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<ArchiveTransfer xmlns="fr:gouv:culture:archivesdefrance:seda:v2.2"><Comment>&lol9;</Comment>
</ArchiveTransfer>"""


@pytest.mark.parametrize(
    "document", [XXE_FILE, XXE_NETWORK, LAUGHS], ids=["xxe-file", "xxe-network", "billion-laughs"]
)
def test_dtd_and_entities_are_refused(api: Api, document: bytes) -> None:
    started = time.monotonic()
    response = api.deposit(_zip({"manifest.xml": document}))
    codes = _assert_refused(api, response, seconds=5, started=started)
    assert len(codes) == 1
    assert "root:" not in response.text  # /etc/passwd never leaks into the reply


@pytest.mark.parametrize(
    "name",
    [
        "../evil.pdf",
        "Content/../../evil.pdf",
        "/etc/evil.pdf",
        "C:/evil.pdf",
        "Content\\..\\evil.pdf",
    ],
)
def test_entries_outside_the_root_are_refused(api: Api, name: str) -> None:
    spec = simple_sip("MSG-PATH")
    spec.extra_entries[name] = b"escape"
    started = time.monotonic()
    response = api.deposit(build_zip(spec))
    codes = _assert_refused(api, response, seconds=5, started=started)
    assert "sip.unsafe_path" in codes


def test_symlink_entry_is_refused(api: Api) -> None:
    out = io.BytesIO()
    spec = simple_sip("MSG-LINK")
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("manifest.xml", manifest(spec))
        zf.writestr(spec.files[0].uri, spec.files[0].data)
        link = zipfile.ZipInfo("Content/link")
        link.create_system = 3
        link.external_attr = 0o120777 << 16
        zf.writestr(link, "/etc/passwd")
    started = time.monotonic()
    codes = _assert_refused(api, api.deposit(out.getvalue()), seconds=5, started=started)
    assert "sip.unsafe_entry" in codes


def test_zip_bomb_by_ratio_is_refused(api: Api) -> None:
    spec = simple_sip("MSG-BOMB")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("manifest.xml", manifest(spec))
        zf.writestr(spec.files[0].uri, spec.files[0].data)
        zf.writestr("Content/bomb.bin", b"\0" * (200 * 1024 * 1024))
    assert len(out.getvalue()) < 1024 * 1024
    started = time.monotonic()
    codes = _assert_refused(api, api.deposit(out.getvalue()), seconds=10, started=started)
    assert "sip.zip_bomb" in codes


def test_hundred_thousand_entries_are_refused(api: Api) -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("manifest.xml", manifest(simple_sip("MSG-MANY")))
        for i in range(100_000):
            zf.writestr(f"Content/{i}.txt", b"")
    started = time.monotonic()
    codes = _assert_refused(api, api.deposit(out.getvalue()), seconds=30, started=started)
    assert codes == ["sip.too_many_entries"]


def test_hundred_megabyte_manifest_is_refused(api: Api) -> None:
    spec = simple_sip("MSG-HUGE")
    xml = manifest(spec)
    padding = b"<!--" + b"x" * (100 * 1024 * 1024) + b"-->"
    huge = xml.replace(b"<Comment>", padding + b"<Comment>", 1)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.xml", huge)
        zf.writestr(spec.files[0].uri, spec.files[0].data)
    started = time.monotonic()
    codes = _assert_refused(api, api.deposit(out.getvalue()), seconds=30, started=started)
    assert codes in (["sip.manifest_too_large"], ["sip.zip_bomb"]), codes


def test_deeply_nested_manifest_is_refused(api: Api) -> None:
    deep = (
        b'<ArchiveTransfer xmlns="fr:gouv:culture:archivesdefrance:seda:v2.2">'
        + b"<a>" * 50_000
        + b"</a>" * 50_000
        + b"</ArchiveTransfer>"
    )
    started = time.monotonic()
    codes = _assert_refused(
        api, api.deposit(_zip({"manifest.xml": deep})), seconds=10, started=started
    )
    assert len(codes) == 1


def test_corrupt_entry_crc_is_refused(api: Api) -> None:
    spec = simple_sip("MSG-CRC")
    data = bytearray(build_zip(spec))
    payload = spec.files[0].data
    at = bytes(data).find(payload[:12])
    if at < 0:  # deflated: corrupt inside the compressed stream instead
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
            zf.writestr("manifest.xml", manifest(spec))
            zf.writestr(spec.files[0].uri, payload)
        data = bytearray(out.getvalue())
        at = bytes(data).find(payload[:12])
    data[at + 3] ^= 0xFF
    started = time.monotonic()
    codes = _assert_refused(api, api.deposit(bytes(data)), seconds=5, started=started)
    assert codes, codes
    assert codes[0] in ("sip.corrupt_entry", "sip.digest_mismatch"), codes


def test_sip_over_the_size_limit_is_refused(api: Api) -> None:
    api.runtime.settings.max_sip_bytes = 10_000
    response = api.deposit(b"\0" * 20_000)
    assert response.status_code == 413
    assert response.json()["code"] == "ingest.sip_too_large"


@pytest.mark.parametrize("bad", [0, 4, 7])
def test_a_corrupt_entry_among_files_stored_in_parallel_leaves_nothing(api: Api, bad: int) -> None:
    """Files are stored two at a time: when one entry turns out corrupt, the copies the other
    threads wrote (before, during and after it) all go."""
    import os

    from tests.sipfactory import FileSpec, UnitSpec

    assert api.runtime.settings.ingest_threads >= 2
    spec = simple_sip("MSG-CRC-PARALLEL")
    spec.files = [FileSpec(uri=f"Content/{i}.bin", data=os.urandom(200_000 + i)) for i in range(8)]
    spec.units[0].children = [UnitSpec(id=f"AU-{i}", title=str(i), files=[i]) for i in range(8)]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("manifest.xml", manifest(spec))
        for f in spec.files:
            zf.writestr(f.uri, f.data)
    data = bytearray(out.getvalue())
    at = bytes(data).find(spec.files[bad].data[:32])
    data[at + 150_000] ^= 0xFF  # late in the entry: its copy is being written when found
    started = time.monotonic()
    codes = _assert_refused(api, api.deposit(bytes(data)), seconds=20, started=started)
    assert codes == ["sip.corrupt_entry"], codes
