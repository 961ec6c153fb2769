"""Replication, verified reads and discarding across offers."""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from sae.storage.base import StorageOffer
from sae.storage.errors import (
    DiscardIncomplete,
    IntegrityMismatch,
    NoHealthyCopy,
    ObjectMissing,
    OfferUnavailable,
    ReplicationFailed,
    RetentionActive,
)
from sae.storage.filesystem import FilesystemOffer
from sae.storage.service import (
    delete_copies,
    discard_copies,
    extend_copies,
    hold_copies,
    open_verified,
    store_copies,
)
from tests.storage.conftest import OfferFactory, Unseekable
from tests.storage.helpers import FailingOffer, flip_byte, remove_copy

DATA = os.urandom(3 * 1024 * 1024 + 17)
DIGEST = hashlib.sha512(DATA).hexdigest()


def _key() -> str:
    return f"objects/{uuid.uuid4()}"


def _later(days: int = 1) -> datetime:
    return datetime.now(UTC) + timedelta(days=days)


def _fs(offer: StorageOffer) -> FilesystemOffer:
    assert isinstance(offer, FilesystemOffer)
    return offer


def test_store_copies_writes_every_offer_reading_source_once(fs_factory: OfferFactory) -> None:
    offers = [fs_factory(), fs_factory(), fs_factory()]
    key = _key()
    copies = store_copies(offers, key, Unseekable(DATA), retain_until=_later())
    assert [c.offer for c in copies] == [o.name for o in offers]
    assert {c.sha512 for c in copies} == {DIGEST}
    for offer in offers:
        assert b"".join(offer.get(key)) == DATA


def test_second_offer_failing_mid_write_leaves_nothing(fs_factory: OfferFactory) -> None:
    first = fs_factory(quarantine_days=7)
    second = fs_factory(quarantine_days=7)
    key = _key()
    with pytest.raises(ReplicationFailed) as err:
        store_copies(
            [first, FailingOffer(second, fail_after=1024 * 1024)],
            key,
            io.BytesIO(DATA),
            retain_until=_later(),
        )
    assert err.value.offer == second.name
    assert err.value.left_behind == []
    assert "simulated" in err.value.detail
    for offer in (first, second):
        assert offer.head(key) is None
        assert list(offer.list_keys()) == []
        # no temporary file left either
        assert [p for p in _fs(offer).root.rglob("*") if p.is_file()] == []


def test_failed_replication_reports_what_the_lock_kept(fs_factory: OfferFactory) -> None:
    first = fs_factory()  # COMPLIANCE at once: the first copy cannot be withdrawn
    second = fs_factory()
    key = _key()
    with pytest.raises(ReplicationFailed) as err:
        store_copies(
            [first, FailingOffer(second, fail_after=10)],
            key,
            io.BytesIO(DATA),
            retain_until=_later(),
        )
    assert err.value.left_behind == [first.name]
    assert first.name in str(err.value)
    assert second.head(key) is None


def test_failing_first_offer_writes_nothing(fs_factory: OfferFactory) -> None:
    first, second = fs_factory(), fs_factory()
    key = _key()
    with pytest.raises(ReplicationFailed):
        store_copies([FailingOffer(first, 5), second], key, io.BytesIO(DATA), retain_until=_later())
    assert first.head(key) is None
    assert second.head(key) is None


def test_open_verified_skips_a_corrupt_small_copy(fs_factory: OfferFactory) -> None:
    a, b = fs_factory(), fs_factory()
    key = _key()
    store_copies([a, b], key, io.BytesIO(DATA), retain_until=_later())
    flip_byte(_fs(a), key, offset=1000)
    body = b"".join(open_verified([(a, key), (b, key)], DIGEST, expected_size=len(DATA)))
    assert body == DATA


def test_open_verified_skips_a_missing_copy(fs_factory: OfferFactory) -> None:
    a, b = fs_factory(), fs_factory()
    key = _key()
    store_copies([a, b], key, io.BytesIO(DATA), retain_until=_later())
    remove_copy(_fs(a), key)
    assert b"".join(open_verified([(a, key), (b, key)], DIGEST)) == DATA


def test_open_verified_raises_at_end_of_a_corrupt_stream(fs_factory: OfferFactory) -> None:
    a = fs_factory()
    key = _key()
    store_copies([a], key, io.BytesIO(DATA), retain_until=_later())
    flip_byte(_fs(a), key, offset=len(DATA) - 1)
    received: list[bytes] = []

    def consume() -> None:
        for chunk in open_verified([(a, key)], DIGEST):  # size unknown: streamed
            received.append(chunk)

    with pytest.raises(IntegrityMismatch) as err:
        consume()
    assert err.value.offer == a.name
    assert sum(map(len, received)) == len(DATA)  # the caller saw bytes, then the abort


def test_open_verified_no_healthy_copy(fs_factory: OfferFactory) -> None:
    a, b = fs_factory(), fs_factory()
    key = _key()
    store_copies([a, b], key, io.BytesIO(DATA), retain_until=_later())
    flip_byte(_fs(a), key)
    remove_copy(_fs(b), key)
    with pytest.raises(NoHealthyCopy) as err:
        list(open_verified([(a, key), (b, key)], DIGEST, expected_size=len(DATA)))
    assert len(err.value.failures) == 2


def test_discard_copies(fs_factory: OfferFactory) -> None:
    a, b = fs_factory(quarantine_days=3), fs_factory()
    key = _key()
    store_copies([a, b], key, io.BytesIO(b"x"), retain_until=_later())
    with pytest.raises(DiscardIncomplete) as err:
        discard_copies([a, b], key)
    assert a.head(key) is None  # what could go, went
    assert b.head(key) is not None
    assert b.name in str(err.value)
    past_key = _key()
    store_copies(
        [a, b], past_key, io.BytesIO(b"y"), retain_until=datetime.now(UTC) + timedelta(seconds=1)
    )
    import time

    time.sleep(1.5)
    discard_copies([a, b], past_key)
    discard_copies([a, b], past_key)  # already gone: fine
    with pytest.raises(DiscardIncomplete):
        discard_copies([a, b], past_key, missing_ok=False)


class _Broken(FilesystemOffer):
    """An offer whose disk is gone: every lock update fails."""

    def extend_retention(self, key: str, until: datetime) -> None:
        raise OfferUnavailable(self.name, "disk gone")

    def set_legal_hold(self, key: str, on: bool) -> None:
        raise OfferUnavailable(self.name, "disk gone")


def test_delete_copies_one_outcome_per_copy(fs_factory: OfferFactory) -> None:
    a, b = fs_factory(quarantine_days=3), fs_factory()
    offers = {a.name: a, b.name: b}
    key = _key()
    store_copies([a, b], key, io.BytesIO(b"x"), retain_until=_later())
    outcomes = delete_copies([(a.name, key), (b.name, key), ("gone", key)], offers)
    assert [(o.offer, o.key) for o in outcomes] == [(a.name, key), (b.name, key), ("gone", key)]
    healthy, locked, unconfigured = outcomes
    assert healthy.ok
    assert not healthy.already_gone
    assert a.head(key) is None
    assert not locked.ok
    assert isinstance(locked.error, RetentionActive)
    assert b.head(key) is not None  # the lock refused it
    assert not unconfigured.ok
    assert not unconfigured.configured
    assert unconfigured.error is None
    [again] = delete_copies([(a.name, key)], offers)
    assert again.ok
    assert again.already_gone  # the goal is reached


def test_delete_copies_can_stop_at_the_first_failure(fs_factory: OfferFactory) -> None:
    a, b = fs_factory(), fs_factory(quarantine_days=3)
    key = _key()
    store_copies([a, b], key, io.BytesIO(b"x"), retain_until=_later())
    outcomes = delete_copies(
        [(a.name, key), (b.name, key)], {a.name: a, b.name: b}, stop_at_failure=True
    )
    assert [o.offer for o in outcomes] == [a.name]  # b was not tried
    assert b.head(key) is not None


def test_extend_copies_one_outcome_per_copy(fs_factory: OfferFactory) -> None:
    a, b = fs_factory(), fs_factory()
    broken = _Broken("broken", _fs(a).root)
    offers = {a.name: a, b.name: b, broken.name: broken}
    key = _key()
    store_copies([a, b], key, io.BytesIO(b"x"), retain_until=_later(1))
    later = _later(3650)
    outcomes = extend_copies([(a.name, key), (b.name, key), (broken.name, key)], offers, later)
    assert [o.ok for o in outcomes] == [True, True, False]
    assert isinstance(outcomes[2].error, OfferUnavailable)
    for offer in (a, b):
        head = offer.head(key)
        assert head is not None
        assert head.retain_until == later
    # Earlier than the lock: nothing to do, and done (locks never shorten).
    assert all(o.ok for o in extend_copies([(a.name, key)], offers, _later(2)))
    remove_copy(_fs(b), key)
    [missing] = extend_copies([(b.name, key)], offers, _later(4000))
    assert isinstance(missing.error, ObjectMissing)


def test_hold_copies_one_outcome_per_copy(fs_factory: OfferFactory) -> None:
    a, b = fs_factory(), fs_factory()
    broken = _Broken("broken", _fs(a).root)
    offers = {a.name: a, b.name: b, broken.name: broken}
    key = _key()
    store_copies([a, b], key, io.BytesIO(b"x"), retain_until=_later())
    outcomes = hold_copies([(a.name, key), (b.name, key), (broken.name, key)], offers, True)
    assert [o.ok for o in outcomes] == [True, True, False]
    assert isinstance(outcomes[2].error, OfferUnavailable)
    assert all(h is not None and h.legal_hold for h in (a.head(key), b.head(key)))
    assert all(o.ok for o in hold_copies([(a.name, key), (b.name, key)], offers, False))
    assert not any(h is not None and h.legal_hold for h in (a.head(key), b.head(key)))
