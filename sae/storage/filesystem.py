"""The local write-once directory: the embedded default offer.

Layout under the offer's root::

    data/<key>          the bytes, mode 0444, never rewritten; its first lock record in the
                        extended attribute ``user.sae.lock``
    meta/<key>.json     the lock record once changed (extension, hold, seal), which overrides
                        the attribute; every lock record of an offer written before 2026-12-06
                        {"retain_until", "lock_mode", "legal_hold", "stored_at", "sha512", "size"}

Why it can be trusted to keep what it acknowledged: bytes go to a file *without a name*
(``O_TMPFILE``) in the key's directory, are read back, locked and fsynced, then published with
``linkat()`` — which, unlike ``rename()``, fails when the name exists, so two writers can never
overwrite one another — and the directory is fsynced so the new name survives a power cut. A
process stopped before the link leaves nothing named behind: the kernel frees the file. Where the
filesystem (or a missing ``/proc``) cannot name such a file, it has a temporary name in the same
directory, published with ``link()`` and removed (:func:`_create_temp`): a crash may then leave
that name behind, which listings skip. Inside a ``batch()`` (one ingest transfer), those
syncs are postponed to the end of the batch — one fsync per file, one per directory for all the
names it received — before anything is acknowledged.

The lock is a record of the offer's own because POSIX has no retention dates; the offer
enforces it on ``delete``. A new object's first record is set on its temporary file, before the
file is made read-only and published: the object is locked from the moment it has a name, and
its lock is made durable by the file's own fsync — no second file to create, sync and name (a
new file costs 0.3-0.4 ms of kernel on a journal-less ext4; docs/benchmarks.md, session 11).
Where the filesystem keeps no extended attributes (``EOPNOTSUPP``), the first record is a
sidecar created under its own name in one write, as before. Later changes (extension, hold,
seal) replace the sidecar through a temporary name; a sidecar, when there is one, is the
record. A published object with neither (or an empty sidecar) was never locked: the process
stopped before, so it was never acknowledged.
This protects against the application and its operators' mistakes, not against root on the
machine: that is what the second, remote, Object-Lock offer is for.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import secrets
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from sae.db import utcnow
from sae.fileio import TrailingDigest, fsync_directory, write_all
from sae.storage.base import (
    CHUNK_SIZE,
    LockMode,
    StoredObject,
    effective_retain_until,
    is_file_copy_source,
    quarantine_end,
    validate_key,
)
from sae.storage.errors import (
    IntegrityMismatch,
    ObjectExists,
    ObjectMissing,
    OfferUnavailable,
    RetentionActive,
    RetentionShortening,
)

log = logging.getLogger(__name__)

_READ_ONLY = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
#: The extended attribute holding a new object's first lock record (the sidecar's JSON).
LOCK_XATTR = "user.sae.lock"
#: What a filesystem without (user) extended attributes answers: the record goes to a sidecar.
_NO_XATTR = {errno.ENOTSUP, errno.EOPNOTSUPP}
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


#: Files of a batch are fsynced by up to this many threads at once: the filesystem's journal
#: commits the fsyncs that wait together in one go (ext4, XFS), where one thread would wait
#: for a commit per file. Seen here, the 1,000 files of a 500-record transfer: 0.2 s one by one,
#: 0.08 s by 16 threads (0.11 s by 8, 0.12 s by 4).
SYNC_THREADS = 16

#: Up to this many files (or directories) are synced by the waiting thread itself, one after
#: the other: each hand-off to a pool thread and back is a thread switch and a turn of the
#: interpreter's lock, which the request threads of small deposits all want. A one-document
#: deposit with its description has four files (the object's and the description's bytes and
#: lock records) in four directories; handed to the pool, its server used a quarter more CPU
#: (800 such deposits, 8 clients: 14.6 and 12.2 s of CPU against 11.5 and 9.1 s inline, and
#: 11.3 and 9.9 s before the descriptions). Larger transfers still sync together.
INLINE_SYNCS = 4


def _fsync_all(paths: Sequence[Path], *, directories: bool = False) -> None:
    """fsync every file (or directory) of ``paths`` (a file removed since needs no
    durability); the first error is raised once every fsync has returned. More than
    :data:`INLINE_SYNCS` wait together, in the pool; fewer are synced here, one by one."""

    def sync(path: Path) -> None:
        if directories:
            fsync_directory(path)
            return
        with contextlib.suppress(FileNotFoundError):  # a refused transfer's copy
            _fsync_path(path)

    if len(paths) <= INLINE_SYNCS:
        for path in paths:
            sync(path)
        return
    # This thread syncs the first itself: one hand-off to a pool thread and back fewer (a
    # one-document deposit's barrier is four files and four directories).
    futures = [_sync_pool().submit(sync, path) for path in paths[1:]]
    try:
        sync(paths[0])
    finally:
        wait(futures)  # every fsync returns before the first error is raised
    for future in futures:
        future.result()


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _sync_pool() -> ThreadPoolExecutor:
    """The process's fsync threads, started once: a pool made and joined for each batch cost
    more than the fsyncs of a small transfer (1.4 ms of 3.1 for an object and one more file,
    0.2 ms with threads kept). Shared by every offer and deposit: their fsyncs wait together."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(SYNC_THREADS, thread_name_prefix="sae-fsync")
        return _pool


def _forget_pool_in_child() -> None:
    # A forked child has none of its parent's threads: it starts its own pool when it needs one.
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool_in_child)


def _create_anonymous(directory: Path, mode: int) -> int:
    """A new, empty file without a name in ``directory``'s filesystem (``O_TMPFILE``), open for
    reading and writing; named later by :func:`_publish_anonymous`, or freed by the kernel.

    Why not a temporary name: a process killed while writing then leaves nothing on the offer
    (the kernel frees the file; a temporary name stayed, for ever, on a write-once directory),
    and the directory is changed once (the link) instead of three times (create, link, unlink
    of the temporary name): eight threads writing 20 kB files with their fsyncs, 0.15 ms to
    create such a file against 0.26 ms for a named one, and no 0.09 ms unlink
    (docs/benchmarks.md, session 16). :class:`OSError` as ``os.open`` raises it: the caller
    decides whether to fall back.
    """
    flags = os.O_RDWR | os.O_TMPFILE | _O_CLOEXEC
    try:
        return os.open(directory, flags, mode)
    except FileNotFoundError:
        directory.mkdir(parents=True, exist_ok=True)  # removed since the offer made it
        return os.open(directory, flags, mode)


def _publish_anonymous(fd: int, target: Path) -> None:
    """Give the unnamed file open as ``fd`` the name ``target``; :class:`FileExistsError` when
    the name is taken (never replaced).

    ``linkat(AT_EMPTY_PATH)`` would need CAP_DAC_READ_SEARCH; the file's ``/proc/self/fd``
    entry, followed (``AT_SYMLINK_FOLLOW``), needs nothing. ``os.link`` calls plain ``link()``,
    which does not follow, unless it is given a directory descriptor: the source path is
    absolute, so the kernel ignores the one passed (``fd``) and ``linkat`` follows the entry.
    """
    os.link(f"/proc/self/fd/{fd}", target, src_dir_fd=fd, follow_symlinks=True)


#: ``errno`` values that say "no unnamed files here": the kernel or the filesystem does not
#: have ``O_TMPFILE`` (EISDIR: a kernel older than 3.11 ignored the flag and found a directory).
_NO_ANONYMOUS = {errno.EOPNOTSUPP, errno.ENOTSUP, errno.EISDIR, errno.EINVAL}


def _create_temp(directory: Path, stem: str, mode: int = _READ_ONLY) -> tuple[int, str]:
    """A new, empty file for writing under a temporary name in ``directory``: its descriptor
    (read and write) and its path.

    Created 0444 by default (the mode binds later opens, not this descriptor): the bytes are
    never writable through any other one, and no ``chmod`` is needed once they are written. A
    file that is to carry its lock record in an extended attribute is created 0600 and made
    0444 once the attribute is set: a process that is not root may set a ``user.`` attribute
    only on a file it may write (:meth:`FilesystemOffer._lock_file`).
    """
    for attempt in range(100):
        tmp = os.path.join(directory, f".{stem}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | _O_CLOEXEC, mode), tmp
        except FileExistsError:
            continue
        except FileNotFoundError:
            if attempt:
                raise
            directory.mkdir(parents=True, exist_ok=True)  # removed since the offer made it
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(directory))


def _anonymous_works(directory: Path) -> bool:
    """Whether a file without a name can be created in ``directory`` and then named there: the
    kernel and the filesystem must know ``O_TMPFILE``, and ``/proc`` must be mounted."""
    try:
        fd = _create_anonymous(directory, 0o600)
    except OSError as exc:
        if exc.errno in _NO_ANONYMOUS:
            return False
        raise
    probe = directory / f".probe.{secrets.token_hex(6)}.tmp"
    try:
        _publish_anonymous(fd, probe)
    except OSError as exc:  # no /proc, or a filesystem that will not name such a file
        log.info("storage.no_unnamed_files directory=%s: %s", directory, exc)
        return False
    finally:
        os.close(fd)
    os.unlink(probe)
    return True


@dataclass
class _Batch:
    """Writes of one transfer whose durability waits for the end of its batch."""

    files: list[Path] = field(default_factory=list)
    dirs: set[Path] = field(default_factory=set)
    #: Worker threads of the same transfer write into the batch (``joined_batch``).
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True)
class _Written:
    """A file written, read back and checked: its temporary name (None: published already under
    its own), its digest and size, and the lock record set on it (None: not asked
    for, or the filesystem keeps no extended attributes)."""

    tmp: str | None
    sha512: str
    size: int
    lock: dict[str, Any] | None


class FilesystemOffer:
    """A write-once directory on a local (or mounted) filesystem."""

    kind = "filesystem"

    def __init__(
        self,
        name: str,
        path: Path | str,
        jurisdiction: str = "FR",
        site: str = "",
        region: str | None = None,
        *,
        quarantine_days: int = 0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.name = name
        self.root = Path(path).expanduser().resolve()
        self.jurisdiction = jurisdiction
        self.site = site
        self.region = region
        self.quarantine_days = quarantine_days
        self._clock = clock
        self._local = threading.local()
        #: Directories this offer has made (or found) since it was opened: see :meth:`_make_dir`.
        self._dirs: set[Path] = set()
        #: False once the filesystem refused an extended attribute: first lock records then go
        #: to sidecars (:meth:`_lock_file`).
        self._xattrs = True
        #: Whether new objects are written without a name until published (``O_TMPFILE``):
        #: None until the first put tries (:meth:`_can_write_anonymous`).
        self._anonymous: bool | None = None

    def __repr__(self) -> str:
        return f"FilesystemOffer({self.name!r}, {str(self.root)!r})"

    # -- paths -----------------------------------------------------------------------------

    def _data(self, key: str) -> Path:
        return self.root / "data" / validate_key(key)

    def _meta(self, key: str) -> Path:
        return self.root / "meta" / (validate_key(key) + ".json")

    def _unavailable(self, exc: OSError) -> OfferUnavailable:
        return OfferUnavailable(self.name, f"{exc.strerror or exc} ({exc.filename or self.root})")

    def _make_dir(self, directory: Path) -> None:
        """``mkdir -p directory``, once per directory and process: it cost two system calls and
        an exception for each new file (two files per object). A directory removed since is
        made again by the create that finds it missing (:func:`_create_temp`,
        :meth:`_create_meta`)."""
        if directory not in self._dirs:
            directory.mkdir(parents=True, exist_ok=True)
            self._dirs.add(directory)

    # -- durability ------------------------------------------------------------------------

    def _current_batch(self) -> _Batch | None:
        batch: _Batch | None = getattr(self._local, "batch", None)
        return batch

    def _durable_file(self, fd: int, path: Path) -> None:
        """Make a written file's bytes durable now, or at the end of the current batch."""
        batch = self._current_batch()
        if batch is None:
            os.fsync(fd)
            return
        with batch.lock:
            batch.files.append(path)

    def _durable_dir(self, path: Path) -> None:
        """Make a directory's entries durable now, or at the end of the current batch."""
        batch = self._current_batch()
        if batch is None:
            fsync_directory(path)
        else:
            with batch.lock:
                batch.dirs.add(path)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Postpone the durability of this thread's writes to the end of the block.

        See :class:`sae.storage.base.BatchingOffer`. Nested blocks join the outermost one.
        """
        if self._current_batch() is not None:
            yield
            return
        batch = _Batch()
        self._local.batch = batch
        try:
            yield
            self._local.batch = None
            self._sync(batch)
        finally:
            self._local.batch = None

    def current_batch(self) -> object | None:
        """This thread's batch (see :class:`sae.storage.base.BatchingOffer`)."""
        return self._current_batch()

    @contextlib.contextmanager
    def joined_batch(self, batch: object | None) -> Iterator[None]:
        """Write into another thread's batch for the duration of the block."""
        if batch is not None and not isinstance(batch, _Batch):
            raise TypeError(f"not a batch of this offer: {batch!r}")
        previous = self._current_batch()
        self._local.batch = batch
        try:
            yield
        finally:
            self._local.batch = previous

    def _sync(self, batch: _Batch) -> None:
        """Make every write of ``batch`` durable; :class:`OfferUnavailable` when it cannot.

        Files first, then the directories that name them: one fsync each, as a write outside a
        batch would have had, but the names of a whole transfer share their directories' fsync.
        """
        try:
            _fsync_all(batch.files)
            _fsync_all(sorted(batch.dirs), directories=True)
        except OSError as exc:
            raise self._unavailable(exc) from exc

    # -- sidecar ---------------------------------------------------------------------------

    def _read_meta(self, key: str) -> dict[str, Any] | None:
        """The lock record of ``key``: its sidecar's, else its data file's attribute; None when
        it has neither.

        An empty sidecar counts as none: the process stopped between creating a new object's
        record and writing it (:meth:`_create_meta`), so the object was never acknowledged.
        """
        try:
            raw = self._meta(key).read_bytes()
        except FileNotFoundError:
            raw = b""
        if not raw:
            try:
                raw = os.getxattr(self._data(key), LOCK_XATTR)
            except OSError as exc:
                # No attribute (ENODATA), no file, or none kept by this filesystem.
                if exc.errno not in (errno.ENODATA, errno.ENOENT, *_NO_XATTR):
                    raise
                return None
        value: dict[str, Any] = json.loads(raw)
        return value

    def _create_meta(self, key: str, meta: dict[str, Any]) -> None:
        """The first lock record of a new object: created under its name, in one write.

        Nothing is replaced, so no temporary name is needed; a record found there already (a
        removal that stopped between the bytes and their record) is replaced as usual.
        """
        target = self._meta(key)
        self._make_dir(target.parent)
        data = json.dumps(meta, sort_keys=True).encode()
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC
        try:
            try:
                fd = os.open(target, flags, 0o600)
            except FileNotFoundError:  # the directory was removed since the offer made it
                target.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(target, flags, 0o600)
        except FileExistsError:
            self._write_meta(key, meta)
            return
        try:
            try:
                write_all(fd, data)
                self._durable_file(fd, target)
            finally:
                os.close(fd)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(target)
            raise
        self._durable_dir(target.parent)

    def _write_meta(self, key: str, meta: dict[str, Any]) -> None:
        target = self._meta(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(meta, fh, sort_keys=True)
                fh.flush()
                self._durable_file(fh.fileno(), target)
            # The sidecar may be replaced (extend, hold); the data file never is.
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        self._durable_dir(target.parent)

    def _lock_meta(self, retain_until: datetime | None, sha512: str, size: int) -> dict[str, Any]:
        now = self._clock()
        mode: LockMode = "GOVERNANCE" if self.quarantine_days > 0 else "COMPLIANCE"
        return {
            "retain_until": effective_retain_until(retain_until).isoformat(),
            "lock_mode": mode,
            "legal_hold": False,
            "stored_at": now.isoformat(),
            "sha512": sha512,
            "size": size,
        }

    # -- streaming helpers -------------------------------------------------------------------

    def _write_temp(
        self,
        directory: Path,
        key: str,
        source: BinaryIO,
        final: Path,
        *,
        expected_sha512: str | None,
        lock: Callable[[str, int], dict[str, Any]] | None = None,
        publish: bool = False,
    ) -> _Written:
        """Copy ``source`` to a new file, read it back and check it, lock it (``lock``: the
        record for the digest and size read back, set on the file), and make it durable (now or
        at the end of the batch) under the name ``final`` it is about to get.
        :class:`IntegrityMismatch` (nothing left) when the read-back disagrees.

        With ``publish`` the file is given the name ``final`` here, never replacing one
        (:class:`FileExistsError` when the name is taken): written without a name
        (:func:`_create_anonymous`) where the offer can, else under a temporary name
        (:func:`_create_temp`) linked to ``final`` and removed. Without ``publish`` it keeps
        its temporary name, which the caller publishes and removes.

        With ``expected_sha512`` (the digest the bytes must have) the bytes are only hashed as
        read back; a source that lies in a file (:class:`FileCopySource`) is then copied in the
        kernel. Without it they are hashed on the way in too, and must read back the same.
        """
        mode = 0o600 if lock is not None and self._xattrs else _READ_ONLY
        tmp: str | None
        if publish and self._can_write_anonymous(directory):
            fd, tmp = _create_anonymous(directory, mode), None
        else:
            fd, tmp = _create_temp(directory, final.name, mode)
        digest = hashlib.sha512() if expected_sha512 is None else None
        size = 0
        try:
            # Past fileio.TRAIL_AFTER a second thread reads the copy back while it is written;
            # a smaller copy is read back in one go once written.
            readback = TrailingDigest(fd)
        except BaseException:
            os.close(fd)
            if tmp is not None:
                os.unlink(tmp)
            raise
        try:
            try:
                if digest is None and is_file_copy_source(source):
                    size = source.copy_into(fd, readback.advance)
                while chunk := source.read(CHUNK_SIZE):
                    if digest is not None:
                        digest.update(chunk)
                    write_all(fd, chunk)
                    size += len(chunk)
                    readback.advance(size)
                back_sha512, back_size = readback.finish()
                sha512 = expected_sha512 or (digest.hexdigest() if digest is not None else "")
                # What the disk now holds, not what we believe we wrote.
                if (back_sha512, back_size) != (sha512, size):
                    raise IntegrityMismatch(self.name, key, sha512, back_sha512)
                record = self._lock_file(fd, lock(sha512, size)) if lock is not None else None
                self._durable_file(fd, final)
                if publish:
                    # Written, checked, locked (and synced, outside a batch): now it has a name.
                    if tmp is None:
                        _publish_anonymous(fd, final)
                    else:
                        os.link(tmp, final)
            finally:
                os.close(fd)
        except BaseException:
            readback.abandon()
            if tmp is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            raise
        if publish and tmp is not None:
            os.unlink(tmp)  # the file now has its own name
            tmp = None
        return _Written(tmp, sha512, size, record)

    def _can_write_anonymous(self, directory: Path) -> bool:
        """Whether new objects can be written without a name, then named: found out once per
        offer, by creating and naming such a file in ``directory`` (the first put's)."""
        if self._anonymous is None:
            self._anonymous = _anonymous_works(directory)
        return self._anonymous

    def _lock_file(self, fd: int, record: dict[str, Any]) -> dict[str, Any] | None:
        """Set ``record`` as the file's lock attribute, then make the file read-only; the
        record, or None when the filesystem keeps no extended attributes (the caller then
        writes a sidecar; this offer stops trying)."""
        if self._xattrs:
            try:
                os.setxattr(fd, LOCK_XATTR, json.dumps(record, sort_keys=True).encode())
            except OSError as exc:
                if exc.errno not in _NO_XATTR:
                    raise
                self._xattrs = False
            else:
                os.fchmod(fd, _READ_ONLY)
                return record
        os.fchmod(fd, _READ_ONLY)
        return None

    @staticmethod
    def _digest_file(path: Path) -> tuple[str, int]:
        digest = hashlib.sha512()
        size = 0
        with path.open("rb") as fh:
            while chunk := fh.read(CHUNK_SIZE):
                digest.update(chunk)
                size += len(chunk)
        return digest.hexdigest(), size

    def _remove_files(self, key: str) -> None:
        # The sidecar first: a removal stopped between the two then leaves the bytes with the
        # lock they were deleted under (their attribute) or none, never a sidecar that would
        # stand for the lock of a later object of the same key.
        data, meta = self._data(key), self._meta(key)
        for path in (meta, data):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        fsync_directory(data.parent)

    def _drop_stale_meta(self, key: str) -> None:
        """Remove a sidecar left by a removal that stopped between the bytes and their record
        (an earlier version removed the bytes first): it would override the lock of the new
        object just published under the same key. Usually none: one failed lookup."""
        target = self._meta(key)
        try:
            os.unlink(target)
        except FileNotFoundError:
            return
        self._durable_dir(target.parent)

    # -- the contract ----------------------------------------------------------------------

    def put(
        self,
        key: str,
        source: BinaryIO,
        *,
        retain_until: datetime | None,
        expected_sha512: str | None = None,
    ) -> StoredObject:
        """Write ``source`` once under ``key``, verify it by reading it back, lock it.

        With ``expected_sha512`` (a digest the caller already holds for these bytes) the bytes
        are hashed only as read back, and must have that digest. Nothing is published when the
        read-back disagrees.
        """
        target = self._data(key)
        effective_retain_until(retain_until)  # refuse a naive date before writing anything
        if target.exists():
            raise ObjectExists(self.name, key)
        try:
            self._make_dir(target.parent)
            try:
                written = self._write_temp(
                    target.parent,
                    key,
                    source,
                    target,
                    expected_sha512=expected_sha512,
                    lock=lambda sha512, size: self._lock_meta(retain_until, sha512, size),
                    publish=True,
                )
            except FileExistsError:
                raise ObjectExists(self.name, key) from None
            self._durable_dir(target.parent)
            if written.lock is not None:
                meta = written.lock
                self._drop_stale_meta(key)
            else:
                meta = self._lock_meta(retain_until, written.sha512, written.size)
                self._create_meta(key, meta)
        except OSError as exc:
            raise self._unavailable(exc) from exc
        return self._stored(key, meta)

    def _stored(self, key: str, meta: dict[str, Any]) -> StoredObject:
        stored_at = datetime.fromisoformat(meta["stored_at"])
        return StoredObject(
            key=key,
            size=int(meta["size"]),
            sha512=meta.get("sha512"),
            version_id=None,
            offer=self.name,
            retain_until=datetime.fromisoformat(meta["retain_until"]),
            lock_mode=meta["lock_mode"],
            legal_hold=bool(meta["legal_hold"]),
            stored_at=stored_at,
            quarantine_ends_at=quarantine_end(meta["lock_mode"], stored_at, self.quarantine_days),
        )

    def get(self, key: str) -> Iterator[bytes]:
        """Stream the bytes in chunks; :class:`ObjectMissing` is raised before the first one."""
        try:
            fh = self._data(key).open("rb")
        except FileNotFoundError:
            raise ObjectMissing(self.name, key) from None
        except OSError as exc:
            raise self._unavailable(exc) from exc
        return self._iter_file(fh)

    def _iter_file(self, fh: BinaryIO) -> Iterator[bytes]:
        with fh:
            try:
                while chunk := fh.read(CHUNK_SIZE):
                    yield chunk
            except OSError as exc:
                raise self._unavailable(exc) from exc

    def head(self, key: str) -> StoredObject | None:
        """What the offer knows of ``key`` (the SHA-512 recorded at write time), or None."""
        target = self._data(key)
        try:
            st = target.stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._unavailable(exc) from exc
        meta = self._read_meta(key)
        if meta is None:
            # Published but never locked: a crash between link() and the sidecar. Reported as
            # unlocked, so reconciliation may remove it (it was never acknowledged).
            return StoredObject(key=key, size=st.st_size, sha512=None, offer=self.name)
        return (
            self._stored(key, meta)
            if meta["size"] == st.st_size
            else StoredObject(
                key=key,
                size=st.st_size,
                sha512=None,
                offer=self.name,
                retain_until=datetime.fromisoformat(meta["retain_until"]),
                lock_mode=meta["lock_mode"],
                legal_hold=bool(meta["legal_hold"]),
                stored_at=datetime.fromisoformat(meta["stored_at"]),
            )
        )

    def _refusal(self, meta: dict[str, Any]) -> str | None:
        """Why the lock refuses deletion now, or None when it allows it."""
        if meta.get("legal_hold"):
            return "legal hold"
        now = self._clock()
        until = datetime.fromisoformat(meta["retain_until"])
        if until <= now:
            return None
        window_end = quarantine_end(
            meta["lock_mode"], datetime.fromisoformat(meta["stored_at"]), self.quarantine_days
        )
        if window_end is not None:
            if now < window_end:
                return None
            return f"quarantine ended, retained until {until.isoformat()}"
        return f"retained until {until.isoformat()}"

    def delete(self, key: str) -> None:
        """Remove the object unless its lock or a legal hold refuses it."""
        target = self._data(key)
        if not target.exists():
            raise ObjectMissing(self.name, key)
        meta = self._read_meta(key)
        if meta is not None:
            reason = self._refusal(meta)
            if reason is not None:
                raise RetentionActive(self.name, key, reason)
        try:
            self._remove_files(key)
        except OSError as exc:
            raise self._unavailable(exc) from exc

    def _existing_meta(self, key: str, until: datetime | None = None) -> dict[str, Any]:
        target = self._data(key)
        try:
            st = target.stat()
        except FileNotFoundError:
            raise ObjectMissing(self.name, key) from None
        meta = self._read_meta(key)
        if meta is None:
            # Unlocked leftover (crash before its sidecar): from now on it is locked like any
            # copy, until ``until`` when one is being set, else permanently.
            sha512, size = self._digest_file(target)
            meta = self._lock_meta(until, sha512, size)
            meta["size"] = st.st_size
        return meta

    def extend_retention(self, key: str, until: datetime) -> None:
        """Move retain-until later (never earlier)."""
        new = effective_retain_until(until)
        meta = self._existing_meta(key, new)
        if self._read_meta(key) is None:
            self._write_meta(key, meta)
            return
        current = datetime.fromisoformat(meta["retain_until"])
        if new < current:
            raise RetentionShortening(self.name, key, current, new)
        if new == current:
            return
        meta["retain_until"] = new.isoformat()
        self._write_meta(key, meta)

    def set_legal_hold(self, key: str, on: bool) -> None:
        """Put (``on=True``) or lift a legal hold."""
        meta = self._existing_meta(key)
        meta["legal_hold"] = bool(on)
        self._write_meta(key, meta)

    def seal(self, key: str) -> bool:
        """End the quarantine of ``key`` once its window has passed (GOVERNANCE → COMPLIANCE)."""
        meta = self._existing_meta(key)
        window_end = quarantine_end(
            meta["lock_mode"], datetime.fromisoformat(meta["stored_at"]), self.quarantine_days
        )
        if window_end is None or self._clock() < window_end:
            return False
        meta["lock_mode"] = "COMPLIANCE"
        self._write_meta(key, meta)
        return True

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        """Every published key starting with ``prefix`` (temporary files are skipped)."""
        base = self.root / "data"
        if not base.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            rel = Path(dirpath).relative_to(base)
            for filename in sorted(filenames):
                if filename.startswith("."):
                    continue
                key = (rel / filename).as_posix() if rel.parts else filename
                if key.startswith(prefix):
                    yield key

    def check(self) -> None:
        """Create the directories if needed and prove the offer is writable."""
        try:
            for sub in ("data", "meta"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=self.root, prefix=".check.")
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise self._unavailable(exc) from exc

    def replace_damaged(
        self, key: str, source: BinaryIO, *, expected_sha512: str, retain_until: datetime | None
    ) -> StoredObject:
        """Write a healthy copy over a missing or corrupt one (see ``StorageOffer``)."""
        target = self._data(key)
        try:
            if target.exists():
                actual, _ = self._digest_file(target)
                if actual == expected_sha512:
                    raise ObjectExists(self.name, key)
            # Read before the damaged file goes: its attribute may be its lock record.
            old = self._read_meta(key)
            target.parent.mkdir(parents=True, exist_ok=True)
            written = self._write_temp(
                target.parent, key, source, target, expected_sha512=expected_sha512
            )
            size = written.size
            # Overwriting is right here and only here: what is replaced is known bad. The new
            # copy was read back before (the same file, now under the key's name). Its lock
            # record is a sidecar, which overrides whatever the old file carried.
            assert written.tmp is not None  # not published: it has its temporary name
            os.replace(written.tmp, target)
            self._durable_dir(target.parent)
            meta = self._lock_meta(retain_until, expected_sha512, size)
            if old is not None:
                # Keep the stronger of the two locks: repair must not weaken anything.
                old_until = datetime.fromisoformat(old["retain_until"])
                if old_until > datetime.fromisoformat(meta["retain_until"]):
                    meta["retain_until"] = old["retain_until"]
                meta["legal_hold"] = bool(old["legal_hold"])
                meta["lock_mode"] = old["lock_mode"]
                meta["stored_at"] = old["stored_at"]
            self._write_meta(key, meta)
        except OSError as exc:
            raise self._unavailable(exc) from exc
        return self._stored(key, meta)
