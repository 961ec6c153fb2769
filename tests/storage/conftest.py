"""Offers for the storage tests: one factory per backend, so the contract runs on each."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sae.storage.base import StorageOffer
from sae.storage.filesystem import FilesystemOffer

OfferFactory = Callable[..., StorageOffer]


class Unseekable(io.RawIOBase):
    """A stream with no length and no seek, like an upload being received."""

    def __init__(self, data: bytes, chunk: int = 65536) -> None:
        super().__init__()
        self._data = data
        self._pos = 0
        self._chunk = chunk

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self._chunk, len(self._data) - self._pos)
        buffer[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


@pytest.fixture
def fs_factory(tmp_path: Path) -> OfferFactory:
    """Make filesystem offers under the test's temporary directory."""
    count = 0

    def make(**kwargs: Any) -> StorageOffer:
        nonlocal count
        count += 1
        kwargs.setdefault("name", f"fs{count}")
        kwargs.setdefault("site", f"site-{count}")
        return FilesystemOffer(path=tmp_path / f"offer{count}", **kwargs)

    return make


@pytest.fixture(params=["filesystem"])
def offer_factory(request: pytest.FixtureRequest, fs_factory: OfferFactory) -> OfferFactory:
    """Every backend in turn."""
    return fs_factory
