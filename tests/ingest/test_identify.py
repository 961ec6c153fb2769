"""PRONOM identification (fido's signatures): recorded per object, shown, exported, replayed;
a declaration the content contradicts refuses the transfer (``format.mismatch``)."""

from __future__ import annotations

import bz2
import functools
import gzip
import io
import json
import lzma
import platform
import random
import tarfile
import threading
import wave
import zipfile
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

import seda
from sae.catalog.models import DataObject
from sae.ingest import identify
from sae.ingest.hashing import IDENTIFY_BYTES
from sae.ingest.transfer_record import read_transfer_record, transfer_record_key
from sae.journal.models import Event
from tests.conftest import SAMPLES, Api
from tests.sipfactory import FileSpec, UnitSpec, build_zip, simple_sip

PDF = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"


def _zip_bytes() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("dedans.txt", "un fichier dans une archive\n")
    return out.getvalue()


def _head_tail(data: bytes) -> tuple[bytes, bytes]:
    return data[:IDENTIFY_BYTES], data[-IDENTIFY_BYTES:]


def _sample_files() -> list[bytes]:
    files = []
    for path in sorted(SAMPLES.glob("*.zip")):
        with zipfile.ZipFile(path) as zf:
            files += [zf.read(n) for n in zf.namelist() if not n.endswith("/")]
    return files


def test_the_compiled_signatures_answer_as_fido_does() -> None:
    """The index of compiled patterns is an optimisation, not another identifier: on the
    samples' files and on a few formats, the same PUIDs as fido's own ``match_formats``."""
    from fido.fido import Fido
    from fido.versions import get_local_versions

    versions = get_local_versions()
    fido = Fido(
        quiet=True,
        handle_matches=lambda *args: None,
        format_files=[versions.pronom_signature, versions.fido_extension_signature],
    )
    files = [
        *_sample_files(),
        PDF,
        _zip_bytes(),
        b"\x89PNG\r\n\x1a\n" + b"\0" * 64,
        b"II*\x00" + b"\0" * 64,
        b"GIF89a" + b"\0" * 64,
        b'<?xml version="1.0"?><racine/>',
        b"texte brut\n",
    ]
    assert len(files) > 20
    ident = identify.identifier()
    for data in files:
        head, tail = _head_tail(data)
        found = ident.identify(head, tail)
        theirs = {fido.get_puid(fmt) for fmt, _ in fido.match_formats(head, tail)}
        assert set(found.candidates if found else ()) == theirs, data[:40]


def _fido() -> Any:
    from fido.fido import Fido
    from fido.versions import get_local_versions

    versions = get_local_versions()
    return Fido(
        quiet=True,
        handle_matches=lambda *args: None,
        format_files=[versions.pronom_signature, versions.fido_extension_signature],
    )


@functools.cache
def _aho_corasick_only() -> identify.Identifier:
    """The identifier without Hyperscan (as on a platform without its wheel)."""
    return identify._load(vectorised=False)


def _identifiers() -> list[identify.Identifier]:
    """The process's identifier (with Hyperscan where installed) and the one without."""
    return [identify.identifier(), _aho_corasick_only()]


def test_hyperscan_is_used_where_installed() -> None:
    """CI runs on Linux x86_64, where pyproject.toml installs Hyperscan: the long passes use
    it there (the tests below compare both engines' answers)."""
    if platform.system() == "Linux" and platform.machine() == "x86_64":
        assert identify.VECTORISED
        assert identify.identifier()._scans[identify._WHOLE_HEAD].vectorised is not None
    assert _aho_corasick_only()._scans[identify._WHOLE_HEAD].vectorised is None


def _assert_as_fido(fido: Any, files: list[bytes]) -> None:
    """Each file's PUIDs as fido's, with either engine of the long passes, the file's size
    given (the bytes the head and the tail share scanned once) or not."""
    for ident in _identifiers():
        for data in files:
            head, tail = _head_tail(data)
            theirs = {fido.get_puid(fmt) for fmt, _ in fido.match_formats(head, tail)}
            if not head:
                theirs = set()  # fido's signatures of empty content are not identifications
            for size in (None, len(data)):
                found = ident.identify(head, tail, size)
                got = set(found.candidates if found else ())
                assert got == theirs, (data[:40], size, ident.vectorised)


def _generated() -> list[bytes]:
    """Files of many kinds, written by the libraries that make them."""
    from fpdf import FPDF
    from PIL import Image

    rng = random.Random(20)
    noise = Image.frombytes("RGB", (300, 200), rng.randbytes(300 * 200 * 3))
    files = []
    for kind in ("JPEG", "GIF", "BMP", "TIFF", "WEBP", "PNG", "ICO", "TGA", "PDF", "PPM", "EPS"):
        out = io.BytesIO()
        noise.save(out, kind)
        files.append(out.getvalue())
    png = io.BytesIO()
    noise.save(png, "PNG")
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=12)
    pdf.cell(text="Délibération du conseil municipal")
    pdf.image(io.BytesIO(png.getvalue()), x=10, y=30, w=100)
    files.append(bytes(pdf.output()))
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as archive:
        member = tarfile.TarInfo("acte.txt")
        member.size = 5
        archive.addfile(member, io.BytesIO(b"acte\n"))
    odt = io.BytesIO()
    with zipfile.ZipFile(odt, "w") as zf:
        zf.writestr("mimetype", "application/vnd.oasis.opendocument.text")
        zf.writestr("content.xml", "<office:document-content/>")
    wav = io.BytesIO()
    with wave.open(wav, "wb") as sound:
        sound.setnchannels(1)
        sound.setsampwidth(2)
        sound.setframerate(8000)
        sound.writeframes(rng.randbytes(16000))
    text = "une délibération du conseil municipal\n" * 4000
    return [
        *files,
        tar.getvalue(),
        odt.getvalue(),
        wav.getvalue(),
        gzip.compress(text.encode()),
        bz2.compress(text.encode()),
        lzma.compress(text.encode()),
        text.encode("utf-16"),
        b"\0" * 300_000,
        rng.randbytes(300_000),
        json.dumps({"asset": {"version": "1.0"}, "scenes": []}).encode(),
        rb"{\rtf1\ansi un acte}",
        b"<!DOCTYPE html><html><head><title>acte</title></head><body>x</body></html>",
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>',
        b"%!PS-Adobe-3.0\n%%EOF\n",
        *_illustrator(),
    ]


def _illustrator() -> list[bytes]:
    """A PDF 1.4 that is an Adobe Illustrator file (``%PDF-1.4``, then ``%!PS-Adobe-3.0``, then
    ``%AI5_FileFormat 6`` 128 to 1,024 bytes further), and the same with each of those runs
    missing or out of its reach: every run of a pattern is looked for, not only the one that
    gates it."""
    rng = random.Random(6)

    def pdf(marker: bytes, gap: int, version: bytes = b"6") -> bytes:
        return (
            b"%PDF-1.4\n"
            + rng.randbytes(900)
            + marker
            + b"\n"
            + rng.randbytes(gap)
            + b"%AI5_FileFormat "
            + version
            + b"\n"
            + rng.randbytes(40_000)
            + b"\n%%EOF\n"
        )

    return [
        pdf(b"%!PS-Adobe-3.0", 300),
        pdf(b"%!PS-Adobe-3.0", 300, b"8"),
        pdf(b"%!PS-Adobe-3.0", 2_000),  # too far
        pdf(b"%!PS-Adobe-2.0", 300),
        pdf(b"%!PS-Adobe-3.0", 300, b"X"),
    ]


def _planted() -> list[bytes]:
    """Random files with the literals of the signatures planted where the passes' windows end:
    the last place a literal is in its window or in a pass, and one byte further."""
    rng = random.Random(17)
    ident = identify.identifier()
    patterns = sorted(
        {
            (p.position, p.literal, p.literal_reach or 0)
            for fmt in ident.formats
            for signature in fmt.signatures
            for p in signature
            if p.literal is not None and p.scan >= 0
        }
    )
    files = []
    size = 3 * IDENTIFY_BYTES
    for shift in (0, 1):
        for chunk in range(0, len(patterns), 12):
            data = bytearray(rng.randbytes(size))
            for position, literal, reach in patterns[chunk : chunk + 12]:
                limits = {limit for _, limit in identify.SCANS if limit is not None}
                for end in {reach, *limits, IDENTIFY_BYTES} - {0}:
                    at = end - len(literal) + shift
                    if position == "EOF":
                        data[size - at - len(literal) : size - at] = literal
                    else:
                        data[at : at + len(literal)] = literal
            files.append(bytes(data))
    return files


def test_the_passes_answer_as_fido_does_on_many_kinds() -> None:
    """The literals found in one pass (Aho-Corasick) and the signatures gated by them: the same
    PUIDs as fido on files of many kinds and on literals planted at the passes' edges."""
    files = [*_generated(), *_planted()]
    assert len(files) > 60
    _assert_as_fido(_fido(), files)


def test_an_illustrator_file_is_told_from_a_pdf() -> None:
    found = [identify.identify(*_head_tail(data)) for data in _illustrator()]
    assert [f.puid if f else None for f in found] == [
        "fmt/559",
        "fmt/561",
        "fmt/18",
        "fmt/18",
        "fmt/18",
    ]


def test_a_pattern_whose_other_runs_are_missing_is_ruled_out_before_its_regex() -> None:
    """Illustrator's pattern is gated by ``%PDF-1.4``; on a plain PDF 1.4 its regex (which
    backtracks over 32,000 bytes) must not run: ``%!PS-Adobe-3.0`` is looked for first."""
    from dataclasses import replace

    class NotRun:
        def match(self, *args: object) -> None:
            raise AssertionError("the regex ran")

        search = match

    ident = identify.identifier()
    (signature,) = ident.by_puid["fmt/559"].signatures
    pattern = next(p for p in signature if p.position == "BOF")
    assert [n.literal for n in pattern.needles][:1] == [b"%PDF-1.4"]
    guarded = replace(pattern, regex=NotRun())  # type: ignore[arg-type]
    head, tail = _head_tail(PDF + bytes(40_000))
    found = identify._Scan(head, tail, ident._scans, ident._joint, None)
    assert guarded.matches(head, tail, found) is False


@pytest.mark.parametrize(
    "size",
    [
        100,
        IDENTIFY_BYTES - 1,
        IDENTIFY_BYTES,
        IDENTIFY_BYTES + 1,
        IDENTIFY_BYTES + IDENTIFY_BYTES // 2,
        2 * IDENTIFY_BYTES - 1,
        2 * IDENTIFY_BYTES,
        2 * IDENTIFY_BYTES + 1,
    ],
)
def test_the_bytes_head_and_tail_share_are_scanned_once_and_find_the_same(size: int) -> None:
    """A file shorter than twice the window: its head and tail overlap, and the passes over
    the whole of each scan the shared bytes once. Every literal of both passes planted at
    every offset around the head's end and the tail's start (where a literal runs across the
    end of the shared bytes), and a few elsewhere: the same occurrences as two whole passes."""
    ident, other = _identifiers()
    literals = [
        *ident._scans[identify._WHOLE_HEAD].literals,
        *ident._scans[identify._WHOLE_TAIL].literals,
    ]
    rng = random.Random(size)
    head_end = min(size, IDENTIFY_BYTES)
    tail_start = max(0, size - IDENTIFY_BYTES)
    for literal in literals:
        data = bytearray(rng.randbytes(size))
        anchors = {head_end, tail_start, size // 2, size}
        for anchor in anchors:
            for at in range(anchor - len(literal) - 1, anchor + 2, max(1, len(literal) // 3)):
                if 0 <= at and at + len(literal) <= size:
                    data[at : at + len(literal)] = literal
        head, tail = _head_tail(bytes(data))
        apart = identify._Scan(head, tail, ident._scans, ident._joint, None)
        shared = identify._Scan(head, tail, ident._scans, ident._joint, size)
        # And Hyperscan's passes (where installed) as Aho-Corasick's: every occurrence.
        theirs = identify._Scan(head, tail, other._scans, other._joint, size)

        def where(scan: identify._Scan) -> list[dict[bytes, list[int]]]:
            return [{k: sorted(v) for k, v in found.items()} for found in scan.starts]

        assert where(shared) == where(apart), literal
        assert where(theirs) == where(apart), literal


def test_what_is_identified() -> None:
    pdf = identify.identify(*_head_tail(PDF))
    assert pdf is not None
    assert pdf.puid == "fmt/18"
    assert pdf.name == "Acrobat PDF 1.4 - Portable Document Format"
    assert pdf.version == "1.4"
    assert pdf.mime_type == "application/pdf"
    archive = identify.identify(*_head_tail(_zip_bytes()))
    assert archive is not None
    assert archive.puid == identify.ZIP_PUID
    assert archive.container == "ZIP"
    assert identify.identify(*_head_tail(b"texte brut\n")) is None
    assert identify.identify(b"", b"") is None


@pytest.mark.parametrize(
    ("data", "puid", "mime", "contradicts"),
    [
        (PDF, None, "application/pdf", False),
        (PDF, "fmt/18", None, False),
        (PDF, "fmt/19", None, False),  # another PDF version: benign
        (PDF, "fmt/95", None, False),  # PDF/A-1a declared, the header says PDF 1.4
        (PDF, None, "application/x-pdf", False),
        (PDF, None, "application/octet-stream", False),
        (PDF, "fmt/40", None, True),  # a Word 97 document
        (PDF, None, "image/jpeg", True),
        (_zip_bytes(), None, "application/pdf", True),
        (_zip_bytes(), "fmt/18", None, True),
        (_zip_bytes(), "fmt/412", None, False),  # a .docx lives in a ZIP
        (_zip_bytes(), None, "application/vnd.oasis.opendocument.text", False),
        (_zip_bytes(), None, "application/x-zip-compressed", False),
        (b'<?xml version="1.0"?><r/>', None, "text/xml", False),
        (b'<?xml version="1.0"?><r/>', None, "application/xml", False),
        (b'<?xml version="1.0"?><r/>', None, "image/svg+xml", False),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01" + b"\0" * 64, None, "image/jpg", False),
        (b"texte brut\n", None, "application/pdf", False),  # nothing identified: not judged
        (PDF, "fmt/999999", None, False),  # a PUID this PRONOM does not know: not judged
    ],
)
def test_declared_against_content(
    data: bytes, puid: str | None, mime: str | None, contradicts: bool
) -> None:
    found = identify.identify(*_head_tail(data))
    why = identify.contradiction(found, declared_puid=puid, declared_mime=mime)
    assert (why is not None) == contradicts, why
    if why is not None:
        assert (puid or mime or "") in why
        assert found is not None
        assert found.puid in why


def _deposit(api: Api, message_id: str, spec_file: FileSpec) -> object:
    spec = simple_sip(message_id)
    spec.files.append(spec_file)
    spec.units[0].children.append(UnitSpec(id="AU-2", title="Pièce", files=[1]))
    return api.deposit(build_zip(spec))


def _nothing_stored(api: Api) -> None:
    for offer in api.runtime.offer_set.offers.values():
        assert list(offer.list_keys("objects/")) == []
        assert list(offer.list_keys("transfers/")) == []
    with api.runtime.sessions() as session:
        assert session.scalars(select(DataObject)).all() == []


def test_a_pdf_that_is_a_zip_is_refused(api: Api, xsd_dir: Path) -> None:
    response = _deposit(
        api,
        "MSG-FAUX-PDF",
        FileSpec(uri="Content/délibération.pdf", data=_zip_bytes(), mime="application/pdf"),
    )
    assert response.status_code == 422, response.text  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert [e["code"] for e in body["errors"]] == ["format.mismatch"]
    error = body["errors"][0]
    assert error["where"] == "BDO-1"
    # Both values: the declaration and what the content is.
    assert "application/pdf" in error["message"]
    assert "x-fmt/263" in error["message"]
    assert "Content/délibération.pdf" in error["message"]
    _nothing_stored(api)
    atr = api.client.get(body["atr_url"], headers=api.auth())
    reply = seda.read_transfer_reply(atr.content)
    assert reply.reply_code == "KO"
    assert "format.mismatch" in atr.text
    assert "x-fmt/263" in atr.text


def test_the_identification_is_recorded_shown_exported_and_replayable(
    api: Api, xsd_dir: Path
) -> None:
    response = _deposit(
        api, "MSG-IDENT", FileSpec(uri="Content/arrêté.pdf", data=PDF, mime="application/pdf")
    )
    assert response.status_code == 201, response.text  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    obj = next(o for o in body["objects"] if o["sip_id"] == "BDO-1")
    assert obj["format_puid"] == "fmt/18"
    described = api.client.get(f"/api/v1/objects/{obj['id']}", headers=api.auth()).json()
    assert described["format_puid"] == "fmt/18"
    assert described["format_name"] == "Acrobat PDF 1.4 - Portable Document Format"
    assert described["format_version"] == "1.4"
    assert described["format_id"] is None  # the declaration said no FormatId

    # The journal leaf of the object carries it (a rebuild checks the description against it).
    with api.runtime.sessions() as session:
        leaf = session.scalars(
            select(Event).where(Event.type == "ingest.object_stored", Event.object_id == obj["id"])
        ).one()
    assert leaf.payload["format_puid"] == "fmt/18"
    # The transfer's description on the offers (what a rebuild restores the catalogue from).
    key = transfer_record_key(body["transfer_id"])
    for offer in api.runtime.strategy_offers:
        record = read_transfer_record(b"".join(offer.get(key))).record
        row = next(o for o in record["objects"] if o["id"] == obj["id"])
        assert (row["format_puid"], row["format_version"]) == ("fmt/18", "1.4")
        json.dumps(record)

    # The DIP's manifest: FormatIdentification with PRONOM's name, the MIME type, the PUID.
    root_unit = next(u["id"] for u in body["units"] if u["sip_id"] == "AU-root")
    dip = api.client.get(f"/api/v1/units/{root_unit}/dip", headers=api.auth())
    assert dip.status_code == 200, dip.text
    with zipfile.ZipFile(io.BytesIO(dip.content)) as zf:
        manifest = zf.read("manifest.xml")
    root = seda.safe_parse(manifest)
    assert seda.XsdValidator(xsd_dir).validate(root, "2.2") == []
    ns = root.tag.split("}")[0] + "}"
    formats = {
        bdo.get("id"): bdo.find(f"{ns}FormatIdentification")
        for bdo in root.iter(f"{ns}BinaryDataObject")
    }
    ours = formats[f"BDO-{obj['id']}"]
    assert ours is not None
    assert ours.findtext(f"{ns}FormatId") == "fmt/18"
    assert ours.findtext(f"{ns}MimeType") == "application/pdf"
    assert ours.findtext(f"{ns}FormatLitteral") == "Acrobat PDF 1.4 - Portable Document Format"


def test_the_samples_are_still_accepted(api: Api, samples_dir: Path) -> None:
    """The accepted samples declare PDFs, ODF files (fmt/291 where PRONOM finds fmt/290: the
    same MIME type), a JPEG, text: no contradiction."""
    accepted = 0
    for name in (
        "seda2.1-itests-OK_SIP_2_GO.zip",
        "seda2.3-vitamdoc-cookbook1_SigningInformation_cas_simple_SIP.zip",
    ):
        path = samples_dir / name
        response = api.deposit(path.read_bytes())
        codes = [e["code"] for e in response.json().get("errors", [])]
        assert "format.mismatch" not in codes, response.text
        if response.status_code == 201:
            accepted += 1
            puids = {o["format_puid"] for o in response.json()["objects"]}
            assert puids & {"fmt/18", "fmt/19", "fmt/290"}
    assert accepted >= 1


@pytest.mark.parametrize(
    "size", [0, 10, IDENTIFY_BYTES - 1, IDENTIFY_BYTES + 1, 3 * 1024 * 1024 + 7]
)
@pytest.mark.parametrize("chunk", [1000, 1024 * 1024])
def test_the_readers_keep_the_head_and_the_tail(tmp_path: Path, size: int, chunk: int) -> None:
    """What identification is given: the first and last bytes, whichever way the file is read
    (through the zip in chunks, or straight from the SIP's file)."""
    import os
    import random

    from sae.ingest.hashing import HashingReader, SpanReader

    data = random.Random(size).randbytes(size)
    reader = HashingReader(iter([data[i : i + chunk] for i in range(0, size, chunk)]), "SHA-512")
    while reader.read(65536 + 3):
        pass
    assert reader.head == data[:IDENTIFY_BYTES]
    assert reader.tail == data[-IDENTIFY_BYTES:]
    path = tmp_path / "sip"
    path.write_bytes(b"x" * 100 + data + b"y" * 50)
    fd = os.open(path, os.O_RDONLY)
    try:
        span = SpanReader(fd, 100, size)
        assert span.head == data[:IDENTIFY_BYTES]
        assert span.tail == data[-IDENTIFY_BYTES:]
    finally:
        os.close(fd)


def test_concurrent_first_uses_load_the_signatures_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first deposits of a new process arrive together: one load, the others wait for it
    (each loading its own cost 20-25 CPU-seconds per start under 8 clients, session 13)."""
    loads: list[int] = []
    real = identify._load

    def counted() -> identify.Identifier:
        loads.append(1)
        return real()

    monkeypatch.setattr(identify, "_load", counted)
    monkeypatch.setattr(identify, "_loaded", None)
    start = threading.Barrier(8)
    got: list[identify.Identifier] = []

    def first_deposit() -> None:
        start.wait()
        got.append(identify.identifier())

    threads = [threading.Thread(target=first_deposit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(loads) == 1
    assert len(got) == 8
    assert all(one is got[0] for one in got)
    assert got[0].identify(PDF[:IDENTIFY_BYTES], PDF[-IDENTIFY_BYTES:]) is not None
