"""S3 offers with Object Lock (MinIO, Ceph RGW, French cloud providers), through ``minio``.

How a copy is made, and why in this order:

1. refuse if the key already exists (write-once; versioning would otherwise keep both);
2. upload *unlocked*, hashing the stream on the way (SHA-512 of the whole, SHA-256 of each
   part): one ``PutObject`` up to ``part_size``, above it a multipart upload whose parts are
   sent by ``parallel_uploads`` threads while the next part is read and hashed (at most
   ``parallel_uploads + 1`` parts in memory); any failure aborts the multipart upload, so
   nothing becomes visible. When the caller knows the SHA-512 the bytes must have (a digest
   declared in the SIP), a source without it is refused before the upload is completed;
3. read the version back and compare each part's SHA-256 and the size with what was sent — a
   copy that fails is removed, which is only possible because it is not locked yet. The
   read-back is one streaming ``GET`` of that version, fetched by a second thread a few
   chunks ahead of the hashing;
4. lock the version (COMPLIANCE until retain-until; GOVERNANCE during a quarantine) with
   ``PutObjectRetention`` rather than upload headers: Ceph RGW 16 ignores lock headers on
   multipart uploads, and a version locked at upload in COMPLIANCE could not be removed when
   step 3 finds it corrupt;
5. read the lock back and fail the put unless it is what was asked for.

The object is acknowledged only after step 5, so a crash before it leaves an *unlocked*
orphan that reconciliation (``sae fsck``) can remove.

Why the read-back cannot overlap the upload: S3 has no way to read a part of a multipart
upload that is not completed (``GET ?partNumber=`` and ranges only address completed
objects), and verifying anything but the completed version would not verify what is kept.
What overlaps is hashing with sending (step 2) and fetching with hashing (step 3). So the
SHA-512, which only the processor computes, is taken while the parts are on the wire, and the
read-back, which waits for nothing else, compares SHA-256s: on processors with SHA extensions
three times faster than SHA-512 (measured in bench/bench_s3_ingest.py), and as collision-resistant
for telling the stored bytes from the sent ones.

Workarounds for what the real servers do (seen on Ceph RGW 16.2.15, see docs/storage.md):

* ``GetObjectRetention`` answers dates with nanoseconds (``…T07:43:26.000000000Z``) that
  minio-py cannot parse (``ValueError``): the lock is read from the ``HEAD`` headers instead,
  with :func:`parse_s3_datetime`, which accepts any number of fractional digits;
* minio-py has no way to send ``x-amz-bypass-governance-retention`` on ``PutObjectRetention``
  (needed to turn a quarantine GOVERNANCE lock into COMPLIANCE) nor on a single
  ``DeleteObject``: those two requests go through the client's signed ``_execute``;
* the multipart upload is driven through minio's own multipart calls
  (``_create_multipart_upload``, ``_upload_part``, ``_complete_multipart_upload``,
  ``_abort_multipart_upload``; minio 7.2) rather than its parallel ``put_object``, which
  notices a failed part only after reading the whole rest of the source, and aborts without
  waiting for the parts still being sent; the version is taken from the completion's answer
  and everything else from ``HEAD``.
"""

from __future__ import annotations

import hashlib
import io
import logging
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO, cast
from urllib.parse import urlsplit

import urllib3
from minio import Minio
from minio.credentials.credentials import Credentials
from minio.datatypes import Object, Part
from minio.error import MinioException, S3Error
from minio.helpers import (
    MAX_MULTIPART_COUNT,
    MIN_PART_SIZE,
    DictType,
    check_bucket_name,
    md5sum_hash,
)
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
    quarantine_end,
    validate_key,
)
from sae.storage.errors import (
    IntegrityMismatch,
    LockNotConfirmed,
    ObjectExists,
    ObjectMissing,
    OffersConfigError,
    OfferUnavailable,
    PermissionMissing,
    RegionMismatch,
    RetentionActive,
    RetentionShortening,
    StorageError,
)

log = logging.getLogger(__name__)

#: S3 refuses multipart parts under 5 MiB; 8 MiB keeps memory per upload small (one part per
#: upload thread, plus the one being read) while staying under the 10,000-part limit up to
#: 80 GB.
DEFAULT_PART_SIZE = 8 * 1024 * 1024

#: Parts sent at once, as minio's own ``put_object`` does: one connection is latency-bound
#: (the gateway acknowledges a part only once it is stored), three keep the server busy.
DEFAULT_PARALLEL_UPLOADS = 3

#: Chunks (of ``CHUNK_SIZE``) the read-back fetches ahead of the hashing.
READ_AHEAD_CHUNKS = 8

GOVERNANCE: LockMode = "GOVERNANCE"
COMPLIANCE: LockMode = "COMPLIANCE"
#: Where the startup's permission check (``S3Offer.check_permissions``) writes its probe. A probe
#: left by a crash is unlocked seconds later; ``sae fsck`` lists it as an orphan and ``--repair``
#: removes it.
PERMISSION_PROBE_PREFIX = "sae-permission-check"
#: How long the probe is locked in GOVERNANCE: when the bypass is refused, the check waits this
#: long to remove the probe without it.
PROBE_LOCK = timedelta(seconds=4)
#: What needs the bypass, for the message of a refused start.
_BYPASS_NEEDED_FOR = (
    "a quarantine (quarantine_days) needs: withdrawing a deposit and sealing its copies into "
    "COMPLIANCE both lift a GOVERNANCE lock"
)
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


#: The signed request header carrying the body's SHA-256 (AWS Signature Version 4).
CONTENT_SHA256 = "x-amz-content-sha256"


class _Client(Minio):
    """minio's client, signing a body with the SHA-256 its caller already computed.

    minio hashes every body it sends (SHA-256 over HTTP, MD5 over HTTPS); the offer hashes
    each part on the way anyway, to compare it with the read-back. A request that brings its
    ``x-amz-content-sha256`` is signed with it as it is: the server recomputes it from the bytes
    it receives and refuses the part if they differ (``XAmzContentSHA256Mismatch``), over HTTP
    and HTTPS alike, and the part is hashed once on this side instead of twice.
    """

    def _build_headers(
        self,
        host: str,
        headers: DictType | None = None,
        body: bytes | None = None,
        creds: Credentials | None = None,
    ) -> tuple[DictType, datetime]:
        known = (headers or {}).get(CONTENT_SHA256)
        if known is None or body is None or creds is None:
            return super()._build_headers(host, headers, body, creds)
        built, date = super()._build_headers(host, headers, None, creds)
        built["Content-Length"] = str(len(body))
        built[CONTENT_SHA256] = known
        return built, date


@dataclass(frozen=True, slots=True)
class _Upload:
    """What was sent: the new version, the SHA-512 and size of the bytes read from the source,
    and the SHA-256 of each part as sent (what the read-back is compared with, part by part)."""

    version_id: str | None
    sha512: str
    size: int
    part_sha256: tuple[str, ...]


class _Sent:
    """The digests of the bytes read from the source, as they are read: the SHA-512 of the
    whole (the object's identity, checked against the caller's before anything is completed)
    and the SHA-256 of each part (what the read-back must give again)."""

    def __init__(self) -> None:
        self._sha512 = hashlib.sha512()
        self.parts: list[str] = []
        self.size = 0

    def add(self, part: bytes) -> None:
        # hashlib releases the GIL on large buffers: the parts already read go out meanwhile.
        self._sha512.update(part)
        self.parts.append(hashlib.sha256(part).hexdigest())
        self.size += len(part)

    def sha512(self) -> str:
        return self._sha512.hexdigest()


def _part_digests(chunks: Iterator[bytes], part_size: int) -> tuple[list[str], int]:
    """SHA-256 of each ``part_size`` slice of a stream (the last may be shorter), and its size."""
    digests: list[str] = []
    current = hashlib.sha256()
    filled = 0
    size = 0
    for chunk in chunks:
        size += len(chunk)
        view = memoryview(chunk)
        while view:
            take = min(len(view), part_size - filled)
            current.update(view[:take])
            filled += take
            view = view[take:]
            if filled == part_size:
                digests.append(current.hexdigest())
                current, filled = hashlib.sha256(), 0
    if filled or not digests:
        digests.append(current.hexdigest())
    return digests, size


def _read_exactly(source: BinaryIO, size: int) -> bytes:
    """Up to ``size`` bytes of ``source``; fewer only at its end (streams may read short)."""
    chunks: list[bytes] = []
    wanted = size
    while wanted > 0:
        chunk = source.read(wanted)
        if not chunk:
            break
        chunks.append(chunk)
        wanted -= len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


_END = object()


def _read_ahead(chunks: Iterator[bytes], depth: int) -> Iterator[bytes]:
    """Yield ``chunks``, pulled by a background thread at most ``depth`` chunks ahead.

    The consumer hashes while the thread waits on the network: a read-back then takes about
    the longer of the two rather than their sum (``hashlib`` and socket reads both release the
    GIL). Closing the generator stops the thread and closes ``chunks``.
    """
    box: queue.Queue[object] = queue.Queue(depth)
    stop = threading.Event()

    def hand_over(item: object) -> bool:
        while not stop.is_set():
            try:
                box.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def pull() -> None:
        try:
            for chunk in chunks:
                if not hand_over(chunk):
                    return
            hand_over(_END)
        except BaseException as exc:  # handed to the consumer, raised in its thread
            hand_over(exc)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=pull, name="s3-read-back", daemon=True)
    thread.start()
    try:
        while (item := box.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield cast(bytes, item)
    finally:
        stop.set()
        thread.join()


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
        parallel_uploads: int = DEFAULT_PARALLEL_UPLOADS,
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
        self.parallel_uploads = parallel_uploads
        self._clock = clock
        if part_size < MIN_PART_SIZE or parallel_uploads < 1:
            raise OffersConfigError(
                f"offer {name!r}: part_size must be at least {MIN_PART_SIZE} bytes (S3) and "
                f"parallel_uploads at least 1, got {part_size} and {parallel_uploads}",
                offer=name,
            )
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

    def _new_client(self) -> _Client:
        # Fewer, faster retries than minio's default (5, with backoff): a health check on a
        # dead offer must answer in seconds. No region: the bucket's own location is asked,
        # which is what ``check`` compares with the declared region. The pool keeps enough
        # connections for several puts at once (each uses ``parallel_uploads`` + 1), opened
        # only when needed.
        http = urllib3.PoolManager(
            timeout=Timeout(connect=10, read=300),
            maxsize=32,
            retries=Retry(total=2, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
        )
        return _Client(
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
            quarantine_ends_at=quarantine_end(lock_mode, stat.last_modified, self.quarantine_days),
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
                hint = (
                    "; a GOVERNANCE lock is changed with s3:BypassGovernanceRetention"
                    if bypass
                    else ""
                )
                raise RetentionActive(
                    self.name, key, f"lock change refused: {exc.message}{hint}"
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
                # Named, so that an operator whose user lacks the bypass learns which action to
                # grant from the withdrawal's refusal rather than from the code.
                hint = (
                    "; a GOVERNANCE lock is lifted with s3:BypassGovernanceRetention"
                    if bypass
                    else ""
                )
                raise RetentionActive(
                    self.name, key, f"refused by the server: {exc.message}{hint}"
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
        """SHA-512 and size of a version as the server serves it now."""
        digest = hashlib.sha512()
        size = 0
        for chunk in self._read_back(key, version_id):
            digest.update(chunk)
            size += len(chunk)
        return digest.hexdigest(), size

    def _read_back(self, key: str, version_id: str | None) -> Iterator[bytes]:
        """One ``GET`` of the version, fetched a few chunks ahead of the caller."""
        return _read_ahead(self._stream(key, version_id), READ_AHEAD_CHUNKS)

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

    # -- writing -----------------------------------------------------------------------------
    #
    # ``_send_whole`` and ``_send_part`` are the only places bytes leave for the server (the
    # fault-injection tests corrupt a part there, after it was hashed, to prove that the
    # read-back catches what the server really stores).

    def _send_whole(self, key: str, data: bytes, sha256: str) -> str | None:
        """``PutObject`` of one small object, signed with its SHA-256; its version id."""
        headers = {"Content-Type": "application/octet-stream", CONTENT_SHA256: sha256}
        try:
            result = self.client._put_object(self.bucket, key, data, cast(Any, headers))
        except (MinioException, HTTPError) as exc:
            raise self._translate(exc, key) from exc
        return result.version_id

    def _send_part(self, key: str, upload_id: str, number: int, data: bytes, sha256: str) -> str:
        """``UploadPart``, signed with the part's SHA-256; the part's ETag."""
        headers = cast(Any, {CONTENT_SHA256: sha256})
        try:
            return self.client._upload_part(self.bucket, key, data, headers, upload_id, number)
        except (MinioException, HTTPError) as exc:
            raise self._translate(exc, key) from exc

    def _read_source(self, key: str, source: BinaryIO) -> bytes:
        try:
            return _read_exactly(source, self.part_size)
        except OSError as exc:
            raise OfferUnavailable(self.name, f"upload of {key!r} failed: {exc}") from exc

    def _upload(self, key: str, source: BinaryIO, expected_sha512: str | None) -> _Upload:
        """Send ``source`` as a new, unlocked version, reading it once and hashing it on the way.

        With ``expected_sha512``, a source that does not have it is refused before the upload
        is completed (:class:`IntegrityMismatch`): no version is ever made of it.
        """
        sent = _Sent()
        first = self._read_source(key, source)
        sent.add(first)
        if len(first) < self.part_size:
            self._refuse_unexpected(key, sent, expected_sha512)
            version_id = self._send_whole(key, first, sent.parts[0])
        else:
            version_id = self._upload_parts(key, source, first, sent, expected_sha512)
        return _Upload(version_id, sent.sha512(), sent.size, tuple(sent.parts))

    def _refuse_unexpected(self, key: str, sent: _Sent, expected_sha512: str | None) -> None:
        if expected_sha512 is not None and sent.sha512() != expected_sha512:
            raise IntegrityMismatch(self.name, key, expected_sha512, sent.sha512())

    def _upload_parts(
        self,
        key: str,
        source: BinaryIO,
        first: bytes,
        sent: _Sent,
        expected_sha512: str | None,
    ) -> str | None:
        """Multipart upload, pipelined; any failure (source, network, server) aborts it.

        Parts go out on ``parallel_uploads`` threads while this thread reads and hashes the
        next one (``hashlib`` and socket writes release the GIL), so hashing takes no time of
        its own. At most ``parallel_uploads`` parts are being sent and one is being read:
        memory stays bounded whatever the size of the object. Returns the new version's id.
        """
        try:
            upload_id = self.client._create_multipart_upload(
                self.bucket, key, {"Content-Type": "application/octet-stream"}
            )
        except (MinioException, HTTPError) as exc:
            raise self._translate(exc, key) from exc
        etags: dict[int, str] = {}
        sending: set[Future[tuple[int, str]]] = set()

        def collect(limit: int) -> None:
            # Wait until at most ``limit`` parts are in flight; a failed part raises here.
            while len(sending) > limit:
                done, _ = wait(sending, return_when=FIRST_COMPLETED)
                for future in done:
                    sending.discard(future)
                    number, etag = future.result()
                    etags[number] = etag

        def send(number: int, data: bytes, sha256: str) -> tuple[int, str]:
            return number, self._send_part(key, upload_id, number, data, sha256)

        try:
            with ThreadPoolExecutor(
                max_workers=self.parallel_uploads, thread_name_prefix=f"s3-put-{self.name}"
            ) as pool:
                try:
                    part, number = first, 0
                    while part:
                        number += 1
                        if number > MAX_MULTIPART_COUNT:
                            raise OfferUnavailable(
                                self.name,
                                f"{key!r} needs more than {MAX_MULTIPART_COUNT} parts of "
                                f"{self.part_size} bytes: raise the offer's part_size",
                            )
                        collect(self.parallel_uploads - 1)
                        sending.add(pool.submit(send, number, part, sent.parts[-1]))
                        if len(part) < self.part_size:
                            break
                        part = self._read_source(key, source)
                        if part:
                            sent.add(part)
                    self._refuse_unexpected(key, sent, expected_sha512)
                    collect(0)
                except BaseException:
                    for future in sending:
                        future.cancel()
                    raise
            # Leaving the pool waited for every part still being sent: now the abort below
            # cannot race with a part arriving after it.
            try:
                result = self.client._complete_multipart_upload(
                    self.bucket,
                    key,
                    upload_id,
                    [Part(number, etags[number]) for number in sorted(etags)],
                )
            except (MinioException, HTTPError) as exc:
                raise self._translate(exc, key) from exc
        except BaseException:
            self._abort_upload(key, upload_id)
            raise
        return result.version_id

    def _abort_upload(self, key: str, upload_id: str) -> None:
        try:
            self.client._abort_multipart_upload(self.bucket, key, upload_id)
        except (MinioException, HTTPError) as exc:
            # The parts are invisible (never an object) but take space until the bucket's
            # lifecycle or an operator aborts the upload.
            log.warning(
                "storage.multipart_abort_failed offer=%s key=%s upload=%s: %s",
                self.name,
                key,
                upload_id,
                exc,
            )

    def _verify(self, key: str, upload: _Upload) -> None:
        """Read the new version back; IntegrityMismatch unless it has the bytes that were sent.

        Every part read back must have the SHA-256 of the part sent (and the sizes agree): the
        stored version is then the bytes whose SHA-512 was taken on the way. SHA-256 rather
        than a second SHA-512 because the read-back is the one step that cannot overlap the
        upload, and SHA-256 is the faster of the two where the processor computes it (SHA
        extensions): the upload waits less on it without weakening the comparison.
        """
        parts, size = _part_digests(self._read_back(key, upload.version_id), self.part_size)
        if size != upload.size:
            raise IntegrityMismatch(
                self.name, key, upload.sha512, f"{size} bytes read back, {upload.size} sent"
            )
        for number, (got, sent) in enumerate(zip(parts, upload.part_sha256, strict=True), 1):
            if got != sent:
                raise IntegrityMismatch(
                    self.name, key, upload.sha512, f"part {number} read back differs: sha256 {got}"
                )

    def _write(
        self, key: str, source: BinaryIO, until: datetime, expected_sha512: str | None
    ) -> tuple[Object, str]:
        """Upload, verify by reading back, lock, verify the lock: the HEAD and the SHA-512.

        On any failure the new version is taken back while its lock (if any) allows it.
        """
        upload = self._upload(key, source, expected_sha512)
        try:
            self._verify(key, upload)
            stat = self._lock(key, upload.version_id, self._wanted_mode(), until)
        except Exception as exc:
            # Not acknowledged: take the version back while the lock (if any) allows it.
            try:
                self._remove_version(key, upload.version_id, bypass=True)
            except StorageError:
                if isinstance(exc, LockNotConfirmed):
                    raise LockNotConfirmed(self.name, key, exc.reason, left_behind=True) from exc
            raise
        return stat, upload.sha512

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

    def put(
        self,
        key: str,
        source: BinaryIO,
        *,
        retain_until: datetime | None,
        expected_sha512: str | None = None,
    ) -> StoredObject:
        """Upload once, verify by reading back, lock, verify the lock (see module doc).

        With ``expected_sha512`` (a digest the caller already holds for these bytes, as for
        ``FilesystemOffer.put``) the bytes read must have it, or nothing is stored.
        """
        validate_key(key)
        until = effective_retain_until(retain_until)
        if self._stat(key) is not None:
            raise ObjectExists(self.name, key)
        stat, sha512 = self._write(key, source, until, expected_sha512)
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
        if version.quarantine_ends_at is not None:
            if now < version.quarantine_ends_at:
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
        if current.quarantine_ends_at is not None and self._clock() < current.quarantine_ends_at:
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

    def check_permissions(self) -> None:
        """At startup: the user may do what this offer's configuration needs beyond ``check``.

        With a quarantine (``quarantine_days``), withdrawing a deposit and sealing its copies
        into COMPLIANCE both lift a GOVERNANCE lock, which needs ``s3:BypassGovernanceRetention``.
        A user without it uploads, reads and audits normally: the gap would only show days
        later, at the first withdrawal or the first seal. So a probe object is written, locked
        in GOVERNANCE for a few seconds, and removed with the bypass; refused, the check waits
        for the lock to lapse, removes the probe without it and raises
        :class:`PermissionMissing` (the start is refused). Not part of ``check``, which
        ``/health`` calls every few seconds: this one writes.
        """
        if self.quarantine_days <= 0:
            return
        try:
            default = self.client.get_object_lock_config(self.bucket)
        except (MinioException, HTTPError) as exc:
            raise self._translate(exc) from exc
        if default.mode is not None:
            # A bucket default retention would lock the probe itself, in COMPLIANCE perhaps for
            # years: one undeletable object per start. SAE locks each version itself and needs
            # no default (docs/deploy.md); with one, the check is not made.
            log.warning(
                "storage.permission_check_skipped offer=%s: bucket %s has a default retention "
                "(%s %s %s), which would lock the probe",
                self.name,
                self.bucket,
                default.mode,
                default.duration,
                default.duration_unit,
            )
            return
        key = f"{PERMISSION_PROBE_PREFIX}/{uuid.uuid4().hex}"
        upload = self._upload(key, io.BytesIO(b"SAE start: permission check\n"), None)
        stat = self._stat(key, upload.version_id)
        # The server's clock, not ours: a lock date in its past would be refused.
        written = stat.last_modified if stat is not None and stat.last_modified else utcnow()
        until = _ms(written + PROBE_LOCK)
        started = time.monotonic()
        try:
            self._put_retention(key, upload.version_id, GOVERNANCE, until, bypass=False)
        except RetentionActive as exc:
            self._remove_probe(key, upload.version_id)
            raise PermissionMissing(
                self.name, "s3:PutObjectRetention", "every copy's lock needs", exc.reason
            ) from exc
        try:
            self._remove_version(key, upload.version_id, bypass=True)
            return
        except RetentionActive as exc:
            refusal = exc.reason
        time.sleep(max(0.0, PROBE_LOCK.total_seconds() + 1 - (time.monotonic() - started)))
        if not self._remove_probe(key, upload.version_id):
            raise PermissionMissing(
                self.name,
                "s3:DeleteObjectVersion",
                "removing a copy that failed its read-back or a withdrawn deposit needs",
                refusal,
            )
        raise PermissionMissing(
            self.name, "s3:BypassGovernanceRetention", _BYPASS_NEEDED_FOR, refusal
        )

    def _remove_probe(self, key: str, version_id: str | None) -> bool:
        """Remove the permission probe without bypass; False if the server refuses."""
        try:
            self._remove_version(key, version_id, bypass=False)
        except RetentionActive:
            return False
        except StorageError as exc:
            log.warning("storage.permission_probe_left offer=%s key=%s: %s", self.name, key, exc)
        return True

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
        stat, sha512 = self._write(key, source, until, expected_sha512)
        if current is not None and current.legal_hold:
            self.client.enable_object_legal_hold(self.bucket, key, stat.version_id)
        return self._stored(key, stat, sha512)
