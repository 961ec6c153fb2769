"""``transfers/<id>.zip`` is laid out by hand (``sae.ingest.transfer_record``) for its cost
before the 201: its bytes must stay exactly those :mod:`zipfile` writes for the same members,
which any ``unzip`` reads."""

from __future__ import annotations

import io
import random
import zipfile
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from sae.ingest.transfer_record import (
    MEMBERS,
    build_transfer_record,
    canonical_json,
    read_transfer_record,
)


def zipfile_record(
    manifest: bytes, atr: bytes, record: dict[str, Any], *, received_at: datetime
) -> bytes:
    """What ``zipfile`` writes for the three members, as the format was first written."""
    stamp = received_at.astimezone(UTC).timetuple()[:6]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in zip(MEMBERS, (manifest, atr, canonical_json(record)), strict=True):
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3
            info.external_attr = 0o100444 << 16
            archive.writestr(info, data)
    return buffer.getvalue()


def test_the_bytes_are_those_zipfile_writes() -> None:
    rng = random.Random(17)
    for _ in range(200):
        manifest = rng.randbytes(rng.randrange(0, 4000))
        atr = "<ATR>é</ATR>".encode() * rng.randrange(0, 300)
        record = {"format": "x", "títle": "ü" * rng.randrange(0, 80), "n": [1, None, 2.5]}
        zone = timezone(timedelta(minutes=rng.randrange(-720, 720, 15)))
        received = datetime(
            rng.randrange(1980, 2100),
            rng.randrange(1, 13),
            rng.randrange(1, 29),
            rng.randrange(24),
            rng.randrange(60),
            rng.randrange(60),
            tzinfo=zone,
        ).astimezone(UTC)
        built = build_transfer_record(manifest, atr, record, received_at=received)
        assert built == zipfile_record(manifest, atr, record, received_at=received)
        files = read_transfer_record(built)
        assert (files.manifest, files.atr, files.record) == (manifest, atr, record)
        with zipfile.ZipFile(io.BytesIO(built)) as archive:
            assert archive.testzip() is None
            assert [info.date_time for info in archive.infolist()] == [
                received.timetuple()[:6][:5] + (received.second // 2 * 2,)
            ] * 3


def test_a_reception_before_1980_cannot_date_a_member() -> None:
    with pytest.raises(ValueError, match="1980"):
        build_transfer_record(b"", b"", {}, received_at=datetime(1979, 12, 31, 23, tzinfo=UTC))
