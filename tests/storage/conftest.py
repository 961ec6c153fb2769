"""Offers for the storage tests: one factory per backend, so the contract runs on each."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sae.config import Settings
from sae.storage.base import StorageOffer
from sae.storage.filesystem import FilesystemOffer
from sae.storage.s3 import S3Offer
from tests.conftest import TEST_RULES_CSV, Api
from tests.s3_server import S3Server, ceph_rgw_fixture  # noqa: F401  (the ceph_rgw fixture)

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


@pytest.fixture
def s3_factory(ceph_rgw: S3Server) -> OfferFactory:
    """Make S3 offers on the session's Ceph RGW, each on a new Object Lock bucket."""
    count = 0

    def make(**kwargs: Any) -> StorageOffer:
        nonlocal count
        count += 1
        kwargs.setdefault("name", f"s3-{count}")
        kwargs.setdefault("site", f"ceph-{count}")
        kwargs.setdefault("region", ceph_rgw.region)
        offer = S3Offer(
            endpoint=ceph_rgw.endpoint,
            bucket=ceph_rgw.new_bucket_name(),
            access_key=ceph_rgw.access_key,
            secret_key=ceph_rgw.secret_key,
            create_bucket=True,
            **kwargs,
        )
        offer.check()
        return offer

    return make


@pytest.fixture(params=["filesystem", pytest.param("s3", marks=pytest.mark.s3)])
def offer_factory(request: pytest.FixtureRequest) -> OfferFactory:
    """Every backend in turn: the local WORM directory, then S3 on a real Ceph RGW."""
    factory: OfferFactory = request.getfixturevalue(
        "fs_factory" if request.param == "filesystem" else "s3_factory"
    )
    return factory


TWO_SITES = """
offers:
  - name: site-a
    kind: filesystem
    path: {root}/site-a
    jurisdiction: FR
    site: "Hôtel de ville"
  - name: site-b
    kind: filesystem
    path: {root}/site-b
    jurisdiction: FR
    site: "Centre technique municipal"
strategy:
  copies: [site-a, site-b]
  production: true
"""


@pytest.fixture
def two_sites(settings: Settings, tmp_path: Path) -> Iterator[Api]:
    """An app writing every object to two filesystem offers on two sites."""
    from fastapi.testclient import TestClient

    from sae.app import create_app

    offers_file = tmp_path / "offers.yaml"
    offers_file.write_text(TWO_SITES.format(root=tmp_path / "offers"), encoding="utf-8")
    two = settings.model_copy(update={"offers_file": offers_file})
    app = create_app(two)
    if not any(getattr(r, "path", "") == "/api/v1/audits" for r in app.routes):
        # Until sae.app mounts the storage router (lead's file), mount it the same way here.
        from sae.storage.api import router

        app.include_router(router, prefix="/api/v1")
    with TestClient(app, raise_server_exceptions=False) as client:
        api = Api(client, two)
        api.load_rules(TEST_RULES_CSV)
        yield api


def deposit(api: Api, message_id: str, payload: bytes) -> str:
    """Deposit a one-file SIP; return the data object's id."""
    from tests.sipfactory import build_zip, simple_sip

    response = api.deposit(build_zip(simple_sip(message_id, payload=payload)))
    assert response.status_code == 201, response.text
    object_id: str = response.json()["objects"][0]["id"]
    return object_id
