"""Offline consistency between two checkpoints (``sae journal consistency OLD NEW``).

Each side is a C2SP checkpoint note, or a proof bundle (its ``checkpoint.note``, whose signer
is the ``log_vkey`` of its ``witnesses.json``). The RFC 9162 consistency proof comes from a
file (the JSON answer of ``GET /api/v1/journal/consistency?first=OLD&second=NEW``), or from a
bundle asked for with ``?consistent_with=``, which carries a later head (``consistency.note``)
and the proof from its own head to it (``consistency.json``). Without ``--proof``, from two
bundles:

- NEW carries a later head and its proof starts at OLD's size: NEW's *later* head is checked
  against OLD's head (the usual case: OLD kept from earlier, NEW the bundle of an object of
  OLD's head asked for again with ``?consistent_with=latest``);
- OLD carries a later head of NEW's size: OLD's proof is checked against NEW's head.

Nothing here reads the database: an auditor runs it on what they were given.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass

from sae.journal import merkle
from sae.journal.note import Checkpoint, Note, NoteError, Verifier, parse_checkpoint


class ConsistencyRefused(Exception):
    """NEW is not shown to extend OLD; the message says why."""


@dataclass(frozen=True)
class _Side:
    what: str
    note: Note
    checkpoint: Checkpoint
    log_vkey: str | None
    later: _Side | None = None
    """A bundle's later head (``consistency.note``), with ``proof`` to it from this head."""
    proof: bytes | None = None


def _side(what: str, data: bytes) -> _Side:
    log_vkey = None
    later = proof = None
    if data[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                names = set(zf.namelist())
                data = zf.read("checkpoint.note")
                log_vkey = str(json.loads(zf.read("witnesses.json"))["log_vkey"])
                if "consistency.note" in names:
                    later = _note(f"{what}'s consistency.note", zf.read("consistency.note"))
                    proof = zf.read("consistency.json")
        except (KeyError, ValueError, TypeError, zipfile.BadZipFile) as exc:
            raise ConsistencyRefused(
                f"{what}: not a bundle with a checkpoint note ({exc})"
            ) from None
    note, checkpoint = _note(what, data)
    side_later = _Side(f"{what}'s later head", *later, log_vkey) if later else None
    return _Side(what, note, checkpoint, log_vkey, side_later, proof)


def _note(what: str, data: bytes) -> tuple[Note, Checkpoint]:
    try:
        note = Note.parse(data)
        return note, parse_checkpoint(note.text)
    except NoteError as exc:
        raise ConsistencyRefused(f"{what}: {exc.detail}") from None


def check_consistency(
    old: bytes, new: bytes, proof: bytes | None, *, vkeys: Sequence[str] = ()
) -> list[str]:
    """What was checked, line by line; raises :class:`ConsistencyRefused` otherwise."""
    first, second = _side("OLD", old), _side("NEW", new)
    said = []
    if proof is None:
        # A bundle's own proof, when it joins the two (see the module docstring).
        size = first.checkpoint.size
        if second.later is not None and _first_of(second.proof) == size:
            said.append(f"NEW carries a later head and the proof to it from size {size}")
            second, proof = second.later, second.proof
        elif first.later is not None and first.later.checkpoint.size == second.checkpoint.size:
            said.append("OLD carries a later head of NEW's size and the proof to it")
            proof = first.proof
            # The proof leads to OLD's later head; it must be NEW's head itself (the proof is
            # then checked below against NEW's root).
            if first.later.note.text != second.note.text:
                raise ConsistencyRefused(
                    "OLD's later head is not NEW's head: a different root at the same size"
                )
    for side in (first, second):
        keys = list(vkeys) or ([side.log_vkey] if side.log_vkey else [])
        if not keys:
            raise ConsistencyRefused(
                f"{side.what}: a bare note needs --vkey (the archive's, `sae journal vkey`)"
            )
        try:
            signers = side.note.verify([Verifier.parse(k) for k in keys])
        except NoteError as exc:
            raise ConsistencyRefused(f"{side.what}: {exc.detail}") from None
        said.append(
            f"{side.what}: {side.checkpoint.origin} at size {side.checkpoint.size}, signed by "
            + ", ".join(v.name for v in signers)
        )
    a, b = first.checkpoint, second.checkpoint
    if a.origin != b.origin:
        raise ConsistencyRefused(f"different logs: {a.origin!r} and {b.origin!r}")
    if a.size > b.size:
        raise ConsistencyRefused(f"OLD ({a.size} leaves) is larger than NEW ({b.size})")
    hashes: list[bytes] = []
    if a.size != b.size:
        if proof is None:
            raise ConsistencyRefused(
                f"--proof FILE needed: GET /api/v1/journal/consistency?first={a.size}"
                f"&second={b.size}"
            )
        try:
            doc = json.loads(proof)
            if (doc["first"], doc["second"]) != (a.size, b.size):
                raise ConsistencyRefused(
                    f"the proof is between sizes {doc['first']} and {doc['second']}, not "
                    f"{a.size} and {b.size}"
                )
            hashes = [bytes.fromhex(h) for h in doc["proof"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise ConsistencyRefused(f"unreadable proof: {exc}") from None
    if a.size == 0:
        said.append("OLD is the empty tree: every tree extends it")
        return said
    if not merkle.verify_consistency(a.size, b.size, a.root_hash, b.root_hash, hashes):
        raise ConsistencyRefused(
            f"the proof does not lead from OLD's root to NEW's: the log of size {b.size} does "
            f"not extend the one of size {a.size} (a fork, or a rewritten history)"
        )
    said.append(f"NEW ({b.size} leaves) extends OLD ({a.size} leaves): RFC 9162 proof checked")
    return said


def _first_of(proof: bytes | None) -> int | None:
    """The ``first`` size of a consistency.json (None when unreadable: not used then)."""
    try:
        first = json.loads(proof or b"")["first"]
    except (ValueError, KeyError, TypeError):
        return None
    return first if isinstance(first, int) else None
