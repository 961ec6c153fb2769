"""Errors of the storage domain, each with a stable ``code``.

::

    SAEError
    └── StorageError                 storage.error                500
        ├── InvalidKey               storage.invalid_key          400
        ├── ObjectExists             storage.object_exists        409  write-once: key taken
        ├── ObjectMissing            storage.object_missing       404
        ├── RetentionActive          storage.retention_active     409  lock or hold refuses it
        ├── RetentionShortening      storage.retention_shortening 409  retain-until only grows
        ├── OfferUnavailable         storage.offer_unavailable    503  the backend does not answer
        ├── IntegrityMismatch        storage.integrity_mismatch   500  SHA-512 or size differs
        ├── LockNotConfirmed         storage.lock_not_confirmed   500  read-back of the lock failed
        ├── NoHealthyCopy            storage.no_healthy_copy      503
        ├── ReplicationFailed        storage.replication_failed   503  store_copies rolled back
        ├── DiscardIncomplete        storage.discard_incomplete   409
        ├── AuditNotFound            storage.audit_not_found      404
        ├── AuditRequestInvalid      storage.audit_invalid        422
        ├── AuditLost                storage.audit_lost           409  another worker took over
        └── OffersConfigError        storage.offers_invalid       500  refused at startup
            ├── JurisdictionRefused  storage.offers_jurisdiction
            ├── UnknownOffer         storage.offers_unknown
            ├── SingleSiteStrategy   storage.offers_single_site
            ├── MissingCredentials   storage.offers_credentials
            ├── RegionMismatch       storage.offers_region
            └── PermissionMissing    storage.offers_permission  the S3 user lacks an action

Every error names the offer (and the key when there is one), so an operator reading a log line
knows which machine to look at without a stack trace.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import ClassVar

from sae.errors import SAEError


class StorageError(SAEError):
    """Base of every storage failure."""

    code: ClassVar[str] = "storage.error"
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Storage error"


class InvalidKey(StorageError):
    """A key that could escape the offer's namespace or is not portable across backends."""

    code = "storage.invalid_key"
    status = 400
    title = "Invalid storage key"

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"invalid storage key {key!r}: {reason}", key=key)
        self.key = key


class ObjectExists(StorageError):
    """Offers are write-once: a key already present is never overwritten."""

    code = "storage.object_exists"
    status = 409
    title = "Object already stored"

    def __init__(self, offer: str, key: str) -> None:
        super().__init__(f"offer {offer!r} already holds {key!r}", offer=offer, key=key)
        self.offer = offer
        self.key = key


class ObjectMissing(StorageError):
    """The key is not (or no longer) on the offer."""

    code = "storage.object_missing"
    status = 404
    title = "Object missing"

    def __init__(self, offer: str, key: str) -> None:
        super().__init__(f"offer {offer!r} does not hold {key!r}", offer=offer, key=key)
        self.offer = offer
        self.key = key


class RetentionActive(StorageError):
    """The retention lock or a legal hold refuses the operation."""

    code = "storage.retention_active"
    status = 409
    title = "Retention or hold active"

    def __init__(self, offer: str, key: str, reason: str) -> None:
        super().__init__(
            f"offer {offer!r} refuses to delete {key!r}: {reason}", offer=offer, key=key
        )
        self.offer = offer
        self.key = key
        self.reason = reason


class RetentionShortening(StorageError):
    """A retain-until earlier than the current one was asked for; locks only ever grow."""

    code = "storage.retention_shortening"
    status = 409
    title = "Retention cannot be shortened"

    def __init__(self, offer: str, key: str, current: datetime, asked: datetime) -> None:
        super().__init__(
            f"offer {offer!r}: retention of {key!r} is until {current.isoformat()}, "
            f"it cannot be shortened to {asked.isoformat()}",
            offer=offer,
            key=key,
        )
        self.offer = offer
        self.key = key


class OfferUnavailable(StorageError):
    """The backend failed or did not answer (network, disk, permissions, server error)."""

    code = "storage.offer_unavailable"
    status = 503
    title = "Storage offer unavailable"

    def __init__(self, offer: str, detail: str) -> None:
        super().__init__(f"offer {offer!r} unavailable: {detail}", offer=offer)
        self.offer = offer


class IntegrityMismatch(StorageError):
    """The bytes read back do not have the SHA-512 (or size) they must have."""

    code = "storage.integrity_mismatch"
    status = 500
    title = "Integrity mismatch"

    def __init__(self, offer: str, key: str, expected: str, actual: str) -> None:
        super().__init__(
            f"offer {offer!r}: {key!r} has digest {actual[:16]}…, expected {expected[:16]}…",
            offer=offer,
            key=key,
        )
        self.offer = offer
        self.key = key
        self.expected = expected
        self.actual = actual


class LockNotConfirmed(StorageError):
    """The object was written but its lock could not be read back as asked.

    An object that is not locked is not archived: the put fails rather than acknowledging a
    copy that the storage would let anyone delete.
    """

    code = "storage.lock_not_confirmed"
    status = 500
    title = "Object lock not confirmed"

    def __init__(self, offer: str, key: str, detail: str, *, left_behind: bool) -> None:
        tail = " (the unlocked copy could not be removed)" if left_behind else ""
        super().__init__(
            f"offer {offer!r}: lock of {key!r} not confirmed: {detail}{tail}", offer=offer, key=key
        )
        self.offer = offer
        self.key = key
        self.reason = detail
        self.left_behind = left_behind


class NoHealthyCopy(StorageError):
    """No copy of the object could be read with the expected digest."""

    code = "storage.no_healthy_copy"
    status = 503
    title = "No healthy copy"

    def __init__(self, key: str, failures: Sequence[str]) -> None:
        super().__init__(
            f"no healthy copy of {key!r}: " + "; ".join(failures), key=key, failures=list(failures)
        )
        self.key = key
        self.failures = list(failures)


class ReplicationFailed(StorageError):
    """``store_copies`` failed; what it wrote was removed except ``left_behind``.

    ``left_behind`` lists ``offer`` names whose copy the lock kept: reconciliation
    (``sae fsck``) reports them until their retention ends.
    """

    code = "storage.replication_failed"
    status = 503
    title = "Replication failed"

    def __init__(self, key: str, offer: str, cause: str, left_behind: Sequence[str]) -> None:
        tail = f"; left for reconciliation on {', '.join(left_behind)}" if left_behind else ""
        super().__init__(
            f"storing {key!r} failed on offer {offer!r}: {cause}{tail}",
            key=key,
            offer=offer,
            left_behind=list(left_behind),
        )
        self.key = key
        self.offer = offer
        self.cause = cause
        self.left_behind = list(left_behind)


class DiscardIncomplete(StorageError):
    """Some copies could not be removed (lock, hold, offer down)."""

    code = "storage.discard_incomplete"
    status = 409
    title = "Copies not removed"

    def __init__(self, key: str, failures: Sequence[str]) -> None:
        super().__init__(
            f"copies of {key!r} not removed: " + "; ".join(failures),
            key=key,
            failures=list(failures),
        )
        self.key = key
        self.failures = list(failures)


class AuditNotFound(StorageError):
    """No audit with this id."""

    code = "storage.audit_not_found"
    status = 404
    title = "Audit not found"

    def __init__(self, audit_id: str) -> None:
        super().__init__(f"no audit {audit_id!r}", audit_id=audit_id)


class AuditRequestInvalid(StorageError):
    """An audit asked for offers that do not exist, or an impossible sample rate."""

    code = "storage.audit_invalid"
    status = 422
    title = "Invalid audit request"


class AuditLost(StorageError):
    """Another worker took this audit over (ours was presumed dead)."""

    code = "storage.audit_lost"
    status = 409
    title = "Audit taken over"


class OffersConfigError(StorageError):
    """The offers configuration is refused; the message names the offer at fault."""

    code = "storage.offers_invalid"
    status = 500
    title = "Storage offers configuration refused"


class JurisdictionRefused(OffersConfigError):
    """Public archives stay on national territory: only offers declared in France."""

    code = "storage.offers_jurisdiction"

    def __init__(self, offer: str, jurisdiction: str) -> None:
        super().__init__(
            f"offer {offer!r} declares jurisdiction {jurisdiction!r}; public archives may only "
            "be stored in France (jurisdiction: FR)",
            offer=offer,
        )
        self.offer = offer


class UnknownOffer(OffersConfigError):
    """The strategy names an offer that is not declared."""

    code = "storage.offers_unknown"

    def __init__(self, offer: str, known: Sequence[str]) -> None:
        super().__init__(
            f"strategy names offer {offer!r}, which is not declared (declared: "
            f"{', '.join(known) or 'none'})",
            offer=offer,
        )
        self.offer = offer


class SingleSiteStrategy(OffersConfigError):
    """A production strategy must write to at least two distinct sites."""

    code = "storage.offers_single_site"

    def __init__(self, offers: Sequence[str], sites: Sequence[str]) -> None:
        super().__init__(
            f"production strategy writes to {', '.join(offers) or 'no offer'} on "
            f"{len(set(sites))} distinct site(s); at least two are required",
            offers=list(offers),
        )


class MissingCredentials(OffersConfigError):
    """An S3 offer's credential variable is not set in the environment."""

    code = "storage.offers_credentials"

    def __init__(self, offer: str, variable: str) -> None:
        super().__init__(
            f"offer {offer!r}: environment variable {variable} is not set",
            offer=offer,
            variable=variable,
        )
        self.offer = offer


class RegionMismatch(OffersConfigError):
    """The bucket reports a location other than the region the offer declares."""

    code = "storage.offers_region"

    def __init__(self, offer: str, bucket: str, declared: str, reported: str) -> None:
        super().__init__(
            f"offer {offer!r}: bucket {bucket!r} reports location {reported!r}, the offer "
            f"declares region {declared!r}",
            offer=offer,
        )
        self.offer = offer


class PermissionMissing(OffersConfigError):
    """The offer's S3 user is refused an action SAE needs with this configuration.

    Found by the startup's permission check (``S3Offer.check_permissions``), so that a missing
    ``s3:BypassGovernanceRetention`` refuses the start instead of the first withdrawal or the
    end of the first quarantine, days later. ``deploy/s3-policy.json`` lists the actions.
    """

    code = "storage.offers_permission"

    def __init__(self, offer: str, action: str, why: str, answer: str) -> None:
        super().__init__(
            f"offer {offer!r}: the S3 user is refused {action} ({answer}), which {why}; "
            "grant it (see deploy/s3-policy.json)",
            offer=offer,
            action=action,
        )
        self.offer = offer
        self.action = action
