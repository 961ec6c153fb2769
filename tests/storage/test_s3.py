"""S3 Object Lock on a real Ceph RGW: the server itself must refuse, not only our checks."""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from minio.error import S3Error
from minio.retention import Retention

from sae.config import Settings
from sae.storage.base import PERMANENT_RETAIN_UNTIL, effective_retain_until
from sae.storage.errors import LockNotConfirmed, ObjectExists, ReplicationFailed
from sae.storage.s3 import S3Offer, parse_s3_datetime
from sae.storage.service import open_verified, store_copies
from tests.conftest import TEST_RULES_CSV, Api
from tests.s3_server import S3Server
from tests.storage.conftest import OfferFactory, Unseekable, deposit
from tests.storage.helpers import FailingOffer


def test_parse_ceph_nanosecond_dates() -> None:
    assert parse_s3_datetime("2026-11-29T07:43:26.000000000Z") == datetime(
        2026, 11, 29, 7, 43, 26, tzinfo=UTC
    )
    assert parse_s3_datetime("2026-11-29T07:43:26.123456789Z") == datetime(
        2026, 11, 29, 7, 43, 26, 123456, tzinfo=UTC
    )
    assert parse_s3_datetime("2026-11-29T07:43:26Z").tzinfo is not None
    assert parse_s3_datetime("2026-11-29T07:43:26.5+02:00") == datetime(
        2026, 11, 29, 5, 43, 26, 500000, tzinfo=UTC
    )
    with pytest.raises(ValueError, match="S3 timestamp"):
        parse_s3_datetime("yesterday")


def test_dates_past_what_ceph_can_hold_are_capped() -> None:
    far = datetime(2300, 1, 1, tzinfo=UTC)
    assert effective_retain_until(far) == PERMANENT_RETAIN_UNTIL
    assert PERMANENT_RETAIN_UNTIL < datetime(2106, 2, 7, tzinfo=UTC)


@pytest.fixture
def offer(ceph_rgw: S3Server) -> S3Offer:
    offer = S3Offer(
        "ceph",
        endpoint=ceph_rgw.endpoint,
        bucket=ceph_rgw.new_bucket_name(),
        access_key=ceph_rgw.access_key,
        secret_key=ceph_rgw.secret_key,
        region=ceph_rgw.region,
        create_bucket=True,
        part_size=5 * 1024 * 1024,
    )
    offer.check()
    return offer


def _key() -> str:
    return f"objects/{uuid.uuid4()}"


@pytest.mark.s3
def test_server_refuses_delete_of_locked_version(offer: S3Offer) -> None:
    key = _key()
    stored = offer.put(
        key, io.BytesIO(b"locked"), retain_until=datetime.now(UTC) + timedelta(hours=1)
    )
    with pytest.raises(S3Error) as err:  # straight to the server, no SAE check in the way
        offer.client.remove_object(offer.bucket, key, version_id=stored.version_id)
    assert err.value.code == "AccessDenied"
    assert b"".join(offer.get(key)) == b"locked"


@pytest.mark.s3
def test_server_refuses_shortening(offer: S3Offer) -> None:
    key = _key()
    until = datetime.now(UTC) + timedelta(days=2)
    stored = offer.put(key, io.BytesIO(b"x"), retain_until=until)
    with pytest.raises(S3Error) as err:
        offer.client.set_object_retention(
            offer.bucket,
            key,
            Retention("COMPLIANCE", until - timedelta(days=1)),
            version_id=stored.version_id,
        )
    assert err.value.code == "AccessDenied"
    head = offer.head(key)
    assert head is not None
    assert head.retain_until is not None
    assert abs((head.retain_until - until).total_seconds()) < 1


@pytest.mark.s3
def test_overwrite_is_refused_and_leaves_one_version(offer: S3Offer) -> None:
    key = _key()
    offer.put(key, io.BytesIO(b"v1"), retain_until=datetime.now(UTC) + timedelta(hours=1))
    with pytest.raises(ObjectExists):
        offer.put(key, io.BytesIO(b"v2"), retain_until=None)
    versions = list(offer.client.list_objects(offer.bucket, prefix=key, include_version=True))
    assert len(versions) == 1


@pytest.mark.s3
def test_multipart_objects_are_locked_too(offer: S3Offer) -> None:
    # Ceph RGW 16 ignores lock headers on CreateMultipartUpload; the lock must still hold.
    data = os.urandom(12 * 1024 * 1024 + 3)
    key = _key()
    stored = offer.put(
        key,
        Unseekable(data, chunk=1024 * 1024),
        retain_until=datetime.now(UTC) + timedelta(hours=1),
    )
    assert stored.sha512 == hashlib.sha512(data).hexdigest()
    stat = offer.client.stat_object(offer.bucket, key, version_id=stored.version_id)
    assert stat.etag is not None
    assert "-" in stat.etag  # it really was a multipart upload (3 parts of 5 MiB max)
    assert stored.lock_mode == "COMPLIANCE"
    with pytest.raises(S3Error) as err:
        offer.client.remove_object(offer.bucket, key, version_id=stored.version_id)
    assert err.value.code == "AccessDenied"
    assert hashlib.sha512(b"".join(offer.get(key))).hexdigest() == stored.sha512


@pytest.mark.s3
def test_minio_cannot_read_ceph_retention_but_we_can(offer: S3Offer) -> None:
    key = _key()
    until = datetime.now(UTC) + timedelta(hours=3)
    offer.put(key, io.BytesIO(b"x"), retain_until=until)
    try:
        offer.client.get_object_retention(offer.bucket, key)
    except ValueError:
        pass  # the Ceph quirk this workaround exists for (nanoseconds in the date)
    head = offer.head(key)
    assert head is not None
    assert head.retain_until is not None
    assert abs((head.retain_until - until).total_seconds()) < 1


@pytest.mark.s3
def test_lock_that_does_not_hold_fails_the_put(offer: S3Offer) -> None:
    # Ceph keeps lock dates in 32 bits; asking past 2106 must fail loudly, never store unlocked.
    from sae.storage import s3 as s3_module

    key = _key()
    real = s3_module.effective_retain_until
    s3_module.effective_retain_until = lambda _d: datetime(2199, 12, 31, tzinfo=UTC)  # type: ignore[assignment]
    try:
        with pytest.raises(LockNotConfirmed) as err:
            offer.put(key, io.BytesIO(b"x"), retain_until=None)
    finally:
        s3_module.effective_retain_until = real
    assert "2199" in str(err.value)
    # Ceph locked it until the wrapped date (2063) in COMPLIANCE: it cannot be taken back, and
    # the error says so, so that the caller reports it for reconciliation.
    assert err.value.left_behind is True
    assert "could not be removed" in str(err.value)


@pytest.mark.s3
def test_quarantine_withdrawal_on_the_server(offer: S3Offer, ceph_rgw: S3Server) -> None:
    quarantined = S3Offer(
        "ceph-q",
        endpoint=ceph_rgw.endpoint,
        bucket=offer.bucket,
        access_key=ceph_rgw.access_key,
        secret_key=ceph_rgw.secret_key,
        region=ceph_rgw.region,
        quarantine_days=7,
    )
    key = _key()
    stored = quarantined.put(key, io.BytesIO(b"oops"), retain_until=None)
    assert stored.lock_mode == "GOVERNANCE"
    with pytest.raises(S3Error):  # without the bypass header even GOVERNANCE refuses
        offer.client.remove_object(offer.bucket, key, version_id=stored.version_id)
    quarantined.delete(key)
    assert quarantined.head(key) is None
    assert list(offer.client.list_objects(offer.bucket, prefix=key, include_version=True)) == []


@pytest.mark.s3
def test_replication_to_ceph_failing_mid_multipart_leaves_nothing(
    ceph_rgw: S3Server, fs_factory: OfferFactory
) -> None:
    local = fs_factory(quarantine_days=1)
    remote = S3Offer(
        "ceph",
        endpoint=ceph_rgw.endpoint,
        bucket=ceph_rgw.new_bucket_name(),
        access_key=ceph_rgw.access_key,
        secret_key=ceph_rgw.secret_key,
        region=ceph_rgw.region,
        create_bucket=True,
        part_size=5 * 1024 * 1024,
    )
    remote.check()
    data = os.urandom(11 * 1024 * 1024)
    key = _key()
    with pytest.raises(ReplicationFailed) as err:
        store_copies(
            [local, FailingOffer(remote, fail_after=7 * 1024 * 1024)],
            key,
            io.BytesIO(data),
            retain_until=None,
        )
    assert err.value.offer == "ceph"
    assert err.value.left_behind == []
    assert local.head(key) is None
    assert list(remote.client.list_objects(remote.bucket, include_version=True)) == []
    # and the interrupted multipart upload was aborted, not left to take space
    uploads = remote.client._list_multipart_uploads(remote.bucket)
    assert not uploads.uploads


@pytest.mark.s3
def test_replication_from_quarantined_ceph_is_rolled_back(
    ceph_rgw: S3Server, fs_factory: OfferFactory
) -> None:
    remote = S3Offer(
        "ceph",
        endpoint=ceph_rgw.endpoint,
        bucket=ceph_rgw.new_bucket_name(),
        access_key=ceph_rgw.access_key,
        secret_key=ceph_rgw.secret_key,
        region=ceph_rgw.region,
        create_bucket=True,
        quarantine_days=1,
    )
    remote.check()
    local = fs_factory()
    key = _key()
    data = os.urandom(300_000)
    with pytest.raises(ReplicationFailed) as err:
        store_copies(
            [remote, FailingOffer(local, fail_after=100_000)],
            key,
            io.BytesIO(data),
            retain_until=None,
        )
    assert err.value.left_behind == []
    assert remote.head(key) is None
    assert list(remote.client.list_objects(remote.bucket, include_version=True)) == []
    # the same two offers replicate fine, and serve verified bytes from Ceph
    copies = store_copies([remote, local], key, io.BytesIO(data), retain_until=None)
    assert {c.sha512 for c in copies} == {hashlib.sha512(data).hexdigest()}
    body = b"".join(
        open_verified(
            [(remote, key), (local, key)], copies[0].sha512 or "", expected_size=len(data)
        )
    )
    assert body == data


@pytest.mark.s3
def test_audit_repairs_a_tampered_ceph_copy_end_to_end(
    settings: Settings, tmp_path: Path, ceph_rgw: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    from sae.app import create_app
    from sae.storage.api import router

    monkeypatch.setenv("SAE_TEST_CEPH_ACCESS", ceph_rgw.access_key)
    monkeypatch.setenv("SAE_TEST_CEPH_SECRET", ceph_rgw.secret_key)
    bucket = ceph_rgw.new_bucket_name()
    offers_file = tmp_path / "offers.yaml"
    offers_file.write_text(
        f"""
offers:
  - name: ceph
    kind: s3
    endpoint: {ceph_rgw.endpoint}
    bucket: {bucket}
    access_key_env: SAE_TEST_CEPH_ACCESS
    secret_key_env: SAE_TEST_CEPH_SECRET
    region: {ceph_rgw.region}
    jurisdiction: FR
    site: "Datacentre départemental"
    create_bucket: true
  - name: local
    kind: filesystem
    path: {tmp_path / "local"}
    jurisdiction: FR
    site: "Mairie"
strategy:
  copies: [ceph, local]
  production: true
""",
        encoding="utf-8",
    )
    app = create_app(settings.model_copy(update={"offers_file": offers_file}))
    if not any(getattr(r, "path", "") == "/api/v1/audits" for r in app.routes):
        app.include_router(router, prefix="/api/v1")
    with TestClient(app, raise_server_exceptions=False) as client:
        api = Api(client, settings)
        api.load_rules(TEST_RULES_CSV)
        ceph = api.runtime.offer_set.offers["ceph"]
        assert isinstance(ceph, S3Offer)
        ceph.check()  # creates the Object Lock bucket
        object_id = deposit(api, "MSG-CEPH-1", b"%PDF-1.4\nceph\n%%EOF\n")
        key = f"objects/{object_id}"
        assert b"".join(ceph.get(key)) == b"%PDF-1.4\nceph\n%%EOF\n"
        # tampering: someone with the bucket's keys uploads other bytes as a new version
        ceph.client.put_object(ceph.bucket, key, io.BytesIO(b"forged"), 6)
        response = client.post("/api/v1/audits", json={"offers": ["ceph"]}, headers=api.auth())
        assert response.status_code == 202, response.text
        body = client.get(f"/api/v1/audits/{response.json()['id']}", headers=api.auth()).json()
        assert body["status"] == "done"
        assert [(p["offer"], p["kind"], p["repaired"]) for p in body["problems"]] == [
            ("ceph", "corrupt", True)
        ]
        assert b"".join(ceph.get(key)) == b"%PDF-1.4\nceph\n%%EOF\n"
        head = ceph.head(key)
        assert head is not None
        assert head.lock_mode is not None  # the repaired version is locked too
        served = client.get(f"/api/v1/objects/{object_id}/content", headers=api.auth())
        assert served.status_code == 200
        assert served.content == b"%PDF-1.4\nceph\n%%EOF\n"
