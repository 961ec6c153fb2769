"""A transfer's description on the offers: ``transfers/<transfer id>.zip`` (issue 17).

One object per accepted transfer, written to every offer of the strategy before the transfer is
acknowledged, so that the offers alone say what each transfer was and what SAE made of it. A ZIP
whose members are STORED (not compressed: a reader needs nothing but ``unzip``, and the
manifest's bytes stay visible as they are) with the transfer's reception as their timestamp,
so that the bytes are a function of the transfer:

- ``manifest.xml``: the manifest, byte for byte as read from the SIP;
- ``atr.xml``: the ArchiveTransferReply sent back;
- ``record.json``: what SAE assigned (``sae.catalog.records``), canonical JSON (sorted keys,
  no spaces, UTF-8).

Reading one back (:func:`read_transfer_record`) takes the same care as the SIP reader: exactly
these three members, each stored, none larger than the archive, no XML parsed here.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

PREFIX = "transfers/"
#: ``metadata_copies.kind`` of a transfer's description.
KIND = "transfer"
MANIFEST_MEMBER = "manifest.xml"
ATR_MEMBER = "atr.xml"
RECORD_MEMBER = "record.json"
MEMBERS = (MANIFEST_MEMBER, ATR_MEMBER, RECORD_MEMBER)


class TransferRecordError(ValueError):
    """An object under ``transfers/`` that is not a transfer's description."""


@dataclass(frozen=True)
class TransferRecordFiles:
    """The three members of ``transfers/<id>.zip``; ``record`` is ``record.json`` parsed."""

    manifest: bytes
    atr: bytes
    record: dict[str, Any]


def transfer_record_key(transfer_id: str) -> str:
    """Where a transfer's description lives on every offer."""
    return f"{PREFIX}{transfer_id}.zip"


def canonical_json(value: Any) -> bytes:
    """The one serialisation of a record: sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def build_transfer_record(
    manifest: bytes, atr: bytes, record: dict[str, Any], *, received_at: datetime
) -> bytes:
    """The bytes of ``transfers/<id>.zip`` (see the module's docstring).

    Laid out here rather than by :mod:`zipfile`, which built its headers, wrote each member
    through a file object and went back to patch its sizes: a fifth of the description's cost
    before the 201. The bytes are exactly those ``zipfile`` writes for the same members (the
    tests compare them): three stored members, no extra fields, no comment, no ZIP64.
    """
    stamp = received_at.astimezone(UTC)
    if stamp.year < 1980:
        raise ValueError("a ZIP member cannot be dated before 1980")
    dosdate = (stamp.year - 1980) << 9 | stamp.month << 5 | stamp.day
    dostime = stamp.hour << 11 | stamp.minute << 5 | stamp.second // 2
    parts: list[bytes] = []
    central: list[bytes] = []
    offset = 0
    for name, data in (
        (MANIFEST_MEMBER, manifest),
        (ATR_MEMBER, atr),
        (RECORD_MEMBER, canonical_json(record)),
    ):
        filename = name.encode("ascii")
        # The fields the local and the central headers share: flags, method, time, date,
        # CRC-32, stored and real sizes, name length, extra field length.
        size = len(data)
        fields = (0, _STORED, dostime, dosdate, zlib.crc32(data), size, size, len(filename), 0)
        if size * 1.05 > _ZIP64_LIMIT:  # zipfile's own test for a ZIP64 member
            raise ValueError(f"{name}: too large for a ZIP member without ZIP64")
        header = _LOCAL_HEADER.pack(b"PK\x03\x04", _VERSION, 0, *fields)
        central.append(_CENTRAL_HEADER.pack(*_CENTRAL_LEAD, *fields, *_CENTRAL_TAIL, offset))
        central.append(filename)
        parts += (header, filename, data)
        offset += len(header) + len(filename) + size
    directory = b"".join(central)
    if offset > _ZIP64_LIMIT:  # zipfile would have written ZIP64 offsets; this is a few KiB
        raise ValueError("a transfer's description too large for a ZIP without ZIP64")
    end = _END_RECORD.pack(b"PK\x05\x06", 0, 0, 3, 3, len(directory), offset, 0)
    return b"".join([*parts, directory, end])


#: The ZIP structures (APPNOTE 4.3.7, 4.3.12, 4.3.16) as ``zipfile`` packs them.
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")
_CENTRAL_HEADER = struct.Struct("<4s4B4HL2L5H2L")
_END_RECORD = struct.Struct("<4s4H2LH")
_VERSION = 20  # "version needed to extract" and "made by": 2.0, what stored members need
_UNIX = 3  # made by Unix, whatever machine wrote it: the attributes below are Unix modes
_STORED = 0
_READ_ONLY_FILE = 0o100444 << 16  # a regular, read-only file
#: The central header's fields before and after those it shares with the local one: made by
#: (version, system), needed, reserved; then comment length, disk, internal and external
#: attributes (the local header's offset follows).
_CENTRAL_LEAD = (b"PK\x01\x02", _VERSION, _UNIX, _VERSION, 0)
_CENTRAL_TAIL = (0, 0, 0, _READ_ONLY_FILE)
_ZIP64_LIMIT = (1 << 31) - 1  # zipfile's threshold


def read_transfer_record(data: bytes) -> TransferRecordFiles:
    """The members of a ``transfers/<id>.zip``; :class:`TransferRecordError` unless it is
    exactly what :func:`build_transfer_record` writes (three stored members, once each)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            names = [info.filename for info in infos]
            if sorted(names) != sorted(MEMBERS):
                raise TransferRecordError(f"members {names}, expected {list(MEMBERS)}")
            for info in infos:
                if info.compress_type != zipfile.ZIP_STORED or info.file_size > len(data):
                    raise TransferRecordError(f"{info.filename}: not a stored member")
                if info.flag_bits & 0x1:
                    raise TransferRecordError(f"{info.filename}: encrypted")
            files = {name: archive.read(name) for name in MEMBERS}
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError) as exc:
        raise TransferRecordError(f"not a readable zip: {exc}") from exc
    try:
        record = json.loads(files[RECORD_MEMBER])
    except (ValueError, UnicodeDecodeError) as exc:
        raise TransferRecordError(f"{RECORD_MEMBER}: not JSON: {exc}") from exc
    if not isinstance(record, dict):
        raise TransferRecordError(f"{RECORD_MEMBER}: not an object")
    return TransferRecordFiles(files[MANIFEST_MEMBER], files[ATR_MEMBER], record)
