"""Streaming digests: the declared algorithm and SHA-512 in one pass over the bytes."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from typing import Any

from sae.fileio import copy_range

#: Bytes kept from the start and the end of each file for its identification (libmagic reads
#: the start; PRONOM's signatures both): fido's own window (``sae.ingest.identify``).
IDENTIFY_BYTES = 128 * 1024

# SEDA names digest algorithms as in its DigestAlgorithmCodeList; these are the ones hashlib has.
ALGORITHMS = {
    "MD5": "md5",
    "SHA-1": "sha1",
    "SHA1": "sha1",
    "SHA-224": "sha224",
    "SHA-256": "sha256",
    "SHA256": "sha256",
    "SHA-384": "sha384",
    "SHA-512": "sha512",
    "SHA512": "sha512",
    "SHA3-256": "sha3_256",
    "SHA3-512": "sha3_512",
    # XML-Encryption / XML-DSig URIs, as Pastell's SEDA 2.1 bordereaux and as@lae name them
    # (looked up in upper case, like the names above).
    "HTTP://WWW.W3.ORG/2000/09/XMLDSIG#SHA1": "sha1",
    "HTTP://WWW.W3.ORG/2001/04/XMLENC#SHA256": "sha256",
    "HTTP://WWW.W3.ORG/2001/04/XMLDSIG-MORE#SHA384": "sha384",
    "HTTP://WWW.W3.ORG/2001/04/XMLENC#SHA512": "sha512",
}


def hashlib_name(algorithm: str) -> str | None:
    """The hashlib name of a SEDA digest algorithm, or None if unknown."""
    return ALGORITHMS.get(algorithm.strip().upper())


class HashingReader:
    """A file-like ``read()`` over chunks that digests and counts what passes through.

    Handed to a storage offer's ``put``: the offer's single read of the stream is also the
    single read that checks the declared digest. The first and the last
    :data:`IDENTIFY_BYTES` bytes are kept for format identification (``head``, ``tail``).
    ``sha512=False`` when the consumer computes the SHA-512 itself (a storage offer's ``put``
    does, by contract): one hash pass less over every byte.
    """

    SNIFF_BYTES = IDENTIFY_BYTES

    def __init__(
        self, chunks: Iterator[bytes], declared_algorithm: str | None, *, sha512: bool = True
    ) -> None:
        self._chunks = chunks
        self._buffer = b""
        self.size = 0
        self.sha512: Any = hashlib.sha512() if sha512 else None
        name = hashlib_name(declared_algorithm) if declared_algorithm else None
        self.declared: Any = None
        self.declared_is_sha512 = name == "sha512"
        if name is not None and name != "sha512":
            self.declared = hashlib.new(name)
        self.head = b""
        # The last chunks read, together at least IDENTIFY_BYTES long when the file is: the
        # tail is cut from them once, when asked (chunks are not copied on the way).
        self._recent: list[bytes] = []
        self._recent_size = 0
        self.exhausted = False
        self.failure: Exception | None = None

    def _update(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.sha512 is not None:
            self.sha512.update(chunk)
        if self.declared is not None:
            self.declared.update(chunk)
        if len(self.head) < self.SNIFF_BYTES:
            self.head += chunk[: self.SNIFF_BYTES - len(self.head)]
        recent = self._recent
        recent.append(chunk)
        self._recent_size += len(chunk)
        while len(recent) > 1 and self._recent_size - len(recent[0]) >= IDENTIFY_BYTES:
            self._recent_size -= len(recent.pop(0))

    @property
    def tail(self) -> bytes:
        """The last :data:`IDENTIFY_BYTES` bytes read (the whole file when it is shorter)."""
        if len(self._recent) > 1:
            self._recent = [b"".join(self._recent)]
        return self._recent[0][-IDENTIFY_BYTES:] if self._recent else b""

    def _next(self) -> bytes | None:
        try:
            chunk = next(self._chunks)
        except StopIteration:
            self.exhausted = True
            return None
        except Exception as exc:
            # Kept so that the SIP's own fault (a corrupt entry) is reported as such even when
            # the consumer (a storage offer) wraps it in its own error.
            self.failure = exc
            raise
        self._update(chunk)
        return chunk

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all that is left when ``n < 0``); fewer only at the end."""
        if n < 0:
            parts = [self._buffer]
            while (chunk := self._next()) is not None:
                parts.append(chunk)
            self._buffer = b""
            return b"".join(parts)
        if not self._buffer:
            # Fast path: hand a whole chunk over without copying it.
            chunk = self._next()
            if chunk is None:
                return b""
            if len(chunk) == n:
                return chunk
            self._buffer = chunk
        parts = [self._buffer]
        have = len(self._buffer)
        while have < n and (chunk := self._next()) is not None:
            parts.append(chunk)
            have += len(chunk)
        data = b"".join(parts) if len(parts) > 1 else parts[0]
        out, self._buffer = data[:n], data[n:]
        return out

    def drain(self) -> None:
        """Read whatever is left (when the consumer stopped early)."""
        while self.read(1024 * 1024):
            pass

    def declared_hexdigest(self, sha512: str) -> str:
        """The digest in the declared algorithm (``sha512`` when that is the declared one)."""
        if self.declared is None:
            return sha512
        return str(self.declared.hexdigest())


class SpanReader(HashingReader):
    """The bytes of a file stored (not deflated) in the SIP, read straight from the SIP's file.

    For a file whose declared digest is a SHA-512, which its copies are verified against when
    read back: nothing is hashed on the way, the zip's CRC-32 is not computed (the SHA-512 says
    more), and an offer that writes files copies the bytes in the kernel (:meth:`copy_into`).
    ``fd`` is the SIP's, shared by the threads storing its files (only ``pread`` is used).
    """

    def __init__(self, fd: int, offset: int, length: int) -> None:
        super().__init__(iter(()), "SHA-512", sha512=False)
        self._fd = fd
        self._start = offset
        self._length = length
        self.head = os.pread(fd, min(self.SNIFF_BYTES, length), offset)

    @property
    def tail(self) -> bytes:
        size = min(IDENTIFY_BYTES, self._length)
        return os.pread(self._fd, size, self._start + self._length - size)

    def read(self, n: int = -1) -> bytes:
        left = self._length - self.size
        if n < 0 or n > left:
            n = left
        data = os.pread(self._fd, n, self._start + self.size) if n else b""
        if not data:
            self.exhausted = True
        self.size += len(data)
        return data

    def copy_into(self, fd: int, progress: Callable[[int], None]) -> int:
        """Copy the whole file in the kernel (see :func:`sae.fileio.copy_range`)."""
        assert self.size == 0, "copy_into comes before any read"
        self.size = copy_range(self._fd, self._start, self._length, fd, progress)
        return self.size
