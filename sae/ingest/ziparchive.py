"""Reading a SIP zip safely.

Every entry is vetted before a byte is extracted: no absolute path, no ``..``, no link, no device,
no encrypted entry, no duplicate name; limits on entry count, total uncompressed size and
compression ratio stop zip bombs. Reading an entry streams it and enforces the declared size, so
a forged header cannot smuggle more bytes than it admits.
"""

from __future__ import annotations

import lzma
import os
import stat
import struct
import threading
import unicodedata
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote

from sae.ingest.errors import IngestFault, SipRefused

CHUNK = 1024 * 1024

#: A local file header: its signature, then (at byte 26) the lengths of the name and the extra
#: field that come before the entry's bytes (APPNOTE 4.3.7).
_LOCAL_HEADER = struct.Struct("<4s22xHH")
_LOCAL_SIGNATURE = b"PK\x03\x04"


@dataclass(frozen=True)
class ZipLimits:
    """Bounds applied to every SIP."""

    max_entries: int
    max_uncompressed_bytes: int
    max_compression_ratio: float
    max_manifest_bytes: int


def _entry_faults(info: zipfile.ZipInfo, limits: ZipLimits) -> list[IngestFault]:
    name = info.filename
    faults: list[IngestFault] = []
    where = name
    if not name:
        # zipfile itself fails on an empty name (ZipInfo.is_dir indexes name[-1]).
        faults.append(IngestFault("sip.unsafe_path", "entry with an empty name", where))
        return faults
    if "\x00" in name:
        faults.append(IngestFault("sip.unsafe_path", "entry name contains a NUL byte", where))
        return faults
    if "\\" in name:
        faults.append(IngestFault("sip.unsafe_path", "entry name uses a backslash", where))
    path = PurePosixPath(name)
    if path.is_absolute() or (len(name) > 1 and name[1] == ":"):
        faults.append(IngestFault("sip.unsafe_path", "absolute entry name", where))
    if any(part == ".." for part in path.parts):
        faults.append(IngestFault("sip.unsafe_path", "entry name escapes the SIP root", where))
    # Unix zips keep the file type in the high bits; many writers leave them at 0 (plain file).
    file_type = stat.S_IFMT(info.external_attr >> 16)
    if info.create_system == 3 and file_type not in (0, stat.S_IFREG, stat.S_IFDIR):
        faults.append(IngestFault("sip.unsafe_entry", "entry is a link or a special file", where))
    if info.flag_bits & 0x1:
        faults.append(IngestFault("sip.encrypted_entry", "encrypted entries are refused", where))
    if info.compress_size > 0:
        ratio = info.file_size / info.compress_size
        if ratio > limits.max_compression_ratio and info.file_size > 1024 * 1024:
            faults.append(
                IngestFault(
                    "sip.zip_bomb",
                    f"compression ratio {ratio:.0f}:1 exceeds {limits.max_compression_ratio:.0f}:1",
                    where,
                )
            )
    return faults


def normalise_name(name: str) -> str:
    """The comparison form of a path: NFC, forward slashes, no leading ``./``."""
    name = unicodedata.normalize("NFC", name)
    while name.startswith("./"):
        name = name[2:]
    return name


class SipArchive:
    """A vetted SIP zip: the file entries by normalised name."""

    def __init__(self, path: Path, limits: ZipLimits) -> None:
        self.path = path
        self.limits = limits
        self._owner = threading.get_ident()
        self._local = threading.local()
        self._others: list[zipfile.ZipFile] = []
        self._others_lock = threading.Lock()
        self._fd: int | None = None  # for reading stored entries directly (see span())
        try:
            self._zip = zipfile.ZipFile(path)
        # NotImplementedError is zipfile's answer to an archive it cannot read (an unsupported
        # compression method or zip version): the depositor's fault, caught, never raised here.
        except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError) as exc:
            raise SipRefused(
                [IngestFault("sip.not_a_zip", f"the body is not a readable zip archive: {exc}")]
            ) from None
        try:
            self.entries = self._vet()
        except BaseException:
            self._zip.close()
            raise

    def _vet(self) -> dict[str, zipfile.ZipInfo]:
        infos = self._zip.infolist()
        if len(infos) > self.limits.max_entries:
            raise SipRefused(
                [
                    IngestFault(
                        "sip.too_many_entries",
                        f"{len(infos)} entries; the limit is {self.limits.max_entries}",
                    )
                ]
            )
        faults: list[IngestFault] = []
        entries: dict[str, zipfile.ZipInfo] = {}
        total = 0
        for info in infos:
            entry_faults = _entry_faults(info, self.limits)
            faults.extend(entry_faults)
            if not info.filename or info.is_dir():
                continue
            total += info.file_size
            key = normalise_name(info.filename)
            if key in entries:
                faults.append(IngestFault("sip.duplicate_entry", "entry appears twice", key))
            entries[key] = info
        if total > self.limits.max_uncompressed_bytes:
            faults.append(
                IngestFault(
                    "sip.too_large",
                    f"{total} bytes uncompressed; the limit is "
                    f"{self.limits.max_uncompressed_bytes}",
                )
            )
        if faults:
            raise SipRefused(faults)
        return entries

    def _handle(self) -> zipfile.ZipFile:
        """This thread's handle on the (already vetted) zip: entries are read by several
        threads at once, and a ``ZipFile`` is not meant to be shared between them."""
        if threading.get_ident() == self._owner:
            return self._zip
        handle: zipfile.ZipFile | None = getattr(self._local, "zip", None)
        if handle is None:
            handle = zipfile.ZipFile(self.path)
            self._local.zip = handle
            with self._others_lock:
                self._others.append(handle)
        return handle

    def close(self) -> None:
        with self._others_lock:
            for handle in self._others:
                handle.close()
            self._others.clear()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._zip.close()

    def __enter__(self) -> SipArchive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def find(self, uri: str) -> str | None:
        """The entry a SEDA ``Uri`` designates (as written, or percent-decoded), if any."""
        for candidate in (uri, unquote(uri)):
            key = normalise_name(candidate)
            if key in self.entries:
                return key
        return None

    def read_small(self, name: str, limit: int) -> bytes:
        """An entry's bytes, refused past ``limit`` (used for the manifest)."""
        info = self.entries[name]
        if info.file_size > limit:
            raise SipRefused(
                [
                    IngestFault(
                        "sip.manifest_too_large",
                        f"{info.file_size} bytes; the limit is {limit}",
                        name,
                    )
                ]
            )
        return b"".join(self.stream(name))

    def span(self, name: str) -> tuple[int, int, int] | None:
        """Where a stored (not deflated) entry's bytes lie in the SIP's file: a descriptor any
        thread may ``pread``, the offset and the length. None for a compressed entry, or when
        the entry's local header does not lead to bytes inside the file (``stream`` then
        reports what is wrong). The bytes are not checked against the zip's CRC-32: only for a
        file whose copies are checked against its declared SHA-512."""
        info = self.entries[name]
        if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
            return None
        with self._others_lock:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            fd = self._fd
        header = os.pread(fd, _LOCAL_HEADER.size, info.header_offset)
        if len(header) != _LOCAL_HEADER.size:
            return None
        signature, name_length, extra_length = _LOCAL_HEADER.unpack(header)
        start = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
        if signature != _LOCAL_SIGNATURE or start + info.file_size > os.fstat(fd).st_size:
            return None
        return fd, start, info.file_size

    def stream(self, name: str) -> Iterator[bytes]:
        """An entry's bytes in chunks, never more than its declared size, CRC checked."""
        info = self.entries[name]
        read = 0
        try:
            with self._handle().open(info) as fh:
                while True:
                    chunk = fh.read(CHUNK)
                    if not chunk:
                        break
                    read += len(chunk)
                    if read > info.file_size:
                        raise SipRefused(
                            [IngestFault("sip.size_forged", "entry longer than declared", name)]
                        )
                    yield chunk
        except (
            zipfile.BadZipFile,
            OSError,
            EOFError,
            NotImplementedError,  # zipfile: an unsupported compression method (caught)
            # A local header name that is not UTF-8 (UnicodeDecodeError), a forged offset…
            ValueError,
            # A forged compressed stream fails inside the decompressor, not in zipfile.
            zlib.error,
            lzma.LZMAError,
        ) as exc:
            raise SipRefused(
                [IngestFault("sip.corrupt_entry", f"entry cannot be read: {exc}", name)]
            ) from None
