"""Copies across offers: replicate on ingest, serve a verified copy, and the side effects on
WORM copies — delete, extend the lock, legal hold — for every caller.

These functions hold no state and touch no database: the ingest, access and retention services
call them and record the returned ``StoredObject``s in the catalog themselves. The per-copy
operations (:func:`delete_copies`, :func:`extend_copies`, :func:`hold_copies`) do the act, log a
refusal and return one :class:`CopyOutcome` per copy; what an outcome means (destroyed,
transferred, withdrawn, left behind) is the caller's to decide.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO

from sae.storage.base import StorageOffer, StoredObject
from sae.storage.errors import (
    DiscardIncomplete,
    IntegrityMismatch,
    NoHealthyCopy,
    ObjectMissing,
    ReplicationFailed,
    RetentionShortening,
    StorageError,
)
from sae.storage.models import MetadataCopy, ObjectCopy

log = logging.getLogger(__name__)

#: ``open_verified`` checks objects up to this size *before* yielding their first byte, so a
#: corrupt copy is skipped silently in favour of a healthy one. Larger objects are streamed and
#: checked at the end (a mismatch then raises and the caller must abort the response).
VERIFY_BEFORE_SERVING = 8 * 1024 * 1024


class IteratorReader(io.RawIOBase):
    """A read-only binary file over an iterator of chunks (to stream one offer into another)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        super().__init__()
        self._chunks = iter(chunks)
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def close(self) -> None:
        # Closing a generator runs its ``finally``/``with`` blocks: the source file or HTTP
        # response is released even when the reader is abandoned half-way.
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()
        super().close()


def as_reader(chunks: Iterable[bytes]) -> BinaryIO:
    """Wrap an iterator of chunks as a buffered binary stream."""
    return io.BufferedReader(IteratorReader(chunks), buffer_size=1024 * 1024)


def store_copies(
    offers: Sequence[StorageOffer],
    key: str,
    source: BinaryIO,
    *,
    retain_until: datetime | None,
    expected_sha512: str | None = None,
) -> list[StoredObject]:
    """Write ``source`` under ``key`` on every offer, all or nothing.

    ``source`` is read once, by the first offer; every other offer is fed by streaming the first
    copy back, so each later copy also proves that the first one reads back intact. Every copy
    must have the first copy's SHA-512 and size. ``expected_sha512`` (the digest the depositor
    declared) is what the first copy must have; each later copy must have the first's: an
    offer refuses bytes without the digest it is given, and reads its copy back before
    acknowledging it.

    On any failure the copies already written are deleted where their lock still allows it
    (quarantine, or not yet locked) and :class:`ReplicationFailed` is raised, naming the offers
    whose copy had to stay (``left_behind``): ``sae fsck`` reports those as orphans.
    """
    if not offers:
        raise ReplicationFailed(key, "-", "no offer in the strategy", [])
    written: list[StorageOffer] = []
    current = offers[0]
    try:
        first = current.put(key, source, retain_until=retain_until, expected_sha512=expected_sha512)
        written.append(current)
        copies = [first]
        for offer in offers[1:]:
            current = offer
            with as_reader(offers[0].get(key)) as stream:
                copy = offer.put(
                    key, stream, retain_until=retain_until, expected_sha512=first.sha512
                )
            written.append(offer)
            if copy.sha512 != first.sha512 or copy.size != first.size:
                raise IntegrityMismatch(offer.name, key, first.sha512 or "", copy.sha512 or "")
            copies.append(copy)
        return copies
    except Exception as exc:
        left_behind = _remove_written(written, key)
        cause = exc.detail if isinstance(exc, StorageError) else f"{type(exc).__name__}: {exc}"
        raise ReplicationFailed(key, current.name, cause, left_behind) from exc


def _remove_written(written: Sequence[StorageOffer], key: str) -> list[str]:
    left_behind = []
    for offer in reversed(written):
        try:
            offer.delete(key)
        except StorageError as exc:
            log.warning("storage.rollback_incomplete offer=%s key=%s: %s", offer.name, key, exc)
            left_behind.append(offer.name)
    return left_behind


def open_verified(
    copies: Sequence[tuple[StorageOffer, str]],
    expected_sha512: str,
    *,
    expected_size: int | None = None,
) -> Iterator[bytes]:
    """Yield the bytes of the first copy (``(offer, key)`` pairs, in order) that checks out.

    Copies that are missing, unreachable or (for objects up to ``VERIFY_BEFORE_SERVING``)
    corrupt are skipped. A large copy is streamed as it is read and checked at the end: a
    mismatch then raises :class:`IntegrityMismatch` *after* the last chunk, so the caller, which
    is streaming to HTTP, must let the exception abort the response. When no copy can be
    served, :class:`NoHealthyCopy` is raised before any byte.
    """
    failures: list[str] = []
    small = expected_size is not None and expected_size <= VERIFY_BEFORE_SERVING
    for offer, key in copies:
        try:
            chunks = offer.get(key)
            if small:
                body = b"".join(chunks)
                actual = hashlib.sha512(body).hexdigest()
                if actual != expected_sha512 or len(body) != expected_size:
                    log.error("storage.copy_corrupt offer=%s key=%s", offer.name, key)
                    failures.append(f"{offer.name}: corrupt")
                    continue
                yield body
                return
            first = next(chunks, b"")
        except StorageError as exc:
            failures.append(f"{offer.name}: {exc.code}")
            continue
        yield from _checked(offer, key, first, chunks, expected_sha512, expected_size)
        return
    raise NoHealthyCopy(copies[0][1] if copies else "-", failures)


def _checked(
    offer: StorageOffer,
    key: str,
    first: bytes,
    rest: Iterator[bytes],
    expected_sha512: str,
    expected_size: int | None,
) -> Iterator[bytes]:
    digest = hashlib.sha512(first)
    size = len(first)
    if first:
        yield first
    for chunk in rest:
        digest.update(chunk)
        size += len(chunk)
        if expected_size is not None and size > expected_size:
            raise IntegrityMismatch(offer.name, key, expected_sha512, f"size>{expected_size}")
        yield chunk
    actual = digest.hexdigest()
    if actual != expected_sha512 or (expected_size is not None and size != expected_size):
        log.error("storage.copy_corrupt offer=%s key=%s", offer.name, key)
        raise IntegrityMismatch(offer.name, key, expected_sha512, actual)


@dataclass(frozen=True)
class CopyOutcome:
    """What one offer did with one copy: done, or why not. The caller decides what it means.

    ``configured`` is False when no offer of that name is configured here (nothing was tried);
    ``error`` is the offer's refusal; ``already_gone`` says a deletion found no such object.
    """

    offer: str
    key: str
    error: StorageError | None = None
    configured: bool = True
    already_gone: bool = False

    @property
    def ok(self) -> bool:
        """The act is done (for a deletion: the copy is gone, whoever deleted it)."""
        return self.configured and self.error is None


#: A copy to act on: its catalog row (of an object or of metadata), or ``(offer name, key)``.
CopyRef = ObjectCopy | MetadataCopy | tuple[str, str]


def _each(
    copies: Iterable[CopyRef],
    offers: Mapping[str, StorageOffer],
    act: Callable[[StorageOffer, str], CopyOutcome],
    *,
    stop_at_failure: bool = False,
) -> list[CopyOutcome]:
    outcomes: list[CopyOutcome] = []
    for copy in copies:
        name, key = copy if isinstance(copy, tuple) else (copy.offer, copy.key)
        offer = offers.get(name)
        outcome = CopyOutcome(name, key, configured=False) if offer is None else act(offer, key)
        outcomes.append(outcome)
        if stop_at_failure and not outcome.ok:
            break
    return outcomes


def _refused(offer: StorageOffer, key: str, exc: StorageError, event: str) -> CopyOutcome:
    log.warning("%s offer=%s key=%s: %s", event, offer.name, key, exc)
    return CopyOutcome(offer.name, key, error=exc)


def delete_copies(
    copies: Iterable[CopyRef],
    offers: Mapping[str, StorageOffer],
    *,
    stop_at_failure: bool = False,
) -> list[CopyOutcome]:
    """Delete each copy from its offer, in order; one outcome per copy tried.

    A missing object is ``ok`` and ``already_gone`` (the goal is reached: an interrupted
    deletion is being resumed). With ``stop_at_failure`` the copies after the first one not
    deleted are not tried, so nothing more goes than the caller can account for.
    """

    def delete(offer: StorageOffer, key: str) -> CopyOutcome:
        try:
            offer.delete(key)
        except ObjectMissing:
            return CopyOutcome(offer.name, key, already_gone=True)
        except StorageError as exc:
            return _refused(offer, key, exc, "storage.delete_refused")
        return CopyOutcome(offer.name, key)

    return _each(copies, offers, delete, stop_at_failure=stop_at_failure)


def extend_copies(
    copies: Iterable[CopyRef], offers: Mapping[str, StorageOffer], until: datetime
) -> list[CopyOutcome]:
    """Extend each copy's lock to ``until`` (rules changed, permanent keeping); every copy is
    tried, one outcome each. A lock already later is ``ok`` (locks never shorten, and later is
    safer); a missing object is a failure (``ObjectMissing``)."""

    def extend(offer: StorageOffer, key: str) -> CopyOutcome:
        try:
            offer.extend_retention(key, until)
        except RetentionShortening:
            pass  # already locked later than that
        except StorageError as exc:
            return _refused(offer, key, exc, "storage.extend_refused")
        return CopyOutcome(offer.name, key)

    return _each(copies, offers, extend)


def hold_copies(
    copies: Iterable[CopyRef], offers: Mapping[str, StorageOffer], on: bool
) -> list[CopyOutcome]:
    """Put (or lift) a legal hold on each copy; every copy is tried, one outcome each (a
    missing object is a failure, ``ObjectMissing``)."""

    def hold(offer: StorageOffer, key: str) -> CopyOutcome:
        try:
            offer.set_legal_hold(key, on)
        except StorageError as exc:
            return _refused(offer, key, exc, "storage.legal_hold_refused")
        return CopyOutcome(offer.name, key)

    return _each(copies, offers, hold)


def discard_copies(offers: Sequence[StorageOffer], key: str, *, missing_ok: bool = True) -> None:
    """Delete ``key`` from every offer; :class:`DiscardIncomplete` lists those that refused.

    Every offer is tried even when one refuses, so that what can go, goes; a missing copy is
    not a failure unless ``missing_ok`` is False.
    """
    outcomes = delete_copies([(o.name, key) for o in offers], {o.name: o for o in offers})
    failures = [
        f"{o.offer}: {o.error.detail}" if o.error is not None else f"{o.offer}: missing"
        for o in outcomes
        if not o.ok or (o.already_gone and not missing_ok)
    ]
    if failures:
        raise DiscardIncomplete(key, failures)


def copy_digest(offer: StorageOffer, key: str) -> tuple[str, int]:
    """Re-read a copy and return its (SHA-512, size), streaming."""
    digest = hashlib.sha512()
    size = 0
    for chunk in offer.get(key):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size
