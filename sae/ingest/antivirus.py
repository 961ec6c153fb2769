"""Antivirus at ingest: every file of a SIP scanned by clamd before anything is stored.

A small client of clamd's own protocol (``man clamd``): commands in their ``z`` form (NUL
terminated), ``zINSTREAM`` sending the file in chunks each preceded by its length as 4 bytes in
network order and ended by a zero length, ``zPING`` and ``zVERSION``. clamd answers
``stream: OK``, ``stream: <signature> FOUND``, or ``... ERROR``; a stream longer than its
``StreamMaxLength`` is answered ``INSTREAM size limit exceeded. ERROR`` (and clamd may close the
connection before the end of the file): that file is a fault, "too large to be scanned", never
a pass.

The socket is ``SAE_CLAMD_SOCKET``: a Unix socket's path, or ``host:port``. When clamd cannot
be reached, the SIP is answered 503 if ``SAE_CLAMD_REQUIRED`` holds (the production setting),
and accepted with a warning in its ATR otherwise (see docs/ingest.md).
"""

from __future__ import annotations

import logging
import socket
import struct
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import seda
from sae.config import Settings
from sae.errors import ServiceUnavailable
from sae.ingest.errors import IngestFault, Refusal, SipRefused
from sae.ingest.ziparchive import SipArchive

log = logging.getLogger("sae.ingest.antivirus")

#: Bytes sent in one INSTREAM chunk (clamd reads each chunk whole; its default buffers are small).
CHUNK = 256 * 1024
_LENGTH = struct.Struct(">I")
#: The longest answer clamd sends (a signature name is short; an error line a little longer).
_MAX_REPLY = 64 * 1024

INFECTED = "antivirus.infected"
TOO_LARGE = "antivirus.too_large"
NOT_SCANNED = "antivirus.not_scanned"


class AntivirusUnavailable(ServiceUnavailable):
    """clamd could not scan the SIP's files and the antivirus is required: nothing is stored;
    send the SIP again once clamd answers."""

    code = "ingest.antivirus_unavailable"
    title = "Antivirus unavailable"


class ClamdError(Exception):
    """clamd could not be reached, or answered something this client does not understand."""


class TooLarge(Exception):  # noqa: N818 - an answer of clamd's, not a failure of the client
    """clamd refused the stream: longer than its ``StreamMaxLength``."""


@dataclass(frozen=True)
class ScanResult:
    """A file's verdict: ``signature`` is None when clamd found nothing."""

    signature: str | None

    @property
    def clean(self) -> bool:
        return self.signature is None


class ClamdClient:
    """One connection per command, as clamd expects of the ``z`` commands without IDSESSION."""

    def __init__(self, address: str, *, timeout: float = 60.0) -> None:
        self.address = address
        self.timeout = timeout

    def _connect(self) -> socket.socket:
        try:
            if ":" in self.address and not self.address.startswith("/"):
                host, _, port = self.address.rpartition(":")
                return socket.create_connection((host.strip("[]"), int(port)), timeout=self.timeout)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(self.address)
            except BaseException:
                sock.close()
                raise
            return sock
        except (OSError, ValueError) as exc:
            raise ClamdError(f"clamd at {self.address} unreachable: {exc}") from exc

    def _command(self, command: bytes) -> str:
        with self._connect() as sock:
            try:
                sock.sendall(b"z" + command + b"\0")
                return _read_reply(sock)
            except OSError as exc:
                raise ClamdError(f"clamd at {self.address}: {exc}") from exc

    def ping(self) -> bool:
        """True when clamd answers PONG."""
        return self._command(b"PING") == "PONG"

    def version(self) -> str:
        """clamd's version line (engine/signatures/date)."""
        return self._command(b"VERSION")

    def scan(self, chunks: Iterable[bytes]) -> ScanResult:
        """Scan a stream of bytes with INSTREAM; :class:`TooLarge` past clamd's limit."""
        with self._connect() as sock:
            try:
                sock.sendall(b"zINSTREAM\0")
                try:
                    for chunk in chunks:
                        for start in range(0, len(chunk), CHUNK):
                            part = chunk[start : start + CHUNK]
                            sock.sendall(_LENGTH.pack(len(part)) + part)
                    sock.sendall(_LENGTH.pack(0))
                except (BrokenPipeError, ConnectionResetError):
                    # clamd stops reading (and may close) once the stream passes its limit:
                    # its answer, if it sent one, says why.
                    pass
                reply = _read_reply(sock)
            except OSError as exc:
                raise ClamdError(f"clamd at {self.address}: {exc}") from exc
        return _verdict(reply)


def _read_reply(sock: socket.socket) -> str:
    data = b""
    while not data.endswith(b"\0"):
        try:
            part = sock.recv(4096)
        except ConnectionResetError:
            part = b""
        if not part:
            break
        data += part
        if len(data) > _MAX_REPLY:
            raise ClamdError("clamd's answer is too long")
    if not data:
        raise ClamdError("clamd closed the connection without answering")
    return data.rstrip(b"\0").decode("utf-8", "replace").strip()


def _verdict(reply: str) -> ScanResult:
    """``stream: OK`` / ``stream: <name> FOUND`` / ``... ERROR`` (the size limit: TooLarge)."""
    if reply.endswith("ERROR"):
        if "size limit exceeded" in reply:
            raise TooLarge(reply)
        raise ClamdError(f"clamd could not scan: {reply}")
    _, _, verdict = reply.partition(": ")
    if verdict == "OK":
        return ScanResult(None)
    if verdict.endswith(" FOUND"):
        return ScanResult(verdict[: -len(" FOUND")].strip() or "unknown")
    raise ClamdError(f"unexpected answer from clamd: {reply!r}")


def required(settings: Settings) -> bool:
    """Whether a SIP may not be accepted unscanned: ``SAE_CLAMD_REQUIRED``, else whether a
    socket is configured (the embedded default, without one, scans nothing)."""
    if settings.clamd_required is not None:
        return settings.clamd_required
    return settings.clamd_socket is not None


def scan_package(
    archive: SipArchive,
    transfer: seda.ArchiveTransfer,
    entry_of: dict[str, str],
    settings: Settings,
) -> list[IngestFault]:
    """Scan every file of the SIP (streamed from the zip, ``ingest_threads`` at once).

    Raises :class:`SipRefused` with one fault per infected or unscannable file;
    :class:`AntivirusUnavailable` when clamd fails and is required. Returns the warnings to
    put in the ATR (clamd unreachable and not required, or no clamd configured but required
    is false: nothing, the embedded default).
    """
    must = required(settings)
    if settings.clamd_socket is None:
        if must:
            raise AntivirusUnavailable(
                "the antivirus is required (SAE_CLAMD_REQUIRED) but SAE_CLAMD_SOCKET is not set"
            )
        return []
    client = ClamdClient(settings.clamd_socket, timeout=settings.clamd_timeout_seconds)
    bdos: Sequence[seda.BinaryDataObject] = [
        bdo for bdo in transfer.package.binary_data_objects if bdo.id in entry_of
    ]

    def scan_one(bdo: seda.BinaryDataObject) -> IngestFault | None:
        try:
            result = client.scan(archive.stream(entry_of[bdo.id]))
        except TooLarge:
            return IngestFault(
                TOO_LARGE,
                f"file {bdo.uri!r} is too large to be scanned by the antivirus",
                bdo.id,
            )
        if result.clean:
            return None
        log.warning("ingest.infected file=%s signature=%s", bdo.uri, result.signature)
        return IngestFault(INFECTED, f"virus {result.signature} found in file {bdo.uri!r}", bdo.id)

    try:
        if settings.ingest_threads <= 1 or len(bdos) <= 1:
            found = [scan_one(bdo) for bdo in bdos]
        else:
            with ThreadPoolExecutor(settings.ingest_threads, "sae-scan") as pool:
                found = list(pool.map(scan_one, bdos))
    except ClamdError as exc:
        if must:
            raise AntivirusUnavailable(f"the antivirus could not scan the SIP: {exc}") from exc
        log.warning("ingest.not_scanned: %s", exc)
        return [IngestFault(NOT_SCANNED, f"files not scanned by the antivirus: {exc}", None)]
    faults = [fault for fault in found if fault is not None]
    if faults:
        raise SipRefused(faults, Refusal.INVALID)
    return []
