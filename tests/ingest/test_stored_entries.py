"""Files stored (not deflated) in the SIP, with a declared SHA-512, are copied straight from the
SIP's file, in the kernel on the local offer (``copy_file_range``), without the zip's CRC-32:
the copy's read-back against the declared SHA-512 is the check. Every other file goes through
the zip reader. Whichever way, the copy is the file, and a corrupt entry is still named."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import zipfile
from pathlib import Path

import pytest

from sae import fileio
from sae.ingest.errors import SipRefused
from sae.ingest.ziparchive import SipArchive, ZipLimits
from tests.conftest import Api
from tests.sipfactory import FileSpec, UnitSpec, build_zip, manifest, simple_sip


@pytest.fixture
def kernel_copies(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The byte counts each ``copy_file_range`` call copied."""
    real = os.copy_file_range
    copied: list[int] = []

    def counting(src: int, dst: int, count: int, offset_src: int | None = None) -> int:
        done = real(src, dst, count, offset_src)
        copied.append(done)
        return done

    monkeypatch.setattr(fileio.os, "copy_file_range", counting)
    return copied


def _sip(
    message_id: str, payload: bytes, *, store: bool = True, algorithm: str = "SHA-512"
) -> bytes:
    spec = simple_sip(message_id, payload=payload)
    spec.files[0] = FileSpec(uri=spec.files[0].uri, data=payload, algorithm=algorithm)
    return build_zip(spec, store_files=store)


def _deposited_content(api: Api, sip: bytes) -> bytes:
    response = api.deposit(sip)
    assert response.status_code == 201, response.text
    obj = response.json()["objects"][0]
    content = api.client.get(f"/api/v1/objects/{obj['id']}/content", headers=api.auth())
    assert content.status_code == 200
    assert hashlib.sha512(content.content).hexdigest() == obj["sha512"]
    return bytes(content.content)


def test_a_stored_file_with_a_declared_sha512_is_copied_by_the_kernel(
    api: Api, kernel_copies: list[int]
) -> None:
    payload = b"%PDF-1.4\n" + os.urandom(9 * 1024 * 1024 + 17)  # several copy steps
    assert _deposited_content(api, _sip("MSG-KERNEL-COPY", payload)) == payload
    assert sum(kernel_copies) == len(payload)  # the first copy; the others stream from it
    assert len(kernel_copies) > 1


@pytest.mark.parametrize(
    ("store", "algorithm"), [(False, "SHA-512"), (True, "SHA-256")], ids=["deflated", "sha256"]
)
def test_other_files_go_through_the_zip_reader(
    api: Api, kernel_copies: list[int], store: bool, algorithm: str
) -> None:
    payload = b"%PDF-1.4\n" + os.urandom(300_000)
    assert (
        _deposited_content(
            api, _sip(f"MSG-ZIP-{store}-{algorithm}", payload, store=store, algorithm=algorithm)
        )
        == payload
    )
    assert kernel_copies == []


def _kernel_copy_fails(monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    def failing(*args: object) -> int:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(fileio.os, "copy_file_range", failing)


def _nothing_stored(api: Api) -> None:
    for offer in api.runtime.offer_set.offers.values():
        assert list(offer.list_keys("objects/")) == []


def test_where_the_kernel_cannot_copy_the_bytes_go_through_python(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another filesystem (EXDEV), an old kernel (ENOSYS)…: the same copy, read and written."""
    _kernel_copy_fails(monkeypatch, errno.EXDEV)
    payload = b"%PDF-1.4\n" + os.urandom(5 * 1024 * 1024 + 3)
    assert _deposited_content(api, _sip("MSG-NO-KERNEL-COPY", payload)) == payload


def test_a_failing_kernel_copy_is_a_clean_storage_error(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real error of the copy (the disk full) is not mistaken for "cannot copy here"."""
    _kernel_copy_fails(monkeypatch, errno.ENOSPC)
    response = api.deposit(_sip("MSG-KERNEL-ENOSPC", b"%PDF-1.4\n" + os.urandom(100_000)))
    assert response.status_code == 503, response.text
    assert [e["code"] for e in response.json()["errors"]] == ["storage.write_failed"]
    _nothing_stored(api)


def test_a_flipped_byte_in_a_stored_file_is_a_corrupt_entry(
    api: Api, kernel_copies: list[int]
) -> None:
    """The copy does not read back as declared: the entry is read again through the zip,
    whose CRC-32 names the fault (the SIP's, not the storage's), and nothing stays."""
    payload = b"%PDF-1.4\n" + os.urandom(2 * 1024 * 1024)
    data = bytearray(_sip("MSG-KERNEL-CORRUPT", payload))
    data[bytes(data).find(payload[:64]) + 1_000_000] ^= 0x01
    response = api.deposit(bytes(data))
    assert response.status_code == 422, response.text
    assert [e["code"] for e in response.json()["errors"]] == ["sip.corrupt_entry"]
    assert sum(kernel_copies) == len(payload)  # it was copied, then found wrong
    _nothing_stored(api)


def _archive(tmp_path: Path, data: bytes) -> SipArchive:
    path = tmp_path / "sip.zip"
    path.write_bytes(data)
    return SipArchive(path, ZipLimits(100, 10**9, 1000.0, 10**6))


def _two_entries() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("manifest.xml", manifest(simple_sip()), compress_type=zipfile.ZIP_DEFLATED)
        zf.writestr("Content/a.bin", b"A" * 5000, compress_type=zipfile.ZIP_STORED)
    return out.getvalue()


def test_span_of_a_stored_entry_is_its_bytes(tmp_path: Path) -> None:
    with _archive(tmp_path, _two_entries()) as archive:
        span = archive.span("Content/a.bin")
        assert span is not None
        fd, offset, length = span
        assert os.pread(fd, length, offset) == b"A" * 5000
        assert archive.span("manifest.xml") is None  # deflated: only through the zip reader


def test_a_forged_local_header_has_no_span(tmp_path: Path) -> None:
    """A local header whose signature is wrong, or whose name length leads past the end of the
    file: no span; the zip reader then reports the entry as corrupt."""
    data = bytearray(_two_entries())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        at = zf.getinfo("Content/a.bin").header_offset
    forged = bytearray(data)
    forged[at : at + 4] = b"PK\x07\x08"
    with _archive(tmp_path, bytes(forged)) as archive:
        assert archive.span("Content/a.bin") is None
        with pytest.raises(SipRefused) as refused:
            b"".join(archive.stream("Content/a.bin"))
        assert [f.code for f in refused.value.faults] == ["sip.corrupt_entry"]
    past = bytearray(data)
    past[at + 26 : at + 28] = (60_000).to_bytes(2, "little")
    with _archive(tmp_path, bytes(past)) as archive:
        assert archive.span("Content/a.bin") is None


def test_spans_are_read_by_several_threads_at_once(api: Api) -> None:
    """Eight stored files, stored two at a time from the same descriptor."""
    spec = simple_sip("MSG-KERNEL-MANY")
    spec.files = [
        FileSpec(uri=f"Content/{i}.pdf", data=b"%PDF-1.4\n" + os.urandom(700_000 + i))
        for i in range(8)
    ]
    spec.units[0].children = [UnitSpec(id=f"AU-{i}", title=str(i), files=[i]) for i in range(8)]
    response = api.deposit(build_zip(spec, store_files=True))
    assert response.status_code == 201, response.text
    by_digest = {hashlib.sha512(f.data).hexdigest(): f.data for f in spec.files}
    for obj in response.json()["objects"]:
        content = api.client.get(f"/api/v1/objects/{obj['id']}/content", headers=api.auth())
        assert content.content == by_digest[obj["sha512"]]
