"""The storage offer contract: what every backend (local WORM directory, S3) must do.

An *offer* is one place where copies live. Offers are write-once: ``put`` never overwrites a
key, computes the SHA-512 while it streams and verifies it by reading the object back; the
object is locked until its retain-until date (far future for permanent or undated archives),
a lock that can be extended but never shortened, plus an optional legal hold. ``delete`` is
refused while either applies.

The contract test suite (``tests/storage/test_contract.py``) runs against every
implementation: this protocol is the interface, the suite is its definition.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import BinaryIO, Literal, Protocol, TypeGuard, runtime_checkable

from sae.storage.errors import (
    DiscardIncomplete,
    IntegrityMismatch,
    InvalidKey,
    LockNotConfirmed,
    NoHealthyCopy,
    ObjectExists,
    ObjectMissing,
    OffersConfigError,
    OfferUnavailable,
    ReplicationFailed,
    RetentionActive,
    RetentionShortening,
    StorageError,
)

__all__ = [
    "CHUNK_SIZE",
    "PERMANENT_RETAIN_UNTIL",
    "DiscardIncomplete",
    "IntegrityMismatch",
    "InvalidKey",
    "FileCopySource",
    "JoinBatch",
    "LockMode",
    "LockNotConfirmed",
    "NoHealthyCopy",
    "ObjectExists",
    "ObjectMissing",
    "OfferUnavailable",
    "OffersConfigError",
    "ReplicationFailed",
    "RetentionActive",
    "RetentionShortening",
    "StorageError",
    "StorageOffer",
    "StoredObject",
    "BatchingOffer",
    "effective_retain_until",
    "validate_key",
    "write_batch",
]

#: Read/write unit of every stream: large enough for throughput, small enough to never hold
#: a whole record in memory.
CHUNK_SIZE = 1024 * 1024

#: The retain-until given to permanent and undated archives, and the latest lock date ever
#: asked of a backend. Object Lock has no "forever"; a far date that can still be extended is
#: what "until a person decides otherwise" means. Why not later: Ceph RGW 16 keeps lock dates
#: as unsigned 32-bit seconds, so anything after 2106-02-07 silently wraps round to the past
#: (2199-12-31 was read back as 2063-11-23, 2150-01-01 as 2013-11-24: *unlocked*). Seen on the
#: test server; the read-back check in ``S3Offer.put`` is what caught it.
PERMANENT_RETAIN_UNTIL = datetime(2105, 12, 31, tzinfo=UTC)

LockMode = Literal["GOVERNANCE", "COMPLIANCE"]

# Portable across POSIX filesystems and S3: no spaces, no backslashes, nothing a shell or a URL
# would reinterpret. Keys are chosen by SAE (object ids), never by depositors.
_KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(?:/[A-Za-z0-9][A-Za-z0-9._-]*)*")
_MAX_KEY = 512


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe storage key, else raise :class:`InvalidKey`.

    A key is ``/``-separated segments of ``[A-Za-z0-9._-]``, none starting with a dot (so no
    ``..`` and no hidden temporary names), at most 512 characters.
    """
    if not key or len(key) > _MAX_KEY:
        raise InvalidKey(key, f"length must be 1..{_MAX_KEY}")
    if _KEY_RE.fullmatch(key) is None:
        raise InvalidKey(key, "segments of [A-Za-z0-9._-] not starting with '.', joined by '/'")
    return key


def effective_retain_until(retain_until: datetime | None) -> datetime:
    """The lock date actually applied: ``None`` (permanent or undated) means far future.

    Dates after :data:`PERMANENT_RETAIN_UNTIL` are capped to it. The lock is a floor under the
    legal date, which the catalog keeps exactly; a copy locked until 2105 is kept at least
    that long and can be extended again long before then.
    """
    if retain_until is None:
        return PERMANENT_RETAIN_UNTIL
    if retain_until.tzinfo is None:
        raise ValueError("retain_until must be timezone-aware")
    return min(retain_until.astimezone(UTC), PERMANENT_RETAIN_UNTIL)


def quarantine_end(
    lock_mode: str | None, stored_at: datetime | None, quarantine_days: int
) -> datetime | None:
    """When a copy's quarantine ends — its GOVERNANCE lock, placed at ``stored_at``, may be
    sealed into COMPLIANCE and the copy no longer withdrawn; None under any other lock."""
    if lock_mode != "GOVERNANCE" or stored_at is None:
        return None
    return stored_at + timedelta(days=quarantine_days)


@dataclass(frozen=True, slots=True)
class StoredObject:
    """One copy of an object on one offer, as written or as seen by ``head``.

    ``version_id`` is the S3 version (None on the filesystem). The lock fields are filled by
    ``head`` (and ``put``) when the backend reports them; ``quarantine_ends_at`` is when a
    GOVERNANCE (quarantine) lock may be sealed into COMPLIANCE (None for any other lock).
    """

    key: str
    size: int
    sha512: str | None
    version_id: str | None = None
    offer: str = ""
    retain_until: datetime | None = None
    lock_mode: LockMode | None = None
    legal_hold: bool = False
    stored_at: datetime | None = None
    quarantine_ends_at: datetime | None = None


@runtime_checkable
class FileCopySource(Protocol):
    """A ``put`` source whose bytes lie in a file on this machine (a file stored, not deflated,
    in a SIP). An offer that writes files may copy them file to file in the kernel instead of
    reading them into Python and writing them out again; it still reads the copy back."""

    def copy_into(self, fd: int, progress: Callable[[int], None]) -> int:
        """Append every byte to the file open as ``fd``, calling ``progress`` with the count
        copied so far along the way; returns the count. Only before any ``read()``."""
        ...


@runtime_checkable
class StorageOffer(Protocol):
    """A place where copies live. Implementations: ``FilesystemOffer``, ``S3Offer``."""

    name: str
    kind: str
    jurisdiction: str
    region: str | None
    site: str
    #: Days after ingest during which a copy is only GOVERNANCE-locked, so that a deposit made
    #: by mistake can still be withdrawn; 0 locks in COMPLIANCE at once.
    quarantine_days: int

    def put(
        self,
        key: str,
        source: BinaryIO,
        *,
        retain_until: datetime | None,
        expected_sha512: str | None = None,
    ) -> StoredObject:
        """Stream ``source`` to a new object, lock it, verify digest and lock by reading back.

        Raises :class:`ObjectExists` if the key is already there (nothing is overwritten).
        ``retain_until=None`` locks until :data:`PERMANENT_RETAIN_UNTIL`. With
        ``expected_sha512`` (a digest the caller already holds for these bytes) the offer need
        not hash the bytes on the way in, but what it reads back must have that digest, else
        :class:`IntegrityMismatch` and nothing is left visible.
        """
        ...

    def get(self, key: str) -> Iterator[bytes]:
        """Stream the object's bytes; raises :class:`ObjectMissing` (before the first chunk)."""
        ...

    def head(self, key: str) -> StoredObject | None:
        """Size, lock and (when the backend keeps it) SHA-512 of the object; None if absent."""
        ...

    def delete(self, key: str) -> None:
        """Remove every version of the object; :class:`RetentionActive` while locked or held."""
        ...

    def extend_retention(self, key: str, until: datetime) -> None:
        """Move retain-until later; :class:`RetentionShortening` if ``until`` is earlier."""
        ...

    def set_legal_hold(self, key: str, on: bool) -> None:
        """Put or lift a legal hold; a held object cannot be deleted whatever its date."""
        ...

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        """Every key on the offer starting with ``prefix`` (for reconciliation)."""
        ...

    def check(self) -> None:
        """Raise :class:`StorageError` unless the offer is usable as declared."""
        ...

    def seal(self, key: str) -> bool:
        """Turn a GOVERNANCE (quarantine) lock whose window has passed into COMPLIANCE.

        Returns True when it changed something.
        """
        ...

    def replace_damaged(
        self, key: str, source: BinaryIO, *, expected_sha512: str, retain_until: datetime | None
    ) -> StoredObject:
        """Repair: write a healthy copy over a missing or corrupt one.

        Refused (:class:`ObjectExists`) when the current copy is healthy, and
        (:class:`IntegrityMismatch`) when ``source`` does not have ``expected_sha512``: repair
        can never be used to change an archived object.
        """
        ...


@runtime_checkable
class BatchingOffer(Protocol):
    """An offer that can make a whole batch of writes durable at once (an optional capability).

    Inside ``batch()``, the ``put`` calls made by the thread that opened it (and by threads that
    ``joined_batch`` it) may leave their bytes and names in the operating system's cache;
    leaving the block without an exception makes every one of them durable, or raises
    :class:`OfferUnavailable` — so the caller must not acknowledge anything written in the
    block before the block has exited, and must wait for the threads it lent the batch to.
    Leaving it with an exception syncs nothing (the caller is discarding those writes anyway).
    Every other operation, and ``put`` outside a batch, is durable when it returns.

    The local WORM directory implements it (at the end of a transfer, one fsync per file and one
    per directory, instead of four fsyncs per object); an S3 server acknowledges each object
    durably, so S3 offers do not.
    """

    def batch(self) -> AbstractContextManager[None]:
        """Defer the durability of this thread's writes to the end of the block."""
        ...

    def current_batch(self) -> object | None:
        """The batch this thread writes in (an opaque handle), if any."""
        ...

    def joined_batch(self, batch: object | None) -> AbstractContextManager[None]:
        """Make this thread's writes part of ``batch`` (another thread's ``current_batch()``)
        for the duration of the block."""
        ...


JoinBatch = Callable[[], AbstractContextManager[None]]


def is_batching(offer: object) -> TypeGuard[BatchingOffer]:
    """``isinstance(offer, BatchingOffer)``, answered once per class (see :func:`_provides`)."""
    known = _provides(type(offer), BatchingOffer)
    return isinstance(offer, BatchingOffer) if known is None else known


def is_file_copy_source(source: object) -> TypeGuard[FileCopySource]:
    """``isinstance(source, FileCopySource)``, answered once per class."""
    known = _provides(type(source), FileCopySource)
    return isinstance(source, FileCopySource) if known is None else known


def _provides(cls: type, protocol: type) -> bool | None:
    """Whether every instance of ``cls`` provides ``protocol`` (whose members are methods only,
    so what the class has, each instance has); None when only an instance can say (a wrapper
    that finds its attributes with ``__getattr__``). isinstance() on a runtime protocol looks
    every method up again: 5-11 µs a call here, several times per deposit."""
    key = (cls, protocol)
    if key not in _provided:
        _provided[key] = None if hasattr(cls, "__getattr__") else issubclass(cls, protocol)
    return _provided[key]


_provided: dict[tuple[type, type], bool | None] = {}


@contextmanager
def write_batch(offers: Sequence[StorageOffer]) -> Iterator[JoinBatch]:
    """One durability barrier for all the writes of the block, on every offer that batches.

    Used around the writes of one transfer: when the block exits normally, every object put
    inside it is durable on every offer (or :class:`OfferUnavailable` was raised). Yields a
    function whose context manager makes a worker thread's writes part of the same batch.
    """
    with ExitStack() as stack:
        batching = [offer for offer in offers if is_batching(offer)]
        for offer in batching:
            stack.enter_context(offer.batch())
        handles = [(offer, offer.current_batch()) for offer in batching]

        @contextmanager
        def join() -> Iterator[None]:
            with ExitStack() as joined:
                for offer, handle in handles:
                    joined.enter_context(offer.joined_batch(handle))
                yield

        yield join
