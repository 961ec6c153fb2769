"""Seeds and mutators shared by the fuzz tests: real manifests and SIPs, hostile constructs.

Budget: ``SAE_FUZZ_EXAMPLES`` (default 200 per property) so that CI stays within minutes; raise
it for a long local run. No example database is written (``database=None``): the tree is shared.
"""

from __future__ import annotations

import io
import os
import zipfile
from functools import cache
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.conftest import SAMPLES
from tests.sipfactory import build_zip, manifest, simple_sip

EXAMPLES = int(os.environ.get("SAE_FUZZ_EXAMPLES", "200"))

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=5000,  # ms per example: a parse that takes longer counts as a hang
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@cache
def sample_zips() -> tuple[bytes, ...]:
    """The shared real SIPs under 2 MiB (none when ../shared is absent)."""
    if not SAMPLES.is_dir():
        return ()
    return tuple(
        p.read_bytes() for p in sorted(SAMPLES.glob("*.zip")) if p.stat().st_size < 2 * 1024 * 1024
    )


@cache
def seed_manifests() -> tuple[bytes, ...]:
    """manifest.xml of each real sample, plus our own SIPs' manifests in 2.1, 2.2 and 2.3."""
    found: list[bytes] = [manifest(simple_sip(version=v)) for v in ("2.1", "2.2", "2.3")]
    for data in sample_zips():
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                names = [n for n in zf.namelist() if n.lower().endswith("manifest.xml")]
                if names:
                    found.append(zf.read(names[0]))
        except zipfile.BadZipFile:
            continue
    return tuple(found)


@cache
def seed_zips() -> tuple[bytes, ...]:
    return (build_zip(simple_sip()), *sample_zips())


HOSTILE_XML = [
    b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xxxxxxxxxx"><!ENTITY y "&x;&x;&x;&x;&x;'
    b'&x;&x;&x;">]><ArchiveTransfer xmlns="fr:gouv:culture:archivesdefrance:seda:v2.2">&y;'
    b"</ArchiveTransfer>",
    b'<!DOCTYPE a [<!ENTITY e SYSTEM "file:///etc/passwd">]><a>&e;</a>',
    b'<!DOCTYPE a SYSTEM "http://127.0.0.1:1/x.dtd"><a/>',
    b'<?xml version="1.0"?><?xml-stylesheet href="x"?><a/>',
    b"<a>" * 5000 + b"</a>" * 5000,
    b'<a xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include href="/etc/passwd"/></a>',
    b"<a " + b" ".join(b'a%d="x"' % i for i in range(5000)) + b"/>",
    b'<?xml version="1.0" encoding="UTF-16"?><a/>',
    b'<?xml version="1.0" encoding="x-unknown"?><a/>',
    b"\xef\xbb\xbf<a/>",
    b"<a>\x00</a>",
    b"",
]

XML_SNIPPETS = [
    b"<",
    b">",
    b"&",
    b"&amp;",
    b"&#0;",
    b"&#x110000;",
    b"]]>",
    b"<![CDATA[",
    b"<!--",
    b"-->",
    b'"',
    b"xmlns=''",
    b'xmlns="fr:gouv:culture:archivesdefrance:seda:v2.3"',
    b"</ArchiveUnit>",
    b"<ArchiveUnit id='x'>",
    b"<ArchiveUnitRefId>AU-1</ArchiveUnitRefId>",
    b"<DataObjectGroupReferenceId>GOT-0</DataObjectGroupReferenceId>",
    b"<Size>-1</Size>",
    b"<Size>99999999999999999999999</Size>",
    b"<StartDate>2024-02-30</StartDate>",
    b'<MessageDigest algorithm="MD5">x</MessageDigest>',
    b"<Rule>APP-5Y</Rule>",
    b"\xff\xfe",
    b"\xc3",
    "é".encode(),
]


@st.composite
def mutated(draw: st.DrawFn, seeds: tuple[bytes, ...], snippets: list[bytes]) -> bytes:
    """A seed with a few byte-level mutations: flips, cuts, duplications, insertions."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            data += draw(st.binary(max_size=64))
            continue
        pos = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "cut", "dup", "insert", "snippet", "truncate"]))
        if op == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del data[pos : pos + draw(st.integers(1, 64))]
        elif op == "dup":
            end = min(len(data), pos + draw(st.integers(1, 256)))
            data[pos:pos] = data[pos:end]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "snippet":
            data[pos:pos] = draw(st.sampled_from(snippets))
        else:
            del data[pos:]
    return bytes(data)


def xsd_dir() -> Path | None:
    path = SAMPLES.parent / "seda-xsd"
    return path if (path / "2.2" / "seda-2.2-main.xsd").is_file() else None
