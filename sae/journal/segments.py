"""The journal in immutable segments: what every offer holds of the journal (pure functions).

For each sealed tree head H, whose previous head is P (``P.tree_size`` = 0 before the first),
one *segment* holds the leaves ``[P.tree_size, H.tree_size)`` and H itself: its checkpoint, SAE's
signature and the TSA's token. Segments are written to every offer of the strategy under
:func:`segment_key`, so that the offers alone carry a verifiable history of the journal.

Format (``sae-journal-segment/1``), UTF-8 JSON lines, each ending in ``\\n``:

- line 1, the header: compact JSON, sorted keys — ``format``, ``origin``, ``first_leaf``,
  ``tree_size``, ``root_hash`` (hex), ``timestamp`` (ISO 8601 UTC, ``Z``), ``checkpoint``,
  ``signature``, ``tsr`` (base64 of the exact bytes), ``public_key_pem``, ``tsa_chain_pem``
  (text) and ``tsa_time`` (ISO 8601 UTC, ``Z``);
- lines 2…: each leaf's bytes verbatim, in leaf order (a leaf is compact JSON: no raw newline).

The bytes depend on the head and its leaves only — no publication time — so the same head
always gives the same bytes and publishing again is idempotent. An auditor recomputes a leaf's
hash with ``(printf '\\0'; printf %s "$LINE") | openssl dgst -sha256``.

:class:`SegmentVerifier` folds segments in key order keeping only the Merkle peaks (memory
O(log n) whatever the journal's size) and names, for every problem, the segment it is in.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from sae.journal import merkle
from sae.journal.blocks import head_fault
from sae.journal.checkpoint import Checkpoint, CheckpointFormatError, format_time
from sae.journal.models import TreeHead

FORMAT = "sae-journal-segment/1"
#: Where segments live on an offer, beside ``objects/``.
PREFIX = "journal/segments/"
#: The metadata kind of a segment copy (``metadata_copies.kind``).
KIND = "journal_segment"


class SegmentFormatError(ValueError):
    """Bytes that are not a well-formed segment."""


@dataclass(frozen=True, slots=True)
class SegmentHead:
    """A sealed head as a segment carries it (the columns of ``tree_heads`` that matter)."""

    origin: str
    tree_size: int
    root_hash: bytes
    timestamp: dt.datetime
    checkpoint: bytes
    signature: bytes
    public_key_pem: bytes
    tsr: bytes
    tsa_chain_pem: bytes
    tsa_time: dt.datetime

    @classmethod
    def of(cls, head: TreeHead) -> SegmentHead:
        """The fields of a ``tree_heads`` row."""
        return cls(
            origin=head.origin,
            tree_size=head.tree_size,
            root_hash=head.root_hash,
            timestamp=head.timestamp,
            checkpoint=head.checkpoint,
            signature=head.signature,
            public_key_pem=head.public_key_pem,
            tsr=head.tsr,
            tsa_chain_pem=head.tsa_chain_pem,
            tsa_time=head.tsa_time,
        )


@dataclass(frozen=True, slots=True)
class SegmentHeader:
    """Line 1 of a segment: which leaves it holds and the head that seals them."""

    first_leaf: int
    head: SegmentHead

    @property
    def key(self) -> str:
        """The key this segment must be stored under."""
        return segment_key(self.first_leaf, self.head.tree_size)


def segment_key(first_leaf: int, tree_size: int) -> str:
    """``journal/segments/{first_leaf:016d}-{tree_size:016d}.jsonl``: sorted by name is sorted
    by leaf, and a missing range shows in a listing."""
    return f"{PREFIX}{first_leaf:016d}-{tree_size:016d}.jsonl"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def header_line(first_leaf: int, head: SegmentHead) -> bytes:
    """The header line of the segment of ``head`` starting at ``first_leaf`` (with its ``\\n``)."""
    if not 0 <= first_leaf < head.tree_size:
        raise ValueError(f"a segment holds at least one leaf: [{first_leaf}, {head.tree_size})")
    doc = {
        "format": FORMAT,
        "origin": head.origin,
        "first_leaf": first_leaf,
        "tree_size": head.tree_size,
        "root_hash": head.root_hash.hex(),
        "timestamp": format_time(head.timestamp),
        "checkpoint": _b64(head.checkpoint),
        "signature": _b64(head.signature),
        "public_key_pem": head.public_key_pem.decode("ascii"),
        "tsr": _b64(head.tsr),
        "tsa_chain_pem": head.tsa_chain_pem.decode("ascii"),
        "tsa_time": format_time(head.tsa_time),
    }
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode() + b"\n"


def write_segment(
    out: BinaryIO, first_leaf: int, head: SegmentHead, leaves: Iterable[bytes]
) -> int:
    """Write the segment to ``out`` as the leaves come (streaming); return how many leaves.

    Raises :class:`ValueError` when a leaf holds a raw newline (it would split into two lines:
    leaves are compact JSON, which never does) or when the count differs from the head's.
    """
    out.write(header_line(first_leaf, head))
    return write_leaves(out, first_leaf, head.tree_size, leaves, "segment")


def write_leaves(
    out: BinaryIO, first_leaf: int, end: int, leaves: Iterable[bytes], what: str
) -> int:
    """Write leaves ``[first_leaf, end)`` as lines (a segment's, a tail's); how many.

    Raises :class:`ValueError` when a leaf is empty or holds a raw line break (it would split
    into two lines: leaves are compact JSON, which never does) or when the count is not
    ``end - first_leaf``.
    """
    count = 0
    for leaf in leaves:
        if not leaf or b"\n" in leaf or b"\r" in leaf:
            raise ValueError(f"leaf {first_leaf + count} is empty or holds a raw line break")
        out.write(leaf)
        out.write(b"\n")
        count += 1
    if count != end - first_leaf:
        raise ValueError(f"{count} leaves given for the {what} [{first_leaf}, {end})")
    return count


def build_segment(first_leaf: int, head: SegmentHead, leaves: Iterable[bytes]) -> bytes:
    """The segment's bytes, in memory (see :func:`write_segment` to stream them)."""
    import io

    buffer = io.BytesIO()
    write_segment(buffer, first_leaf, head, leaves)
    return buffer.getvalue()


# --------------------------------------------------------------------------- reading


def iter_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The ``\\n``-terminated lines of a stream of chunks, without their ``\\n``.

    A last line without its ``\\n`` is refused: a segment cut short must not pass as whole.
    """
    pending = b""
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        yield from lines
    if pending:
        raise SegmentFormatError("the last line is not terminated (truncated segment?)")


def _text(doc: dict[str, object], name: str) -> str:
    value = doc.get(name)
    if not isinstance(value, str):
        raise SegmentFormatError(f"header field {name!r} must be a string")
    return value


def _count(doc: dict[str, object], name: str) -> int:
    value = doc.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise SegmentFormatError(f"header field {name!r} must be a non-negative integer")
    return value


def _time(doc: dict[str, object], name: str) -> dt.datetime:
    text = _text(doc, name)
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise SegmentFormatError(f"header field {name!r} is not an ISO 8601 time") from None
    if value.tzinfo is None or format_time(value) != text:
        raise SegmentFormatError(f"header field {name!r} must be UTC ending in Z")
    return value


def _bytes(doc: dict[str, object], name: str) -> bytes:
    try:
        return base64.b64decode(_text(doc, name), validate=True)
    except ValueError:
        raise SegmentFormatError(f"header field {name!r} is not base64") from None


def header_document(line: bytes, format_: str) -> dict[str, Any]:
    """The JSON object of a header line of format ``format_`` (a segment's, a tail's)."""
    try:
        doc = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SegmentFormatError(f"header is not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != format_:
        raise SegmentFormatError(f"not a {format_} header")
    return doc


def parse_header(line: bytes) -> SegmentHeader:
    """Parse and check a header line (without its ``\\n``); it must be in canonical form."""
    doc = header_document(line, FORMAT)
    try:
        root_hash = bytes.fromhex(_text(doc, "root_hash"))
    except ValueError:
        raise SegmentFormatError("header field 'root_hash' is not hex") from None
    head = SegmentHead(
        origin=_text(doc, "origin"),
        tree_size=_count(doc, "tree_size"),
        root_hash=root_hash,
        timestamp=_time(doc, "timestamp"),
        checkpoint=_bytes(doc, "checkpoint"),
        signature=_bytes(doc, "signature"),
        public_key_pem=_text(doc, "public_key_pem").encode("ascii", "replace"),
        tsr=_bytes(doc, "tsr"),
        tsa_chain_pem=_text(doc, "tsa_chain_pem").encode("ascii", "replace"),
        tsa_time=_time(doc, "tsa_time"),
    )
    first = _count(doc, "first_leaf")
    try:
        canonical = header_line(first, head)
    except ValueError as exc:
        raise SegmentFormatError(str(exc)) from None
    # Extra or re-spelled fields would be bytes the head does not vouch for: refused.
    if canonical != line + b"\n":
        raise SegmentFormatError("header is not in canonical form")
    return SegmentHeader(first, head)


def read_segment(chunks: Iterable[bytes]) -> tuple[SegmentHeader, Iterator[bytes]]:
    """The header and an iterator over the leaves of a segment read as a stream of chunks."""
    lines = iter_lines(chunks)
    first = next(lines, None)
    if first is None:
        raise SegmentFormatError("empty segment")
    return parse_header(first), lines


# --------------------------------------------------------------------------- verifying


def segment_head_fault(head: SegmentHead) -> str | None:
    """What is wrong with a segment's head (its checkpoint against the header's fields, SAE's
    signature, the time-stamp token, the checkpoint's time against the header's), or None."""
    fault = head_fault(
        head.tree_size,
        head.root_hash,
        head.origin,
        head.checkpoint,
        head.signature,
        head.public_key_pem,
        head.tsr,
        head.tsa_chain_pem,
    )
    if fault is None:
        try:
            stamped = Checkpoint.from_bytes(head.checkpoint).timestamp
        except CheckpointFormatError:  # pragma: no cover - head_fault said it parses
            stamped = None
        if stamped != head.timestamp:
            fault = f"head {head.tree_size}: checkpoint time differs from the header's"
    return fault


@dataclass(frozen=True, slots=True)
class SegmentProblem:
    """What is wrong, and in which segment (``kind``: format, key, gap, overlap, count, index,
    root, head)."""

    key: str
    kind: str
    message: str


@dataclass
class SegmentVerifier:
    """Folds segments in key order and checks each against the tree of those before it.

    Memory: the Merkle peaks of the leaves folded so far (O(log n)) and one leaf at a time.
    After a gap, an overlap or a wrong root, roots can no longer be checked (the tree they
    belong to is unknown) and are not: each segment's own signature, token, count and indices
    still are, so every problem found is named, the first one first.
    """

    tree_size: int = 0
    root_hash: bytes = merkle.EMPTY_ROOT
    segments: int = 0
    problems: list[SegmentProblem] = field(default_factory=list)
    _peaks: list[bytes] = field(default_factory=list)
    _previous_key: str | None = None
    _roots_known: bool = True

    @property
    def ok(self) -> bool:
        """No problem found so far."""
        return not self.problems

    def _problem(self, key: str, kind: str, message: str) -> None:
        self.problems.append(SegmentProblem(key, kind, message))

    def fold(self, key: str, chunks: Iterable[bytes]) -> None:
        """Check the segment stored under ``key`` (its bytes as a stream of chunks)."""
        self.segments += 1
        try:
            header, leaves = read_segment(chunks)
            self._fold(key, header, leaves)
        except SegmentFormatError as exc:
            self._problem(key, "format", str(exc))
            self._roots_known = False

    def _fold(self, key: str, header: SegmentHeader, leaves: Iterator[bytes]) -> None:
        head = header.head
        if header.key != key:
            self._problem(key, "key", f"its header says {header.key}")
        self._check_continuity(key, header.first_leaf)
        peaks, size = self._peaks, header.first_leaf
        for leaf in leaves:
            self._check_index(key, leaf, size)
            if self._roots_known:  # else the peaks of the leaves before are unknown
                _, peaks = merkle.append_leaf(size, peaks, merkle.leaf_hash(leaf))
            size += 1
        if size != head.tree_size:
            self._problem(
                key,
                "count",
                f"{size - header.first_leaf} leaves for [{header.first_leaf}, {head.tree_size})",
            )
            self._roots_known = False
        elif self._roots_known and merkle.root_from_peaks(peaks) != head.root_hash:
            self._problem(key, "root", f"the leaves do not give the root of head {size}")
            self._roots_known = False
        self._check_head(key, head)
        self._peaks, self.tree_size, self._previous_key = peaks, size, key
        self.root_hash = head.root_hash

    def _check_continuity(self, key: str, first_leaf: int) -> None:
        if first_leaf == self.tree_size:
            return
        before = self._previous_key or "the start of the journal"
        if first_leaf > self.tree_size:
            message = f"leaves [{self.tree_size}, {first_leaf}) missing between {before} and {key}"
            self._problem(key, "gap", message)
        else:
            message = f"starts at leaf {first_leaf}, inside {before} (ends at {self.tree_size})"
            self._problem(key, "overlap", message)
        self._roots_known = False

    def _check_index(self, key: str, leaf: bytes, expected: int) -> None:
        try:
            doc = json.loads(leaf)
        except (ValueError, UnicodeDecodeError):
            self._problem(key, "index", f"leaf {expected} is not JSON")
            return
        index = doc.get("index") if isinstance(doc, dict) else None
        if index != expected:
            self._problem(key, "index", f"leaf {expected} says index {index!r}")

    def _check_head(self, key: str, head: SegmentHead) -> None:
        fault = segment_head_fault(head)
        if fault is not None:
            self._problem(key, "head", fault)


def verify_segments(segments: Iterable[tuple[str, Iterable[bytes]]]) -> SegmentVerifier:
    """Fold ``(key, chunks)`` pairs, in the order given (key order), into one verdict."""
    verifier = SegmentVerifier()
    for key, chunks in segments:
        verifier.fold(key, chunks)
    return verifier
