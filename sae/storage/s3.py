"""S3 offers with Object Lock (MinIO, Ceph RGW, French cloud providers), through ``minio``.

How a copy is made, and why in this order:

1. refuse if the key already exists (write-once; versioning would otherwise keep both);
2. upload *unlocked*, hashing the stream on the way (single part, or multipart above
   ``part_size``);
3. read the version back and compare its SHA-512 — a copy that fails is removed, which is
   only possible because it is not locked yet;
4. lock the version (COMPLIANCE until retain-until; GOVERNANCE during a quarantine) with
   ``PutObjectRetention`` rather than upload headers: Ceph RGW 16 ignores lock headers on
   multipart uploads, and one path for every size is one path to test;
5. read the lock back and fail the put unless it is what was asked for.

The object is acknowledged only after step 5, so a crash before it leaves an *unlocked*
orphan that reconciliation (``sae fsck``) can remove.

Workarounds for what the real servers do (seen on Ceph RGW 16.2.15, see docs/storage.md):

* ``GetObjectRetention`` answers dates with nanoseconds (``…T07:43:26.000000000Z``) that
  minio-py cannot parse (``ValueError``): the lock is read from the ``HEAD`` headers instead,
  with :func:`parse_s3_datetime`, which accepts any number of fractional digits;
* minio-py has no way to send ``x-amz-bypass-governance-retention`` on ``PutObjectRetention``
  (needed to turn a quarantine GOVERNANCE lock into COMPLIANCE) nor on a single
  ``DeleteObject``: those two requests go through the client's signed ``_execute``;
* a multipart ``put_object`` may return ``etag=None``: the version is taken from the upload
  result and everything else from ``HEAD``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO, cast
from urllib.parse import urlsplit

import urllib3
from minio import Minio
from minio.datatypes import Object
from minio.error import MinioException, S3Error
from minio.helpers import check_bucket_name, md5sum_hash
from minio.retention import Retention
from minio.xml import marshal
from urllib3.exceptions import HTTPError
from urllib3.util import Retry, Timeout

from sae.db import utcnow
from sae.storage.base import (
    CHUNK_SIZE,
    LockMode,
    StoredObject,
    effective_retain_until,
    validate_key,
)
from sae.storage.errors import (
    IntegrityMismatch,
    LockNotConfirmed,
    ObjectExists,
    ObjectMissing,
    OffersConfigError,
    OfferUnavailable,
    RegionMismatch,
    RetentionActive,
    RetentionShortening,
    StorageError,
)

#: S3 refuses multipart parts under 5 MiB; 8 MiB keeps memory per upload small (minio holds
#: one part per upload thread) while staying well under the 10,000-part limit up to 80 GB.
DEFAULT_PART_SIZE = 8 * 1024 * 1024

GOVERNANCE: LockMode = "GOVERNANCE"
COMPLIANCE: LockMode = "COMPLIANCE"
_MISSING_CODES = {"NoSuchKey", "NoSuchVersion", "NoSuchObject", "ResourceNotFound"}
_FRACTION = re.compile(r"^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:?\d\d)?$")


def parse_s3_datetime(value: str) -> datetime:
    """Parse an S3 timestamp, tolerating any number of fractional-second digits.

    Ceph RGW writes nanoseconds (9 digits) where Python accepts at most 6; digits beyond the
    microsecond are dropped, which only ever makes the date earlier by under a microsecond.
    """
    match = _FRACTION.match(value.strip())
    if match is None:
        raise ValueError(f"not an S3 timestamp: {value!r}")
    base, fraction, zone = match.groups()
    text = base + ("." + (fraction + "000000")[:6] if fraction else "")
    text += "+00:00" if zone in (None, "Z") else zone
    return datetime.fromisoformat(text).astimezone(UTC)


def _ms(value: datetime) -> datetime:
    """S3 keeps retain-until to the millisecond; compare dates at that precision."""
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


class _HashingReader:
    """Feeds minio while computing the SHA-512 and size of what went through."""

    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        self.digest = hashlib.sha512()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self._source.read(size)
        self.digest.update(chunk)
        self.size += len(chunk)
        return chunk


class S3Offer:
    """An S3 bucket with Object Lock and versioning."""

    kind = "s3"

    def __init__(
        self,
        name: str,
        *,
        endpoint: str,
        bucket: str,
        access_key: str,
        secret_key: str,
        region: str | None,
        jurisdiction: str = "FR",
        site: str = "",
        quarantine_days: int = 0,
        create_bucket: bool = False,
        part_size: int = DEFAULT_PART_SIZE,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.name = name
        self.endpoint = endpoint
        self.bucket = bucket
        self.region = region
        self.jurisdiction = jurisdiction
        self.site = site
        self.quarantine_days = quarantine_days
        self.create_bucket = create_bucket
        self.part_size = part_size
        self._clock = clock
        url = urlsplit(endpoint)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise OffersConfigError(
                f"offer {name!r}: endpoint must be http(s)://host[:port], got {endpoint!r}",
                offer=name,
            )
        try:
            check_bucket_name(bucket, strict=True)
        except ValueError as exc:
            raise OffersConfigError(f"offer {name!r}: {exc}", offer=name) from exc
        self._netloc = url.netloc
        self._secure = url.scheme == "https"
        self._keys = (access_key, secret_key)
        self.client = self._new_client()

    def __repr__(self) -> str:
        return f"S3Offer({self.name!r}, {self.endpoint!r}, bucket={self.bucket!r})"

    def close(self) -> None:
        """Close pooled connections (the offer can still be used; it reconnects)."""
        self.client._http.clear()

    def _new_client(self) -> Minio:
        # Fewer, faster retries than minio's default (5, with backoff): a health check on a
        # dead offer must answer in seconds. No region: the bucket's own location is asked,
        # which is what ``check`` compares with the declared region.
        http = urllib3.PoolManager(
            timeout=Timeout(connect=10, read=300),
            maxsize=10,
            retries=Retry(total=2, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
        )
        return Minio(
            self._netloc,
            access_key=self._keys[0],
            secret_key=self._keys[1],
            secure=self._secure,
            http_client=http,
        )

    # -- error translation -----------------------------------------------------------------

    def _translate(self, exc: Exception, key: str | None = None) -> StorageError:
        if isinstance(exc, S3Error):
            if key is not None and exc.code in _MISSING_CODES:
                return ObjectMissing(self.name, key)
            return OfferUnavailable(self.name, f"{exc.code}: {exc.message}")
        return OfferUnavailable(self.name, f"{type(exc).__name__}: {exc}")

    # -- low level -------------------------------------------------------------------------

    def _stat(self, key: str, version_id: str | None = None) -> Object | None:
        try:
            return self.client.stat_object(self.bucket, key, version_id=version_id)
        except S3Error as exc:
            if exc.code in _MISSING_CODES:
                return None
            raise self._translate(exc, key) from exc
        except (MinioException, HTTPError, ValueError) as exc:
            raise self._translate(exc, key) from exc

    def _stored(self, key: str, stat: Object, sha512: str | None = None) -> StoredObject:
        headers = {k.lower(): v for k, v in (stat.metadata or {}).items()}
        mode = headers.get("x-amz-object-lock-mode", "").upper()
        lock_mode: LockMode | None = (
            GOVERNANCE if mode == GOVERNANCE else COMPLIANCE if mode == COMPLIANCE else None
        )
        until = headers.get("x-amz-object-lock-retain-until-date")
        return StoredObject(
            key=key,
            size=int(stat.size or 0),
            sha512=sha512,
            version_id=stat.version_id,
            offer=self.name,
            retain_until=parse_s3_datetime(until) if until else None,
            lock_mode=lock_mode,
            legal_hold=headers.get("x-amz-object-lock-legal-hold", "").upper() == "ON",
            stored_at=stat.last_modified,
        )

    def _put_retention(
        self, key: str, version_id: str | None, mode: LockMode, until: datetime, *, bypass: bool
    ) -> None:
        body = marshal(Retention(mode, until))
        headers: dict[str, str] = {"Content-MD5": cast(str, md5sum_hash(body))}
        if bypass:
            headers["x-amz-bypass-governance-retention"] = "true"
        query: dict[str, str] = {"retention": ""}
        if version_id:
            query["versionId"] = version_id
        try:
            # minio's set_object_retention cannot send the bypass header; same request.
            self.client._execute(
                "PUT",
                self.bucket,
                object_name=key,
                body=body,
                headers=cast(Any, headers),
                query_params=cast(Any, query),
            )
        except S3Error as exc:
            if exc.code == "AccessDenied":
                raise RetentionActive(
                    self.name, key, f"lock change refused: {exc.message}"
                ) from exc
            raise self._translate(exc, key) from exc
        except (MinioException, HTTPError) as exc:
            raise self._translate(exc, key) from exc

    def _remove_version(self, key: str, version_id: str | None, *, bypass: bool) -> None:
        headers = {"x-amz-bypass-governance-retention": "true"} if bypass else None
        query = {"versionId": version_id} if version_id else None
        try:
            self.client._execute(
                "DELETE",
                self.bucket,
                object_name=key,
                headers=cast(Any, headers),
                query_params=cast(Any, query),
            )
        except S3Error as exc:
            if exc.code == "AccessDenied":
                raise RetentionActive(
                    self.name, key, f"refused by the server: {exc.message}"
                ) from exc
            raise self._translate(exc, key) from exc
        except (MinioException, HTTPError) as exc:
            raise self._translate(exc, key) from exc

    def _versions(self, key: str) -> list[Object]:
        try:
            return [
                obj
                for obj in self.client.list_objects(
                    self.bucket, prefix=key, recursive=True, include_version=True
                )
                if obj.object_name == key
            ]
        except (MinioException, HTTPError) as exc:
            raise self._translate(exc, key) from exc

    def _digest(self, key: str, version_id: str | None) -> tuple[str, int]:
        digest = hashlib.sha512()
        size = 0
        for chunk in self._stream(key, version_id):
            digest.update(chunk)
            size += len(chunk)
        return digest.hexdigest(), size

    def _open(self, key: str, version_id: str | None = None) -> Any:
        try:
            return self.client.get_object(self.bucket, key, version_id=version_id)
        except (MinioException, HTTPError) as exc:
            raise self._translate(exc, key) from exc

    def _stream(self, key: str, version_id: str | None = None) -> Iterator[bytes]:
        response = self._open(key, version_id)
        return self._iter_response(key, response)

    def _iter_response(self, key: str, response: Any) -> Iterator[bytes]:
        try:
            yield from response.stream(CHUNK_SIZE)
        except (MinioException, HTTPError) as exc:
            raise self._translate(exc, key) from exc
        finally:
            response.close()
            response.release_conn()

    def _upload(self, key: str, source: BinaryIO) -> tuple[str | None, str, int]:
        reader = _HashingReader(source)
        try:
            result = self.client.put_object(
                self.bucket,
                key,
                cast(BinaryIO, reader),
                length=-1,
                part_size=self.part_size,
                num_parallel_uploads=1,
            )
        except (MinioException, HTTPError) as exc:
            raise self._translate(exc, key) from exc
        except OSError as exc:
            raise OfferUnavailable(self.name, f"upload of {key!r} failed: {exc}") from exc
        return result.version_id, reader.digest.hexdigest(), reader.size

    def _wanted_mode(self) -> LockMode:
        return GOVERNANCE if self.quarantine_days > 0 else COMPLIANCE

    def _lock(self, key: str, version_id: str | None, mode: LockMode, until: datetime) -> Object:
        """Apply the lock and read it back; raise LockNotConfirmed unless it holds."""
        stat = self._stat(key, version_id)
        if stat is None:
            raise ObjectMissing(self.name, key)
        current = self._stored(key, stat)
        # A bucket default retention may already have locked the version: keep the stronger.
        keep = (
            (current.lock_mode == COMPLIANCE or (current.lock_mode == mode == GOVERNANCE))
            and current.retain_until is not None
            and current.retain_until >= _ms(until)
        )
        if not keep:
            target_mode: LockMode = COMPLIANCE if current.lock_mode == COMPLIANCE else mode
            target = max(_ms(until), current.retain_until or _ms(until))
            self._put_retention(
                key,
                version_id,
                target_mode,
                target,
                bypass=current.lock_mode == GOVERNANCE,
            )
            stat = self._stat(key, version_id)
            if stat is None:
                raise ObjectMissing(self.name, key)
        confirmed = self._stored(key, stat)
        if (
            confirmed.lock_mode not in (mode, COMPLIANCE)
            or confirmed.retain_until is None
            or confirmed.retain_until < _ms(until)
        ):
            raise LockNotConfirmed(
                self.name,
                key,
                f"asked {mode} until {_ms(until).isoformat()}, server reports "
                f"{confirmed.lock_mode} until "
                f"{confirmed.retain_until.isoformat() if confirmed.retain_until else None}",
                left_behind=False,
            )
        return stat

    # -- the contract ----------------------------------------------------------------------

    def put(self, key: str, source: BinaryIO, *, retain_until: datetime | None) -> StoredObject:
        """Upload once, verify by reading back, lock, verify the lock (see module doc)."""
        validate_key(key)
        until = effective_retain_until(retain_until)
        if self._stat(key) is not None:
            raise ObjectExists(self.name, key)
        version_id, sha512, size = self._upload(key, source)
        try:
            actual, actual_size = self._digest(key, version_id)
            if actual != sha512 or actual_size != size:
                raise IntegrityMismatch(self.name, key, sha512, actual)
            stat = self._lock(key, version_id, self._wanted_mode(), until)
        except StorageError as exc:
            # Not acknowledged: take the version back while the lock (if any) allows it.
            try:
                self._remove_version(key, version_id, bypass=True)
            except StorageError:
                if isinstance(exc, LockNotConfirmed):
                    raise LockNotConfirmed(self.name, key, exc.reason, left_behind=True) from exc
            raise
        return self._stored(key, stat, sha512)

    def get(self, key: str) -> Iterator[bytes]:
        """Stream the current version; :class:`ObjectMissing` before the first chunk."""
        validate_key(key)
        return self._stream(key)

    def head(self, key: str) -> StoredObject | None:
        """Size, version, lock and hold of the current version (S3 keeps no SHA-512)."""
        validate_key(key)
        stat = self._stat(key)
        return None if stat is None else self._stored(key, stat)

    def _refusal(self, version: StoredObject) -> str | None:
        if version.legal_hold:
            return "legal hold"
        now = self._clock()
        if version.retain_until is None or version.retain_until <= now:
            return None
        if version.lock_mode == GOVERNANCE and version.stored_at is not None:
            if now < version.stored_at + timedelta(days=self.quarantine_days):
                return None
            return f"quarantine ended, retained until {version.retain_until.isoformat()}"
        return f"retained until {version.retain_until.isoformat()}"

    def delete(self, key: str) -> None:
        """Remove every version (and delete marker) of ``key``, or none if one is locked."""
        validate_key(key)
        versions = self._versions(key)
        if not any(not v.is_delete_marker for v in versions):
            raise ObjectMissing(self.name, key)
        plan: list[tuple[str | None, bool]] = []
        # Check every version first, so that a refusal leaves the object whole.
        for version in versions:
            if version.is_delete_marker:
                plan.append((version.version_id, False))
                continue
            stat = self._stat(key, version.version_id)
            if stat is None:
                continue
            stored = self._stored(key, stat)
            reason = self._refusal(stored)
            if reason is not None:
                raise RetentionActive(self.name, key, reason)
            plan.append((version.version_id, stored.lock_mode == GOVERNANCE))
        for version_id, bypass in plan:
            self._remove_version(key, version_id, bypass=bypass)

    def _current(self, key: str) -> StoredObject:
        validate_key(key)
        stat = self._stat(key)
        if stat is None:
            raise ObjectMissing(self.name, key)
        return self._stored(key, stat)

    def extend_retention(self, key: str, until: datetime) -> None:
        """Move the current version's retain-until later (never earlier)."""
        new = _ms(effective_retain_until(until))
        current = self._current(key)
        if current.retain_until is not None:
            if new < current.retain_until:
                raise RetentionShortening(self.name, key, current.retain_until, new)
            if new == current.retain_until:
                return
        mode = current.lock_mode or self._wanted_mode()
        self._put_retention(key, current.version_id, mode, new, bypass=mode == GOVERNANCE)
        after = self._current(key)
        if after.retain_until is None or after.retain_until < new:
            raise LockNotConfirmed(
                self.name, key, "extended retention not read back", left_behind=False
            )

    def set_legal_hold(self, key: str, on: bool) -> None:
        """Put or lift the legal hold on the current version, and read it back."""
        current = self._current(key)
        try:
            if on:
                self.client.enable_object_legal_hold(self.bucket, key, current.version_id)
            else:
                self.client.disable_object_legal_hold(self.bucket, key, current.version_id)
        except (MinioException, HTTPError) as exc:
            raise self._translate(exc, key) from exc
        if self._current(key).legal_hold is not on:
            raise LockNotConfirmed(
                self.name,
                key,
                f"legal hold {'on' if on else 'off'} not read back",
                left_behind=False,
            )

    def seal(self, key: str) -> bool:
        """GOVERNANCE → COMPLIANCE (same date) once the quarantine window has passed."""
        current = self._current(key)
        if current.lock_mode != GOVERNANCE or current.retain_until is None:
            return False
        if current.stored_at is not None and self._clock() < current.stored_at + timedelta(
            days=self.quarantine_days
        ):
            return False
        self._put_retention(key, current.version_id, COMPLIANCE, current.retain_until, bypass=True)
        return self._current(key).lock_mode == COMPLIANCE

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        """Keys whose current version is an object (not a delete marker)."""
        try:
            for obj in self.client.list_objects(self.bucket, prefix=prefix, recursive=True):
                if obj.object_name is not None and not obj.is_dir:
                    yield obj.object_name
        except (MinioException, HTTPError) as exc:
            raise self._translate(exc) from exc

    def reported_region(self) -> str:
        """The location the bucket reports (GetBucketLocation), asked afresh."""
        client = self._new_client()
        try:
            # minio only exposes the location through its region lookup; a fresh client has
            # nothing cached, so this is the server's answer now.
            return str(client._get_region(self.bucket))
        except (MinioException, HTTPError) as exc:
            raise self._translate(exc) from exc
        finally:
            client._http.clear()  # close its connections now rather than at garbage collection

    def check(self) -> None:
        """The bucket exists (or is created), has Object Lock and versioning, in its region."""
        try:
            if not self.client.bucket_exists(self.bucket):
                if not self.create_bucket:
                    raise OfferUnavailable(self.name, f"bucket {self.bucket!r} does not exist")
                self.client.make_bucket(
                    self.bucket,
                    location=self.region if self.region not in (None, "default") else None,
                    object_lock=True,
                )
            try:
                self.client.get_object_lock_config(self.bucket)
            except S3Error as exc:
                if exc.code == "ObjectLockConfigurationNotFoundError":
                    raise OffersConfigError(
                        f"offer {self.name!r}: bucket {self.bucket!r} was not created with "
                        "Object Lock (it cannot be added later on every server)",
                        offer=self.name,
                    ) from exc
                raise
            status = self.client.get_bucket_versioning(self.bucket).status
            if status != "Enabled":
                raise OffersConfigError(
                    f"offer {self.name!r}: bucket {self.bucket!r} versioning is {status}",
                    offer=self.name,
                )
        except (MinioException, HTTPError) as exc:
            raise self._translate(exc) from exc
        if self.region is not None:
            reported = self.reported_region()
            if reported != self.region:
                raise RegionMismatch(self.name, self.bucket, self.region, reported)

    def replace_damaged(
        self, key: str, source: BinaryIO, *, expected_sha512: str, retain_until: datetime | None
    ) -> StoredObject:
        """Write a healthy version over a missing or corrupt one.

        The damaged version stays (its lock keeps it); the new version becomes current, which
        is what ``get`` serves.
        """
        validate_key(key)
        until = effective_retain_until(retain_until)
        current = self.head(key)
        if current is not None:
            actual, _ = self._digest(key, current.version_id)
            if actual == expected_sha512:
                raise ObjectExists(self.name, key)
            if current.retain_until is not None and current.retain_until > until:
                until = current.retain_until
        version_id, sha512, _size = self._upload(key, source)
        if sha512 != expected_sha512:
            self._remove_version(key, version_id, bypass=True)
            raise IntegrityMismatch(self.name, key, expected_sha512, sha512)
        actual, _ = self._digest(key, version_id)
        if actual != expected_sha512:
            self._remove_version(key, version_id, bypass=True)
            raise IntegrityMismatch(self.name, key, expected_sha512, actual)
        stat = self._lock(key, version_id, self._wanted_mode(), until)
        if current is not None and current.legal_hold:
            self.client.enable_object_legal_hold(self.bucket, key, version_id)
        return self._stored(key, stat, sha512)
