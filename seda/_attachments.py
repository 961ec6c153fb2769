"""The attachments of a transfer sent beside its bordereau: a ``.tar.gz`` or a ``.zip``, read
safely.

The format is told by magic bytes (Pastell names the file after its own storage, e.g.
``1a2b.yml_sae_archive_0``), never by the name. Every member is vetted before a byte of it is
read: regular files and folders only (no symbolic or hard link, no device, FIFO or sparse
file), no absolute name, no ``..``, no backslash or NUL; caps on the member count, each member's
size and the total (the tar's own headers give sizes; a gzip bomb is stopped by the total cap,
counted on the bytes actually read). Nothing is written to the disk here: members are handed to
the caller as streams, under their checked names, which the caller must not use as paths.
"""

from __future__ import annotations

import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from ._errors import Fault, StructureInvalid

__all__ = ["AttachmentLimits", "attachments_format", "iter_attachments"]

_GZIP = b"\x1f\x8b"
_ZIP = b"PK\x03\x04"
_EMPTY_ZIP = b"PK\x05\x06"
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class AttachmentLimits:
    """Bounds applied to an attachments archive."""

    max_members: int = 100_000
    max_total_bytes: int = 64 * 1024**3
    max_member_bytes: int = 16 * 1024**3


def attachments_format(path: Path) -> str | None:
    """``"tar.gz"``, ``"zip"``, ``"tar"`` (uncompressed, by its ``ustar`` magic) or ``None``."""
    with path.open("rb") as handle:
        head = handle.read(512)
    if head.startswith(_GZIP):
        return "tar.gz"
    if head.startswith(_ZIP) or head.startswith(_EMPTY_ZIP):
        return "zip"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    return None


def _refuse(code: str, message: str, where: str | None = None) -> StructureInvalid:
    return StructureInvalid(faults=[Fault(code, message, where)])


def check_member_name(name: str) -> str:
    """The member's name without a leading ``./``, or :class:`~seda.StructureInvalid`."""
    if not name or "\x00" in name:
        raise _refuse("attachments.unsafe_path", "member with an empty name or a NUL byte", name)
    if "\\" in name:
        raise _refuse("attachments.unsafe_path", "member name uses a backslash", name)
    path = PurePosixPath(name)
    if path.is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise _refuse("attachments.unsafe_path", "absolute member name", name)
    if any(part == ".." for part in path.parts):
        raise _refuse("attachments.unsafe_path", "member name escapes the archive's root", name)
    while name.startswith("./"):
        name = name[2:]
    return name


class _Counted:
    """A read-only stream over a member that enforces the member and total caps on what is
    actually read (a forged header cannot smuggle more bytes than the caps allow)."""

    def __init__(self, raw: IO[bytes], name: str, budget: list[int], limit: int) -> None:
        self._raw = raw
        self._name = name
        self._budget = budget
        self._left = limit

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(_CHUNK if size is None or size < 0 else size)
        self._left -= len(data)
        self._budget[0] -= len(data)
        if self._left < 0:
            raise _refuse("attachments.too_large", "member larger than allowed", self._name)
        if self._budget[0] < 0:
            raise _refuse("attachments.too_large", "attachments larger than allowed", self._name)
        return data


def iter_attachments(path: Path, limits: AttachmentLimits) -> Iterator[tuple[str, IO[bytes]]]:
    """Each regular file of the archive at ``path``: its checked name and a stream of its bytes
    (read it before asking for the next). Raises :class:`~seda.StructureInvalid` with a fault
    ``attachments.*`` (``unknown_format``, ``unreadable``, ``unsafe_path``, ``unsafe_entry``,
    ``duplicate``, ``too_many``, ``too_large``) on the first hostile or unreadable member."""
    kind = attachments_format(path)
    if kind is None:
        raise _refuse(
            "attachments.unknown_format",
            "the attachments are neither a tar.gz nor a zip archive (by their first bytes)",
        )
    if kind == "zip":
        yield from _iter_zip(path, limits)
    else:
        yield from _iter_tar(path, limits, "r|gz" if kind == "tar.gz" else "r|")


def _iter_tar(path: Path, limits: AttachmentLimits, mode: str) -> Iterator[tuple[str, IO[bytes]]]:
    seen: set[str] = set()
    budget = [limits.max_total_bytes]
    count = 0
    try:
        with path.open("rb") as raw, tarfile.open(fileobj=raw, mode=mode) as archive:  # type: ignore[call-overload]
            for member in archive:
                count += 1
                if count > limits.max_members:
                    raise _refuse("attachments.too_many", f"more than {limits.max_members} members")
                name = check_member_name(member.name)
                if member.isdir():
                    continue
                if not member.isreg() or member.issparse():
                    raise _refuse(
                        "attachments.unsafe_entry",
                        "member is a link, a device, a FIFO or a sparse file",
                        member.name,
                    )
                if member.size > limits.max_member_bytes or member.size > budget[0]:
                    raise _refuse("attachments.too_large", "member larger than allowed", name)
                if name in seen:
                    raise _refuse("attachments.duplicate", "member present twice", name)
                seen.add(name)
                stream = archive.extractfile(member)
                if stream is None:  # pragma: no cover - isreg() members always have one
                    raise _refuse("attachments.unreadable", "member cannot be read", name)
                yield name, _Counted(stream, name, budget, limits.max_member_bytes)  # type: ignore[misc]
    except (tarfile.TarError, EOFError, OSError) as error:
        raise _refuse(
            "attachments.unreadable", f"the tar archive cannot be read: {error}"
        ) from None


def _iter_zip(path: Path, limits: AttachmentLimits) -> Iterator[tuple[str, IO[bytes]]]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError) as error:
        raise _refuse(
            "attachments.unreadable", f"the zip archive cannot be read: {error}"
        ) from None
    budget = [limits.max_total_bytes]
    with archive:
        infos = archive.infolist()
        if len(infos) > limits.max_members:
            raise _refuse("attachments.too_many", f"more than {limits.max_members} members")
        seen: set[str] = set()
        for info in infos:
            name = check_member_name(info.filename)
            file_type = (info.external_attr >> 16) & 0o170000
            if info.create_system == 3 and file_type not in (0, 0o100000, 0o040000):
                raise _refuse("attachments.unsafe_entry", "member is a link or a device", name)
            if info.flag_bits & 0x1:
                raise _refuse("attachments.unsafe_entry", "encrypted member", name)
            if info.is_dir():
                continue
            if info.file_size > limits.max_member_bytes or info.file_size > budget[0]:
                raise _refuse("attachments.too_large", "member larger than allowed", name)
            if name in seen:
                raise _refuse("attachments.duplicate", "member present twice", name)
            seen.add(name)
            try:
                with archive.open(info) as stream:
                    yield name, _Counted(stream, name, budget, limits.max_member_bytes)  # type: ignore[misc]
            except (zipfile.BadZipFile, OSError, NotImplementedError, EOFError) as error:
                raise _refuse("attachments.unreadable", f"cannot read: {error}", name) from None
