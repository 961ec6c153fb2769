"""File helpers for large objects: a SHA-512 that trails a writer, whole writes, kernel copies.

:class:`TrailingDigest` is the SHA-512 of a file while it is being written, read back by a
thread that trails the writer. Used wherever SAE writes a large file and must know the digest of
what the file holds: the SIP as it is received (its digest is the evidence of what was
deposited) and each copy on the local offer (verified by reading it back). Hashing runs outside
the GIL, so the writer and the hash each take a core: a large file costs about one pass instead
of two, and the SIP's hash no longer holds back the upload, nor the storing that follows it.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sae.errors import SpoolFailed

log = logging.getLogger("sae.fileio")

#: Bytes hashed per ``pread``.
CHUNK = 1024 * 1024

#: Past this size a thread trails the writer (see :class:`TrailingDigest`).
TRAIL_AFTER = 8 * CHUNK


def fsync_directory(path: Path) -> None:
    """Make the entries of directory ``path`` (a file created, renamed, removed) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_new_file(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Create ``path`` (it must not exist) holding ``data``, synced to the disk; removed again
    if writing it fails."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        os.unlink(path)
        raise


def publish_new_file(path: Path, data: bytes, mode: int = 0o600) -> bool:
    """Create ``path`` holding ``data``, whole and synced, unless it exists; True if created.

    Written under a temporary name, then linked to ``path`` (``link`` fails if the name is
    taken): a process that finds the file finds it complete, and of processes creating it at
    once the first wins and the others read the winner's.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(6)}")
    write_new_file(temporary, data, mode)
    try:
        os.link(temporary, path)
    except FileExistsError:
        return False
    finally:
        os.unlink(temporary)
    fsync_directory(path.parent)
    return True


@contextmanager
def spool_file(directory: Path, prefix: str, suffix: str) -> Iterator[tuple[int, Path]]:
    """A new private file in the spool ``directory``: its descriptor (the block closes it) and
    its path. When the block fails, the file is removed, and an ``OSError`` (the disk full, an
    I/O error) becomes :class:`~sae.errors.SpoolFailed` (503), never a 500."""
    try:
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=directory)
    except OSError as exc:
        raise _spool_failed(exc, directory) from exc
    path = Path(name)
    try:
        yield fd, path
    except BaseException as exc:
        path.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise _spool_failed(exc, directory) from exc
        raise


class SpoolFiles:
    """Spool files of one directory kept by this process for its next uploads.

    Why: a deposit's SIP is spooled to a file that was created for it and removed after its
    reply — an inode allocated and freed per deposit. On a journal-less ext4 (this project's
    benchmark machine) every inode freed in the last minute is skipped, one by one, by each
    later allocation in its block group, so that freed inode made every other new file dearer
    (docs/benchmarks.md, session 9); and creating, then freeing the blocks of, a file costs more
    than writing over the blocks of one already there (measured: 5 µs of CPU to rewrite 100 KiB
    in place, 25-40 µs to create, write and remove, 130 µs to truncate and rewrite). A kept file
    is written over from its start and cut to the new length by the caller
    (:meth:`file`), so it never shows a byte of the upload before it.

    Kept: at most :attr:`KEEP` files of at most :attr:`KEEP_BYTES` (a large SIP's file is
    removed as before), each reused within :attr:`IDLE_SECONDS` of its last use or removed —
    far inside the day after which a start sweeps the spool (``sae.runtime.sweep_spool``), so
    another worker's start never removes a file this one is about to reuse. Their bytes are
    the archive's own, in a private (0600) file of its data directory, until overwritten.
    """

    KEEP = 16
    KEEP_BYTES = 16 * 1024 * 1024
    IDLE_SECONDS = 600.0

    def __init__(self, directory: Path, prefix: str, suffix: str) -> None:
        self.directory = directory
        self.prefix = prefix
        self.suffix = suffix
        self._lock = threading.Lock()
        #: (path, when it was released: time.monotonic()), the most recent last.
        self._kept: list[tuple[Path, float]] = []

    @contextmanager
    def file(self) -> Iterator[tuple[int, Path]]:
        """As :func:`spool_file`, from a kept file when there is one. The caller writes from
        offset 0 and must ``os.ftruncate(fd, size)`` once done: a kept file may be longer."""
        fd, path = self._take()
        if fd is None:
            with spool_file(self.directory, self.prefix, self.suffix) as created:
                yield created
            return
        try:
            yield fd, path
        except BaseException as exc:
            path.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise _spool_failed(exc, self.directory) from exc
            raise

    def _take(self) -> tuple[int | None, Path]:
        now = time.monotonic()
        while True:
            with self._lock:
                if not self._kept:
                    return None, self.directory
                path, released = self._kept.pop()
            if now - released > self.IDLE_SECONDS:
                path.unlink(missing_ok=True)
                continue
            try:
                return os.open(path, os.O_RDWR | getattr(os, "O_CLOEXEC", 0)), path
            except OSError:  # removed meanwhile (an operator): a new file instead
                path.unlink(missing_ok=True)
                continue

    def release(self, path: Path) -> None:
        """The upload in ``path`` is no longer needed: kept for a next one, or removed."""
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return
        with self._lock:
            if size <= self.KEEP_BYTES and len(self._kept) < self.KEEP:
                self._kept.append((path, time.monotonic()))
                return
        path.unlink(missing_ok=True)

    def clear(self) -> None:
        """Remove every kept file (the process stops)."""
        with self._lock:
            kept, self._kept = self._kept, []
        for path, _ in kept:
            path.unlink(missing_ok=True)


def _spool_failed(exc: OSError, directory: Path) -> SpoolFailed:
    log.error("spool.write_failed in %s: %s", directory, exc)
    reason = os.strerror(exc.errno) if exc.errno else type(exc).__name__
    return SpoolFailed(f"a temporary file could not be written ({reason}); nothing was kept")


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` (``os.write`` may take fewer at a time)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


#: Bytes per ``copy_file_range`` call: progress is reported (and a trailing read-back can
#: follow) at this step.
COPY_STEP = 4 * CHUNK

#: What ``copy_file_range`` answers when it cannot copy between these two files (another
#: filesystem, an old kernel, a filesystem without splice): the bytes then go through Python.
_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP}


def copy_range(
    src: int, offset: int, length: int, dst: int, progress: Callable[[int], None]
) -> int:
    """Append ``length`` bytes of ``src`` from ``offset`` to ``dst`` (at its position); returns the
    count copied, less than ``length`` only if ``src`` ends sooner. ``progress`` gets the count
    copied so far after each step.

    The copy is made by the kernel (``copy_file_range``): the bytes never enter Python, and no
    user-space buffer is filled and emptied again. ``src``'s position is not used (several
    threads may copy from the same descriptor).
    """
    copied = 0
    kernel = True
    while copied < length:
        step = min(COPY_STEP, length - copied)
        if kernel:
            try:
                done = os.copy_file_range(src, dst, step, offset + copied)
            except OSError as exc:
                if exc.errno not in _NO_KERNEL_COPY:
                    raise
                kernel = False
                continue
        else:
            data = os.pread(src, min(step, CHUNK), offset + copied)
            write_all(dst, data)
            done = len(data)
        if done == 0:
            break
        copied += done
        progress(copied)
    return copied


class TrailingDigest:
    """SHA-512 and size of a file being written, read (``pread``) through a descriptor of its own.

    The writer reports its progress with :meth:`advance`; once it is done, :meth:`finish` hashes
    what is left, to the end of the file (bytes beyond what was reported count too). Every byte is
    read from the file after the ``write()`` that put it there returned.

    Below ``trail_after`` bytes (default :data:`TRAIL_AFTER`) nothing is read until
    :meth:`finish`: a small file is hashed in one go by the caller, without a thread started for
    it. From there on a thread follows the writer; ``trail_after=0`` starts it at once.
    """

    def __init__(self, fd: int, *, trail_after: int | None = None) -> None:
        self._fd = os.dup(fd)  # its own descriptor: the writer closes its one when done
        self._trail_after = TRAIL_AFTER if trail_after is None else trail_after
        self._digest = hashlib.sha512()
        self._offset = 0
        self._written = 0
        self._done = False
        self._aborted = False
        self._closed = False
        self._error: BaseException | None = None
        self._result: tuple[str, int] | None = None
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        if self._trail_after <= 0:
            self._start()

    @classmethod
    def of_file(cls, path: str | os.PathLike[str]) -> TrailingDigest:
        """The digest of a file already complete, hashed by a thread while the caller goes on
        (a small one by :meth:`finish`)."""
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            digest = cls(fd)
            digest.advance(os.fstat(fd).st_size)
            return digest
        finally:
            os.close(fd)

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._follow, name="sae-trailing-hash", daemon=True)
        self._thread.start()

    def advance(self, written: int) -> None:
        """``written`` bytes are now in the file."""
        if self._thread is None:
            self._written = written
            if written >= self._trail_after:
                self._start()
            return
        with self._cond:
            self._written = written
            self._cond.notify()

    def _read_upto(self, limit: int) -> None:
        """Hash the file from where the reading is up to ``limit``, or its end if sooner."""
        while self._offset < limit and not self._aborted:
            chunk = os.pread(self._fd, min(CHUNK, limit - self._offset), self._offset)
            if not chunk:
                return  # shorter than written: the caller's size comparison reports it
            self._digest.update(chunk)
            self._offset += len(chunk)

    def _follow(self) -> None:
        try:
            while True:
                with self._cond:
                    while self._offset >= self._written and not self._done:
                        self._cond.wait()
                    limit, done = self._written, self._done
                self._read_upto(limit)
                if done:
                    return
        except BaseException as exc:  # handed to finish(), in the caller's thread
            self._error = exc

    def _stop(self) -> None:
        if self._thread is not None:
            with self._cond:
                self._done = True
                self._cond.notify()
            self._thread.join()
            self._thread = None

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            os.close(self._fd)

    def finish(self) -> tuple[str, int]:
        """(SHA-512, size) of everything the file holds, once the writer is done."""
        if self._result is not None:
            return self._result
        if self._aborted:
            raise RuntimeError("the digest was abandoned")
        try:
            self._stop()
            if self._error is not None:
                raise self._error
            self._read_upto(sys.maxsize)  # to the end: past what was reported too
            self._result = (self._digest.hexdigest(), self._offset)
            return self._result
        finally:
            self._close()

    def hexdigest(self) -> str:
        """The SHA-512 alone (see :meth:`finish`)."""
        return self.finish()[0]

    def abandon(self) -> None:
        """The write or its consumer failed: stop reading at once. Safe to call twice, or after
        :meth:`finish`."""
        self._aborted = True
        self._stop()
        self._close()
