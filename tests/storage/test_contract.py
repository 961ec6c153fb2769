"""The StorageOffer contract, run against every implementation (filesystem, Ceph RGW)."""

from __future__ import annotations

import hashlib
import io
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from sae.storage.base import (
    PERMANENT_RETAIN_UNTIL,
    InvalidKey,
    ObjectExists,
    ObjectMissing,
    RetentionActive,
    RetentionShortening,
    StorageOffer,
)
from sae.storage.errors import IntegrityMismatch
from tests.storage.conftest import OfferFactory, Unseekable


def _key() -> str:
    return f"objects/{uuid.uuid4()}"


def _later(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def _read(offer: StorageOffer, key: str) -> bytes:
    return b"".join(offer.get(key))


@pytest.fixture
def offer(offer_factory: OfferFactory) -> StorageOffer:
    return offer_factory()


def test_is_a_storage_offer(offer: StorageOffer) -> None:
    assert isinstance(offer, StorageOffer)
    assert offer.jurisdiction == "FR"
    offer.check()


def test_put_streams_hashes_and_reads_back(offer: StorageOffer) -> None:
    data = bytes(range(256)) * 5000  # 1.28 MB, more than one chunk
    key = _key()
    stored = offer.put(key, Unseekable(data), retain_until=_later(3600))
    assert stored.sha512 == hashlib.sha512(data).hexdigest()
    assert stored.size == len(data)
    assert stored.key == key
    assert stored.offer == offer.name
    assert _read(offer, key) == data
    head = offer.head(key)
    assert head is not None
    assert head.size == len(data)
    assert head.lock_mode == "COMPLIANCE"
    assert head.retain_until is not None
    assert abs((head.retain_until - _later(3600)).total_seconds()) < 60


def test_empty_object(offer: StorageOffer) -> None:
    key = _key()
    stored = offer.put(key, io.BytesIO(b""), retain_until=_later(60))
    assert stored.size == 0
    assert stored.sha512 == hashlib.sha512(b"").hexdigest()
    assert _read(offer, key) == b""


def test_put_never_overwrites(offer: StorageOffer) -> None:
    key = _key()
    offer.put(key, io.BytesIO(b"first"), retain_until=_later(60))
    with pytest.raises(ObjectExists) as err:
        offer.put(key, io.BytesIO(b"second"), retain_until=_later(60))
    assert err.value.code == "storage.object_exists"
    assert offer.name in str(err.value)
    assert _read(offer, key) == b"first"


def test_missing_object(offer: StorageOffer) -> None:
    key = _key()
    assert offer.head(key) is None
    with pytest.raises(ObjectMissing):
        offer.get(key)
    with pytest.raises(ObjectMissing):
        offer.delete(key)


def test_unsafe_keys_refused(offer: StorageOffer) -> None:
    for key in ("", "../etc/passwd", "/abs", "a//b", "a/.hidden", "sp ace", "a\\b"):
        with pytest.raises(InvalidKey):
            offer.put(key, io.BytesIO(b"x"), retain_until=_later(60))


def test_delete_refused_before_retain_until_then_allowed(offer: StorageOffer) -> None:
    key = _key()
    offer.put(key, io.BytesIO(b"short-lived"), retain_until=_later(2))
    with pytest.raises(RetentionActive) as err:
        offer.delete(key)
    assert err.value.code == "storage.retention_active"
    assert _read(offer, key) == b"short-lived"
    time.sleep(3)
    offer.delete(key)
    assert offer.head(key) is None
    assert key not in set(offer.list_keys("objects/"))


def test_no_date_means_permanent(offer: StorageOffer) -> None:
    key = _key()
    offer.put(key, io.BytesIO(b"forever"), retain_until=None)
    head = offer.head(key)
    assert head is not None
    assert head.retain_until == PERMANENT_RETAIN_UNTIL
    with pytest.raises(RetentionActive):
        offer.delete(key)


def test_retention_extends_never_shortens(offer: StorageOffer) -> None:
    key = _key()
    offer.put(key, io.BytesIO(b"x"), retain_until=_later(2))
    later = _later(7200).replace(microsecond=0)
    offer.extend_retention(key, later)
    head = offer.head(key)
    assert head is not None
    assert head.retain_until is not None
    assert abs((head.retain_until - later).total_seconds()) < 1
    with pytest.raises(RetentionShortening):
        offer.extend_retention(key, _later(3600))
    offer.extend_retention(key, later)  # same date: a no-op, not an error
    time.sleep(2.5)
    with pytest.raises(RetentionActive):  # the first date has passed, the extended one not
        offer.delete(key)


def test_legal_hold_blocks_delete(offer: StorageOffer) -> None:
    key = _key()
    # Three seconds, not one: on a loaded machine a put can take more than a second, and S3
    # refuses a lock date already in the past.
    until = _later(3)
    offer.put(key, io.BytesIO(b"held"), retain_until=until)
    offer.set_legal_hold(key, True)
    head = offer.head(key)
    assert head is not None
    assert head.legal_hold is True
    time.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()) + 1)  # only the hold is left
    with pytest.raises(RetentionActive) as err:
        offer.delete(key)
    assert "hold" in str(err.value)
    offer.set_legal_hold(key, False)
    offer.delete(key)
    assert offer.head(key) is None


def test_list_keys_by_prefix(offer: StorageOffer) -> None:
    prefix = f"list-{uuid.uuid4().hex[:8]}"
    keys = {f"{prefix}/a", f"{prefix}/b/c", f"{prefix}x"}
    for key in keys:
        offer.put(key, io.BytesIO(key.encode()), retain_until=_later(60))
    assert set(offer.list_keys(prefix + "/")) == {f"{prefix}/a", f"{prefix}/b/c"}
    assert set(offer.list_keys(prefix)) == keys


def test_quarantine_allows_withdrawal(offer_factory: OfferFactory) -> None:
    offer = offer_factory(quarantine_days=7)
    key = _key()
    offer.put(key, io.BytesIO(b"by mistake"), retain_until=None)
    head = offer.head(key)
    assert head is not None
    assert head.lock_mode == "GOVERNANCE"
    assert offer.seal(key) is False  # the window is still open
    offer.delete(key)
    assert offer.head(key) is None


def test_quarantine_ends_in_compliance(offer_factory: OfferFactory) -> None:
    clock_offset = timedelta(0)

    def clock() -> datetime:
        return datetime.now(UTC) + clock_offset

    offer = offer_factory(quarantine_days=1, clock=clock)
    key = _key()
    stored = offer.put(key, io.BytesIO(b"kept"), retain_until=_later(30 * 86400))
    # When the window ends, as the catalogue records it (``sae.storage.quarantine``).
    assert stored.stored_at is not None
    assert stored.quarantine_ends_at == stored.stored_at + timedelta(days=1)
    clock_offset = timedelta(days=2)
    with pytest.raises(RetentionActive):  # window passed: no more withdrawal
        offer.delete(key)
    assert offer.seal(key) is True
    head = offer.head(key)
    assert head is not None
    assert head.lock_mode == "COMPLIANCE"
    assert head.quarantine_ends_at is None
    assert offer.seal(key) is False


def test_replace_damaged_restores_missing_or_refuses_healthy(offer: StorageOffer) -> None:
    data = b"healthy bytes"
    digest = hashlib.sha512(data).hexdigest()
    key = _key()
    stored = offer.replace_damaged(
        key, io.BytesIO(data), expected_sha512=digest, retain_until=_later(60)
    )
    assert stored.sha512 == digest
    assert _read(offer, key) == data
    with pytest.raises(ObjectExists):
        offer.replace_damaged(key, io.BytesIO(data), expected_sha512=digest, retain_until=None)
    other = _key()
    with pytest.raises(IntegrityMismatch):
        offer.replace_damaged(
            other, io.BytesIO(b"not it"), expected_sha512=digest, retain_until=None
        )
    assert offer.head(other) is None


def test_naive_retention_date_refused(offer: StorageOffer) -> None:
    with pytest.raises(ValueError, match="timezone"):
        offer.put(_key(), io.BytesIO(b"x"), retain_until=datetime(2030, 1, 1))  # noqa: DTZ001
