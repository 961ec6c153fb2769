"""The witness's one act: co-sign a log's checkpoint that extends the last one it co-signed
(c2sp.org/tlog-witness, ``add-checkpoint``).

A witness holds, per log, the latest checkpoint it co-signed. It co-signs a new checkpoint
only when the log's own key signed it and a consistency proof shows that it extends that
record, so a log that rewrites or forks its history cannot get a cosignature for it, and a
log's client that trusts a quorum of witnesses cannot be shown a private fork.

The checks, in the order and with the statuses the spec gives:

1. the body is ``old <size>\\n``, at most 63 base64 proof lines, a blank line, a checkpoint
   note — else 400 (:class:`MalformedRequest`);
2. the origin is a trusted log — else 404 (:class:`UnknownOrigin`);
3. a signature by one of the log's keys verifies, and none of them fails — else 403
   (:class:`LogSignatureRefused`);
4. ``old`` ≤ the checkpoint's size — else 400;
5. ``old`` is the size last co-signed for the origin (0 if none) — else 409 with that size
   (:class:`OldSizeConflict`); a checkpoint smaller than the record is refused here;
6. a size 0 has the empty tree's root; from 0 the proof is empty; at the same size the root is
   the same; otherwise the RFC 9162 consistency proof from the record's root verifies — else
   422 (:class:`InconsistentCheckpoint`).

Steps 5 to 7 (co-sign and record) run under the origin's lock, and the record is durable
before the cosignature is returned: a witness killed at any instant restarts with a size it
co-signed, never below one it returned.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

from sae.journal.merkle import EMPTY_ROOT, HASH_SIZE, verify_consistency
from sae.journal.note import (
    MAX_NOTE_BYTES,
    Checkpoint,
    Note,
    NoteError,
    SignatureInvalid,
    Verifier,
    WitnessKey,
    parse_checkpoint,
)
from sae.witness.errors import (
    InconsistentCheckpoint,
    LogSignatureRefused,
    MalformedRequest,
    OldSizeConflict,
    UnknownOrigin,
)
from sae.witness.store import CosignedState, WitnessStore

log = logging.getLogger("sae.witness")

#: tlog-witness: "The client MUST NOT send more than 63 consistency proof lines."
MAX_PROOF_LINES = 63
#: The largest body read: the old size line, 63 proof lines and a note.
MAX_REQUEST_BYTES = 64 + MAX_PROOF_LINES * 46 + MAX_NOTE_BYTES

_OLD_LINE = re.compile(r"old (0|[1-9][0-9]{0,18})")


@dataclass(frozen=True)
class AddCheckpointRequest:
    """A parsed ``add-checkpoint`` body."""

    old_size: int
    proof: tuple[bytes, ...]
    note: Note


def parse_request(body: bytes) -> AddCheckpointRequest:
    """Read an ``add-checkpoint`` body; :class:`MalformedRequest` says what is wrong."""
    if len(body) > MAX_REQUEST_BYTES:
        raise MalformedRequest(f"the body is larger than {MAX_REQUEST_BYTES} bytes")
    # The proof lines are base64 and never empty: the first blank line ends them.
    head, sep, rest = body.partition(b"\n\n")
    if not sep:
        raise MalformedRequest("no blank line between the old size and proof and the checkpoint")
    try:
        lines = head.decode("ascii").split("\n")
    except UnicodeDecodeError:
        raise MalformedRequest("the old size and proof lines must be ASCII") from None
    match = _OLD_LINE.fullmatch(lines[0])
    if match is None:
        raise MalformedRequest(f"the first line must be 'old <size>' in decimal: {lines[0][:60]!r}")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise MalformedRequest(f"more than {MAX_PROOF_LINES} consistency proof lines")
    proof = []
    for i, line in enumerate(lines[1:], start=1):
        try:
            node = base64.b64decode(line.encode("ascii"), validate=True)
        except (binascii.Error, ValueError):
            raise MalformedRequest(f"proof line {i} is not base64: {line[:60]!r}") from None
        if len(node) != HASH_SIZE or base64.b64encode(node).decode() != line:
            raise MalformedRequest(f"proof line {i} is not one base64 SHA-256 hash")
        proof.append(node)
    try:
        note = Note.parse(rest)
    except NoteError as exc:
        raise MalformedRequest(f"the checkpoint is not a signed note: {exc.detail}") from None
    return AddCheckpointRequest(int(match[1]), tuple(proof), note)


class Witness:
    """A running witness: its key and its data directory (re-read for the trusted logs, so
    ``sae witness trust`` takes effect without a restart)."""

    def __init__(self, directory: Path) -> None:
        self.store = WitnessStore(directory)
        self.key: WitnessKey = self.store.load_key()
        self.store.trusted_logs()  # refuse a malformed logs.json at start, not at a request

    def add_checkpoint(self, body: bytes, now: int | None = None) -> str:
        """Check and co-sign; the cosignature line(s) to return with 200."""
        request = parse_request(body)
        try:
            checkpoint = parse_checkpoint(request.note.text)
        except NoteError as exc:
            raise MalformedRequest(f"the note is not a checkpoint: {exc.detail}") from None
        origin = checkpoint.origin
        verifiers = self.store.trusted_logs().get(origin)
        if not verifiers:
            raise UnknownOrigin(f"unknown log origin {origin!r}")
        self._check_log_signature(request.note, origin, verifiers)
        if request.old_size > checkpoint.size:
            raise MalformedRequest(
                f"old size {request.old_size} is larger than the checkpoint's {checkpoint.size}"
            )
        with self.store.locked(origin):
            record = self.store.state(origin)
            latest = record.size if record is not None else 0
            if request.old_size != latest:
                log.warning(
                    "witness.conflict origin=%s old=%d latest=%d size=%d",
                    origin, request.old_size, latest, checkpoint.size,
                )  # fmt: skip
                raise OldSizeConflict(
                    f"old size {request.old_size} is not the size last co-signed for "
                    f"{origin!r}, {latest}",
                    latest,
                )
            self._check_consistency(request, checkpoint, record)
            timestamp = int(time.time()) if now is None else now
            line = self.key.cosign(request.note.text, timestamp)
            # The note kept is the log's verified signatures and ours: what a monitor fetches.
            kept = Note(
                request.note.text,
                tuple(s for s in request.note.signatures if any(v.matches(s) for v in verifiers)),
            ).with_signatures(line)
            state = CosignedState(
                origin, checkpoint.size, checkpoint.root_hash, kept.encode(), timestamp
            )
            self.store.save_state(state)
        log.info("witness.cosigned origin=%s size=%d", origin, checkpoint.size)
        return line

    def latest_checkpoint(self, origin_hash: str) -> str | None:
        """The co-signed note last recorded for the origin whose SHA-256 is ``origin_hash``
        (the monitoring endpoint), or None."""
        for origin in self.store.trusted_logs():
            if hashlib.sha256(origin.encode("utf-8")).hexdigest() == origin_hash:
                record = self.store.state(origin)
                return record.checkpoint if record is not None else None
        return None

    @staticmethod
    def _check_log_signature(note: Note, origin: str, verifiers: list[Verifier]) -> None:
        try:
            verified = note.verified_by(verifiers)
        except SignatureInvalid as exc:
            log.warning("witness.bad_signature origin=%s: %s", origin, exc.detail)
            raise LogSignatureRefused(exc.detail) from None
        except NoteError as exc:  # two trusted keys alike: the operator's error, not the log's
            raise LogSignatureRefused(exc.detail) from None
        if not verified:
            raise LogSignatureRefused(f"no signature by a trusted key of {origin!r}")

    @staticmethod
    def _check_consistency(
        request: AddCheckpointRequest, checkpoint: Checkpoint, record: CosignedState | None
    ) -> None:
        origin, size, root = checkpoint.origin, checkpoint.size, checkpoint.root_hash
        if size == 0 and root != EMPTY_ROOT:
            raise InconsistentCheckpoint("a checkpoint of size 0 must have the empty tree's root")
        if request.old_size == 0:
            if request.proof:
                raise InconsistentCheckpoint("from old size 0 the consistency proof must be empty")
            return
        assert record is not None  # old == latest > 0
        if request.old_size == size and root != record.root_hash:
            log.warning("witness.fork origin=%s size=%d", origin, size)
            raise InconsistentCheckpoint(
                f"another root at size {size} than the one co-signed: a fork of {origin!r}"
            )
        if not verify_consistency(request.old_size, size, record.root_hash, root, request.proof):
            log.warning("witness.bad_proof origin=%s old=%d size=%d", origin, record.size, size)
            raise InconsistentCheckpoint(
                f"the consistency proof from size {request.old_size} to {size} does not verify"
            )
