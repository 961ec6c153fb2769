"""S3 Object Lock on a real Ceph RGW: the server itself must refuse, not only our checks."""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from minio.error import S3Error
from minio.retention import Retention

from sae.config import Settings
from sae.storage.base import PERMANENT_RETAIN_UNTIL, effective_retain_until
from sae.storage.errors import (
    IntegrityMismatch,
    LockNotConfirmed,
    ObjectExists,
    OfferUnavailable,
    ReplicationFailed,
)
from sae.storage.s3 import S3Offer, _read_ahead, parse_s3_datetime
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


# -- the pipelined upload and its read-back ----------------------------------------------------

MiB = 1024 * 1024


def _later() -> datetime:
    return datetime.now(UTC) + timedelta(hours=1)


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


def _assert_nothing_left(offer: S3Offer, key: str) -> None:
    """No version, no delete marker, no multipart upload in progress: nothing of the key; and
    no upload or read-back thread of the put still running."""
    assert offer.head(key) is None
    assert list(offer.client.list_objects(offer.bucket, prefix=key, include_version=True)) == []
    assert not offer.client._list_multipart_uploads(offer.bucket).uploads
    assert not [t.name for t in threading.enumerate() if t.name.startswith("s3-")]


def test_read_ahead_hands_over_errors_and_stops_when_abandoned() -> None:
    closed: list[bool] = []

    def chunks() -> Iterator[bytes]:
        try:
            for _ in range(1000):
                yield b"x" * 10
        finally:
            closed.append(True)

    reader = _read_ahead(chunks(), 2)
    assert next(reader) == b"x" * 10
    reader.close()  # the thread stops and closes its source (the HTTP response, for real)
    assert closed == [True]

    def failing() -> Iterator[bytes]:
        yield b"first"
        raise OfferUnavailable("ceph", "connection reset by peer (simulated)")

    got: list[bytes] = []
    with pytest.raises(OfferUnavailable, match="simulated"):
        got.extend(_read_ahead(failing(), 2))
    assert got == [b"first"]


@pytest.mark.s3
@pytest.mark.parametrize("size", [0, 5 * MiB - 1, 5 * MiB, 10 * MiB, 10 * MiB + 1])
def test_sizes_around_part_boundaries(offer: S3Offer, size: int) -> None:
    data = os.urandom(size)
    key = _key()
    stored = offer.put(key, Unseekable(data, chunk=MiB // 3), retain_until=_later())
    assert stored.size == size
    assert stored.sha512 == hashlib.sha512(data).hexdigest()
    assert stored.lock_mode == "COMPLIANCE"
    assert b"".join(offer.get(key)) == data


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.s3
@pytest.mark.parametrize("part", [1, 2, 3])
@pytest.mark.parametrize("known", [False, True], ids=["hashed-on-the-way", "expected-sha512"])
def test_a_part_the_server_stores_damaged_is_caught_by_the_read_back(
    offer: S3Offer, monkeypatch: pytest.MonkeyPatch, part: int, known: bool
) -> None:
    """The server really stores a damaged part (one bit flipped after the offer hashed it, and
    signed with the damaged bytes' own SHA-256, so the server takes them): only reading the
    completed object back can tell, and then nothing may stay."""
    data = os.urandom(12 * MiB + 5)  # parts of 5, 5 and 2 MiB
    expected = hashlib.sha512(data).hexdigest()
    key = _key()
    real = offer._send_part
    sent: list[int] = []

    def damaging(key_: str, upload_id: str, number: int, chunk: bytes, sha256: str) -> str:
        sent.append(number)
        assert sha256 == _sha256(chunk)  # each part is signed with the hash taken on the way
        if number == part:
            chunk = _flip(chunk, len(chunk) // 2)
            sha256 = _sha256(chunk)
        return real(key_, upload_id, number, chunk, sha256)

    monkeypatch.setattr(offer, "_send_part", damaging)
    with pytest.raises(IntegrityMismatch) as err:
        offer.put(
            key,
            Unseekable(data, chunk=MiB),
            retain_until=_later(),
            expected_sha512=expected if known else None,
        )
    assert sorted(sent) == [1, 2, 3]
    assert err.value.expected == expected
    assert err.value.actual.startswith(f"part {part} read back differs")
    _assert_nothing_left(offer, key)


@pytest.mark.s3
def test_a_part_damaged_on_the_wire_is_refused_by_the_server(
    offer: S3Offer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A part that changes after it was hashed (in memory, on the wire) no longer matches the
    SHA-256 its request is signed with: the server refuses it, the upload is aborted."""
    data = os.urandom(12 * MiB)
    key = _key()
    real = offer._send_part

    def damaging(key_: str, upload_id: str, number: int, chunk: bytes, sha256: str) -> str:
        return real(key_, upload_id, number, _flip(chunk, 7) if number == 2 else chunk, sha256)

    monkeypatch.setattr(offer, "_send_part", damaging)
    with pytest.raises(OfferUnavailable, match="XAmzContentSHA256Mismatch"):
        offer.put(key, io.BytesIO(data), retain_until=_later())
    _assert_nothing_left(offer, key)


@pytest.mark.s3
@pytest.mark.parametrize("signed", ["with-its-own-hash", "with-the-hash-of-what-was-read"])
def test_a_small_object_damaged_on_its_way_is_caught(
    offer: S3Offer, monkeypatch: pytest.MonkeyPatch, signed: str
) -> None:
    data = os.urandom(100_000)
    key = _key()
    real = offer._send_whole

    def damaging(key_: str, chunk: bytes, sha256: str) -> str | None:
        chunk = _flip(chunk, 0)
        return real(key_, chunk, _sha256(chunk) if signed == "with-its-own-hash" else sha256)

    monkeypatch.setattr(offer, "_send_whole", damaging)
    caught = IntegrityMismatch if signed == "with-its-own-hash" else OfferUnavailable
    with pytest.raises(caught):
        offer.put(key, io.BytesIO(data), retain_until=_later())
    _assert_nothing_left(offer, key)


@pytest.mark.s3
@pytest.mark.parametrize("size", [100_000, 12 * MiB])
def test_a_source_without_the_declared_digest_never_becomes_a_version(
    offer: S3Offer, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    """The SHA-512 taken on the way is compared with the declared one before the upload is
    completed: nothing is ever visible, nothing has to be taken back."""
    data = os.urandom(size)
    key = _key()
    completed: list[str] = []
    real_complete = offer.client._complete_multipart_upload
    monkeypatch.setattr(
        offer.client,
        "_complete_multipart_upload",
        lambda *a, **k: completed.append("multipart") or real_complete(*a, **k),
    )
    monkeypatch.setattr(offer, "_send_whole", lambda *a: completed.append("whole"))
    monkeypatch.setattr(offer, "_stream", lambda *a: completed.append("read back"))
    wrong = hashlib.sha512(data + b"x").hexdigest()
    with pytest.raises(IntegrityMismatch) as err:
        offer.put(key, io.BytesIO(data), retain_until=_later(), expected_sha512=wrong)
    assert err.value.actual == hashlib.sha512(data).hexdigest()
    assert completed == []
    _assert_nothing_left(offer, key)


@pytest.mark.s3
@pytest.mark.parametrize("damage", ["flipped", "truncated", "longer"])
def test_a_read_back_that_differs_is_caught(
    offer: S3Offer, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    """What the server sends back (not what we sent) is what is checked, to the last byte."""
    data = os.urandom(11 * MiB)
    key = _key()
    real = offer._stream
    served: list[int] = []

    def damaged(key_: str, version_id: str | None = None) -> Iterator[bytes]:
        def chunks() -> Iterator[bytes]:
            previous: bytes | None = None
            for index, chunk in enumerate(real(key_, version_id)):
                served.append(len(chunk))
                if previous is not None:
                    yield previous
                previous = _flip(chunk, 3) if damage == "flipped" and index == 3 else chunk
            if previous is not None:
                yield previous[:-1] if damage == "truncated" else previous
            if damage == "longer":
                yield b"\0"

        return chunks()

    monkeypatch.setattr(offer, "_stream", damaged)
    with pytest.raises(IntegrityMismatch):
        offer.put(key, io.BytesIO(data), retain_until=_later())
    assert sum(served) == len(data)  # the whole version was read back from the server
    _assert_nothing_left(offer, key)


@pytest.mark.s3
def test_a_part_that_fails_aborts_the_upload(
    offer: S3Offer, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(16 * MiB)
    key = _key()
    real = offer._send_part

    def failing(key_: str, upload_id: str, number: int, chunk: bytes, sha256: str) -> str:
        if number == 2:
            raise OfferUnavailable(offer.name, "connection reset by peer (simulated)")
        return real(key_, upload_id, number, chunk, sha256)

    monkeypatch.setattr(offer, "_send_part", failing)
    with pytest.raises(OfferUnavailable, match="simulated"):
        offer.put(key, io.BytesIO(data), retain_until=_later())
    _assert_nothing_left(offer, key)


@pytest.mark.s3
def test_parts_go_out_in_parallel_with_bounded_memory(
    offer: S3Offer, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(8 * 5 * MiB + 123)  # 9 parts
    key = _key()
    lock = threading.Lock()
    state = {"in_flight": 0, "peak": 0, "finished": 0}
    ahead: list[int] = []
    real = offer._send_part

    def slow(key_: str, upload_id: str, number: int, chunk: bytes, sha256: str) -> str:
        with lock:
            state["in_flight"] += 1
            state["peak"] = max(state["peak"], state["in_flight"])
        try:
            time.sleep(0.2)  # a slow server: the reader must wait, not pile parts up
            return real(key_, upload_id, number, chunk, sha256)
        finally:
            with lock:
                state["in_flight"] -= 1
                state["finished"] += 1

    class Watched(Unseekable):
        def readinto(self, buffer: Any) -> int:
            n = super().readinto(buffer)
            with lock:
                ahead.append(self._pos - state["finished"] * offer.part_size)
            return n

    monkeypatch.setattr(offer, "_send_part", slow)
    stored = offer.put(key, Watched(data, chunk=MiB), retain_until=_later())
    assert stored.sha512 == hashlib.sha512(data).hexdigest()
    assert state["peak"] == offer.parallel_uploads
    # Read but not yet sent: the parts being sent plus the one being read, never more.
    assert max(ahead) <= (offer.parallel_uploads + 1) * offer.part_size


@pytest.mark.s3
def test_a_known_digest_is_what_the_read_back_must_give(offer: S3Offer) -> None:
    data = os.urandom(7 * MiB)
    right = hashlib.sha512(data).hexdigest()
    key = _key()
    stored = offer.put(key, io.BytesIO(data), retain_until=_later(), expected_sha512=right)
    assert stored.sha512 == right
    assert b"".join(offer.get(key)) == data
    other = _key()
    with pytest.raises(IntegrityMismatch):
        offer.put(
            other,
            io.BytesIO(data),
            retain_until=_later(),
            expected_sha512=hashlib.sha512(data + b"x").hexdigest(),
        )
    _assert_nothing_left(offer, other)
