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
import zipfile
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
    """The bytes of ``transfers/<id>.zip`` (see the module's docstring)."""
    stamp = received_at.astimezone(UTC).timetuple()[:6]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in (
            (MANIFEST_MEMBER, manifest),
            (ATR_MEMBER, atr),
            (RECORD_MEMBER, canonical_json(record)),
        ):
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3  # Unix, whatever machine wrote it
            info.external_attr = 0o100444 << 16  # a regular, read-only file
            archive.writestr(info, data)
    return buffer.getvalue()


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
