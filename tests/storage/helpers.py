"""Typed helpers for storage tests: faulty offers and damaged copies."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime
from typing import Any, BinaryIO

from sae.storage.base import StorageOffer, StoredObject
from sae.storage.errors import OfferUnavailable
from sae.storage.filesystem import FilesystemOffer


class _BreaksAfter:
    """Reads ``source`` and fails after ``limit`` bytes, like a connection cut mid-upload."""

    def __init__(self, source: BinaryIO, limit: int, offer: str) -> None:
        self._source = source
        self._left = limit
        self._offer = offer

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            raise OfferUnavailable(self._offer, "connection reset by peer (simulated)")
        chunk = self._source.read(min(size if size > 0 else self._left, self._left))
        self._left -= len(chunk)
        return chunk


class FailingOffer:
    """Wraps an offer so that ``put`` breaks after ``fail_after`` bytes."""

    def __init__(self, inner: StorageOffer, fail_after: int) -> None:
        self.inner = inner
        self.fail_after = fail_after
        self.name = inner.name
        self.kind = inner.kind
        self.jurisdiction = inner.jurisdiction
        self.region = inner.region
        self.site = inner.site
        self.quarantine_days = inner.quarantine_days

    def put(
        self,
        key: str,
        source: BinaryIO,
        *,
        retain_until: datetime | None,
        expected_sha512: str | None = None,
    ) -> StoredObject:
        broken: Any = _BreaksAfter(source, self.fail_after, self.name)
        return self.inner.put(
            key, broken, retain_until=retain_until, expected_sha512=expected_sha512
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def get(self, key: str) -> Iterator[bytes]:
        return self.inner.get(key)


def flip_byte(offer: FilesystemOffer, key: str, offset: int = 0) -> None:
    """Corrupt one byte of a filesystem copy behind the offer's back (bit rot, tampering)."""
    path = offer.root / "data" / key
    os.chmod(path, 0o644)
    with path.open("r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0x01]))
    os.chmod(path, 0o444)


def remove_copy(offer: FilesystemOffer, key: str) -> None:
    """Lose a filesystem copy behind the offer's back."""
    (offer.root / "data" / key).unlink()
