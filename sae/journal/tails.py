"""The journal's tail: a deposit's leaves on every offer before its 201.

Segments (:mod:`sae.journal.segments`) put the journal on the offers up to the last *sealed*
head. Heads are sealed at most once per ``SAE_SEAL_SPACING_SECONDS``, each with a round trip to
the time-stamping authority (a qualified TSA may bill each token), and their segments published
at most every few seconds: a deposit cannot wait for them, nor seal a head of its own. Until
they come, a transfer whose catalogue was lost would come back from its description alone,
without its original leaves — a gap in the evidence of something SAE had acknowledged.

So, after a transfer's commit and before its 201, the leaves committed since what the offers
already hold are written to every offer of the strategy as a **tail**: the same lines as a
segment, headed by a checkpoint over ``[0, end)`` *signed* by SAE's journal key but not
time-stamped. A rebuild (:mod:`sae.recovery.rebuild`) reads the segments, then the tails that
continue them, checking each tail's root against its signed checkpoint and the key against this
SAE's; the head it seals at the end is the first time-stamp over those leaves. Once a segment
covers a tail, the tail is redundant (it stays: it is on WORM storage, and it is evidence).

Format ``sae-journal-tail/1``, UTF-8 JSON lines as a segment's: line 1 the header (compact JSON,
sorted keys: ``format``, ``origin``, ``first_leaf``, ``tree_size``, ``root_hash`` hex,
``timestamp``, ``checkpoint`` and ``signature`` base64, ``public_key_pem``), then each leaf's
bytes verbatim. Key: ``journal/tails/{first_leaf:016d}-{tree_size:016d}.jsonl``.

- **Group-committed**: one writer per process at a time; deposits that finish while a tail is
  being written are covered by the next one, written once for all of them.
- **Contiguous**: a process's tails start where its previous one ended, or at the last segment
  every offer of the strategy holds if that is further: what the offers hold of the journal has
  no gap. Tails of two processes may overlap; they agree (same leaves, same key).
- **One writer at a time among the processes** of a data directory (``SAE_WORKERS`` > 1): they
  take turns through a lock on ``journal-tails.mark`` in the data directory, which also says
  how far the tails of any of them reach (size and Merkle peaks; a hint kept in place, never
  synced: lost, each process starts from its own). A process whose leaves the other's tail
  already holds writes none, and its next tail starts where the other's ended: without it,
  each process wrote its own tail over the other's leaves too (the 500 one-record SIPs with two
  processes cost 13-39 % more server CPU than before issue #17; docs/benchmarks.md, session 11).
  The mark names the journal (its first leaf's hash) and the offers: another journal (a new
  database) or another set of offers ignores it.
- **Not in ``metadata_copies``**: recording each would put one more commit on every deposit.
  ``sae fsck`` knows the prefix; the segments that follow are recorded as always.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from sae.config import Settings
from sae.db import utcnow
from sae.errors import SAEError
from sae.journal import merkle
from sae.journal.checkpoint import (
    Checkpoint,
    CheckpointFormatError,
    SigningKey,
    format_time,
    verify_signature,
)
from sae.journal.keyhistory import KEY_ROTATED, fingerprint
from sae.journal.keys import load_journal_keys, signing_key_for
from sae.journal.models import Event
from sae.journal.segments import KIND as SEGMENT_KIND
from sae.journal.segments import SegmentFormatError, header_document, iter_lines, write_leaves
from sae.journal.service import AppendedLeaf, peaks_at
from sae.storage.base import StorageOffer
from sae.storage.errors import ObjectExists, ReplicationFailed, StorageError
from sae.storage.models import MetadataCopy
from sae.storage.service import store_copies

FORMAT = "sae-journal-tail/1"
#: Where tails live on an offer, beside ``journal/segments/``.
PREFIX = "journal/tails/"
#: A tail bigger than this is spooled to disk while written (the first after a long outage).
SPOOL_IN_MEMORY = 8 * 1024 * 1024
#: Leaves read from the database at a time, for those the group commit did not hand over.
READ_BATCH = 8192
_KEY = re.compile(r"journal/tails/(\d{16})-(\d{16})\.jsonl")


def tail_key(first_leaf: int, tree_size: int) -> str:
    """``journal/tails/{first_leaf:016d}-{tree_size:016d}.jsonl`` (a segment's naming)."""
    return f"{PREFIX}{first_leaf:016d}-{tree_size:016d}.jsonl"


def parse_tail_key(key: str) -> tuple[int, int] | None:
    """``(first_leaf, tree_size)`` of a tail's key; None for any other key."""
    match = _KEY.fullmatch(key)
    if match is None:
        return None
    return int(match[1]), int(match[2])


@dataclass(frozen=True, slots=True)
class TailHeader:
    """Line 1 of a tail: its leaves and the signed checkpoint over ``[0, tree_size)``."""

    origin: str
    first_leaf: int
    tree_size: int
    root_hash: bytes
    checkpoint: bytes
    signature: bytes
    public_key_pem: bytes

    @property
    def key(self) -> str:
        return tail_key(self.first_leaf, self.tree_size)

    def line(self) -> bytes:
        """The header line (with its ``\\n``)."""
        if not 0 <= self.first_leaf < self.tree_size:
            raise ValueError(
                f"a tail holds at least one leaf: [{self.first_leaf}, {self.tree_size})"
            )
        try:
            stamped = format_time(Checkpoint.from_bytes(self.checkpoint).timestamp)
        except CheckpointFormatError as exc:
            raise ValueError(f"malformed checkpoint ({exc})") from None
        doc = {
            "format": FORMAT,
            "origin": self.origin,
            "first_leaf": self.first_leaf,
            "tree_size": self.tree_size,
            "root_hash": self.root_hash.hex(),
            "timestamp": stamped,
            "checkpoint": base64.b64encode(self.checkpoint).decode("ascii"),
            "signature": base64.b64encode(self.signature).decode("ascii"),
            "public_key_pem": self.public_key_pem.decode("ascii"),
        }
        text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return text.encode() + b"\n"

    def fault(self) -> str | None:
        """What is wrong with the checkpoint (its fields against the header's, the signature
        with the header's key), or None. The caller pins the key and checks the root."""
        try:
            cp = Checkpoint.from_bytes(self.checkpoint)
        except CheckpointFormatError as exc:
            return f"tail {self.tree_size}: malformed checkpoint ({exc})"
        if (cp.tree_size, cp.root_hash, cp.origin) != (self.tree_size, self.root_hash, self.origin):
            return f"tail {self.tree_size}: checkpoint does not match its header"
        if not verify_signature(self.public_key_pem, self.checkpoint, self.signature):
            return f"tail {self.tree_size}: SAE's signature does not verify"
        return None


def write_tail(out: BinaryIO, header: TailHeader, leaves: Iterable[bytes]) -> int:
    """Write the tail to ``out`` as the leaves come; how many leaves (checked against the
    header, as :func:`sae.journal.segments.write_segment` does)."""
    out.write(header.line())
    return write_leaves(out, header.first_leaf, header.tree_size, leaves, "tail")


def parse_header(line: bytes) -> TailHeader:
    """Parse and check a tail's header line (without its ``\\n``), canonical form only."""
    doc = header_document(line, FORMAT)
    try:
        header = TailHeader(
            origin=str(doc["origin"]),
            first_leaf=int(doc["first_leaf"]),
            tree_size=int(doc["tree_size"]),
            root_hash=bytes.fromhex(str(doc["root_hash"])),
            checkpoint=base64.b64decode(str(doc["checkpoint"]), validate=True),
            signature=base64.b64decode(str(doc["signature"]), validate=True),
            public_key_pem=str(doc["public_key_pem"]).encode("ascii", "replace"),
        )
        canonical = header.line()
    except (KeyError, TypeError, ValueError) as exc:
        raise SegmentFormatError(f"header field: {exc}") from None
    if canonical != line + b"\n":
        raise SegmentFormatError("header is not in canonical form")
    return header


def read_tail(chunks: Iterable[bytes]) -> tuple[TailHeader, Iterator[bytes]]:
    """The header and an iterator over the leaves of a tail read as a stream of chunks."""
    lines = iter_lines(chunks)
    first = next(lines, None)
    if first is None:
        raise SegmentFormatError("empty tail")
    return parse_header(first), lines


# --------------------------------------------------------------------------- writing


class TailNotWritten(Exception):
    """The tail could not be put on every offer (the offer's error is the cause)."""


#: The file of the data directory through which the processes of one instance share their tails.
MARK_NAME = "journal-tails.mark"


class SharedMark:
    """The turn to write a tail, and how far the tails reach, shared by the processes of a data
    directory (see the module's docstring). Read and written only during :meth:`turn`."""

    def __init__(self, path: Path, offers: Sequence[str]) -> None:
        self.path = path
        self.offers = sorted(offers)
        self._fd: int | None = None
        #: The journal's first leaf hash (hex): names the journal the mark speaks of.
        self.journal: str | None = None

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        """Hold the turn (an exclusive ``flock``; another process waits for its tail)."""
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def read(self) -> tuple[int, list[bytes]] | None:
        """(size, peaks) the tails of this journal reach on these offers; None when unknown."""
        assert self._fd is not None, "read during turn()"
        if self.journal is None:
            return None
        raw = os.pread(self._fd, 1 << 16, 0)
        try:
            doc = json.loads(raw) if raw else None
            if (
                not isinstance(doc, dict)
                or doc.get("journal") != self.journal
                or doc.get("offers") != self.offers
            ):
                return None
            return int(doc["size"]), [bytes.fromhex(p) for p in doc["peaks"]]
        except (ValueError, KeyError, TypeError):
            return None  # a hint: a torn or foreign file is no hint

    def write(self, size: int, peaks: Sequence[bytes]) -> None:
        """Say that leaves ``[0, size)`` are on every offer (peaks of that tree)."""
        assert self._fd is not None, "write during turn()"
        if self.journal is None:
            return
        doc = {
            "journal": self.journal,
            "offers": self.offers,
            "size": size,
            "peaks": [p.hex() for p in peaks],
        }
        data = json.dumps(doc, sort_keys=True).encode()
        os.pwrite(self._fd, data, 0)
        os.ftruncate(self._fd, len(data))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class TailWriter:
    """Puts the committed leaves on every offer of the strategy, one tail at a time per
    process, for every deposit waiting meanwhile (see the module's docstring).

    In the steady state a tail costs no database read: the group commit hands over the leaves
    it has just committed (:meth:`note`), and the writer keeps the Merkle peaks of what its
    tails covered, so the next root is those peaks and the new leaves' hashes. Leaves it was
    not handed (other acts' events, another process's deposits) are read from the database;
    where the tails start is read once, and again after a long pause.
    """

    #: A writer this many leaves behind looks again at what the segments hold: after a long
    #: pause they hold most of what it would otherwise write again.
    REANCHOR = 10_000

    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: Settings,
        offers: Sequence[StorageOffer],
        *,
        before_write: Callable[[], None] | None = None,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.offers = list(offers)
        #: Called before each tail, outside the lock (the group commit's ``settle``: the group
        #: being committed now is covered by the same tail).
        self.before_write = before_write
        self._cond = threading.Condition()
        self._writing = False
        #: Leaves ``[0, covered)`` are on every offer (None: not known yet, before a first tail).
        self._covered: int | None = None
        #: The Merkle peaks of the tree of ``covered`` leaves.
        self._peaks: list[bytes] = []
        #: Committed leaves handed over by the group commit, not yet in a tail: index -> (leaf,
        #: leaf hash).
        self._known: dict[int, tuple[bytes, bytes]] = {}
        #: The furthest leaf a caller waits for.
        self._wanted = 0
        #: Tails written by this process (for tests and logs).
        self.written = 0
        #: Shared with the other processes of the data directory, when there are several.
        self.mark = (
            SharedMark(settings.data_dir / MARK_NAME, [offer.name for offer in self.offers])
            if settings.workers > 1
            else None
        )
        #: The journal's key rotations (leaf index, new fingerprint, previous fingerprint),
        #: read where the tails start and learnt from the rotation leaves the tails hold
        #: (``sae journal rotate-key`` runs in another process): a tail's checkpoint is signed
        #: by the key in force at its size, as a head's is.
        self._rotations: dict[int, tuple[str, str | None]] = {}

    def note(self, leaves: Iterable[AppendedLeaf]) -> None:
        """Committed leaves (the group commit, after its commit): the next tail needs not read
        them back."""
        with self._cond:
            covered = self._covered or 0
            for leaf in leaves:
                if leaf.leaf_index >= covered:
                    self._known[leaf.leaf_index] = (leaf.leaf, leaf.leaf_hash)

    def cover(self, end: int) -> None:
        """Return once leaves ``[0, end)`` (committed) are on every offer; raises
        :class:`TailNotWritten` when an offer refused the tail that would have covered them."""
        while True:
            with self._cond:
                self._wanted = max(self._wanted, end)
                while self._writing and (self._covered or 0) < end:
                    self._cond.wait()
                if (self._covered or 0) >= end:
                    return
                self._writing = True
            done: tuple[int, list[bytes]] | None = None
            try:
                if self.before_write is not None:
                    self.before_write()
                with self._turn():
                    with self._cond:
                        covered, peaks = self._covered, self._peaks
                        known = dict(self._known)
                        # Whatever was committed meanwhile goes in too (every leaf below a
                        # committed one is committed: appends are serialised to their commit).
                        wanted = max(self._wanted, max(known, default=-1) + 1)
                    shared = self.mark.read() if self.mark is not None else None
                    if shared is not None and (covered is None or shared[0] > covered):
                        covered, peaks = shared  # another process's tails reach further
                    done = self._write(covered, peaks, wanted, known)
                    if self.mark is not None and (shared is None or done[0] > shared[0]):
                        self.mark.write(*done)
            finally:
                with self._cond:
                    if done is not None:
                        self._covered, self._peaks = done
                        for index in [i for i in self._known if i < done[0]]:
                            del self._known[index]
                    self._writing = False
                    self._cond.notify_all()

    @contextlib.contextmanager
    def _turn(self) -> Iterator[None]:
        """This process's turn among those sharing the data directory (none alone)."""
        if self.mark is None:
            yield
            return
        if self.mark.journal is None:
            with self.sessions() as session:
                first = session.scalar(select(Event.leaf_hash).where(Event.leaf_index == 0))
            self.mark.journal = None if first is None else bytes(first).hex()
        with self.mark.turn():
            yield

    def _write(
        self,
        covered: int | None,
        peaks: list[bytes],
        end: int,
        known: dict[int, tuple[bytes, bytes]],
    ) -> tuple[int, list[bytes]]:
        """Write one tail of leaves ``[covered, end)``; the new coverage and its peaks."""
        if covered is None or end - covered > self.REANCHOR:
            with self.sessions() as session:
                anchor = _segments_everywhere(session, self.offers)
                if covered is None or anchor > covered:
                    covered, peaks = anchor, peaks_at(session, anchor)
                self._rotations.update(_rotations(session))
        if covered >= end:
            return covered, peaks
        keys = load_journal_keys(self.settings)
        peaks = list(peaks)

        def hashed() -> Iterator[bytes]:
            """The leaves, each folded into the peaks as it goes by."""
            nonlocal peaks
            pairs = _leaves(self.sessions, covered, end, known)
            for index, (leaf, leaf_hash) in enumerate(pairs, start=covered):
                _, peaks = merkle.append_leaf(index, peaks, leaf_hash)
                if _ROTATION_MARK in leaf:  # a substring test per leaf; JSON only if it may be
                    self._learn_rotation(index, leaf)
                yield leaf

        with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool:
            source = cast(BinaryIO, spool)
            # The header comes first and carries the root, known once every leaf is hashed:
            # the leaves go to a second spool meanwhile (in memory in the steady state).
            with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as body:
                try:
                    write_leaves(cast(BinaryIO, body), covered, end, hashed(), "tail")
                except ValueError as exc:
                    raise TailNotWritten(str(exc)) from None
                root = merkle.root_from_peaks(peaks)
                checkpoint = Checkpoint(keys.origin, end, root, utcnow()).to_bytes()
                signer = self._signer(end, keys.signer)
                header = TailHeader(
                    origin=keys.origin,
                    first_leaf=covered,
                    tree_size=end,
                    root_hash=root,
                    checkpoint=checkpoint,
                    signature=signer.sign(checkpoint),
                    public_key_pem=signer.public_pem,
                )
                line = header.line()
                digest = hashlib.sha512(line)
                source.write(line)
                body.seek(0)
                for chunk in iter(lambda: body.read(1024 * 1024), b""):
                    digest.update(chunk)
                    source.write(chunk)
            source.seek(0)
            try:
                store_copies(
                    self.offers,
                    header.key,
                    source,
                    retain_until=None,
                    expected_sha512=digest.hexdigest(),
                )
            except ReplicationFailed as exc:
                if not (isinstance(exc.__cause__, ObjectExists) and self._same_elsewhere(header)):
                    raise TailNotWritten(exc.detail) from exc
        self.written += 1
        return end, peaks

    def _learn_rotation(self, index: int, leaf: bytes) -> None:
        try:
            doc = json.loads(leaf)
        except ValueError:
            return
        if not isinstance(doc, dict) or doc.get("type") != KEY_ROTATED:
            return  # the bytes were in a payload, not the leaf's type
        data = doc.get("data")
        if isinstance(data, dict):
            new, old = data.get("fingerprint"), data.get("old_fingerprint")
            if isinstance(new, str):
                self._rotations[index] = (new, old if isinstance(old, str) else None)

    def _signer(self, size: int, current: SigningKey) -> SigningKey:
        """The key in force for a checkpoint of ``size`` leaves: the last rotation's before it
        (a rotation leaf at index *i* hands the heads of size > *i* to its new key), else the
        key the first rotation after it replaced, else the key file's. Without this, a tail
        written after a rotation by a process still holding the old key was refused by every
        rebuild (key history), and one written just before the swap of the key files too."""
        before = [index for index in self._rotations if index < size]
        if before:
            fpr: str | None = self._rotations[max(before)][0]
        else:
            after = [index for index in self._rotations if index >= size]
            fpr = self._rotations[min(after)][1] if after else None
        if fpr is None or fingerprint(current.public_pem) == fpr:
            return current
        try:
            return signing_key_for(self.settings, fpr)
        except SAEError as exc:
            raise TailNotWritten(exc.detail) from None

    def _same_elsewhere(self, header: TailHeader) -> bool:
        """Another process wrote a tail over the same leaves first (its bytes differ by the
        checkpoint's time): the leaves are there if every offer's copy gives our root."""
        for offer in self.offers:
            try:
                found, _ = read_tail(offer.get(header.key))
            except (SegmentFormatError, StorageError):
                return False
            if (found.tree_size, found.root_hash) != (header.tree_size, header.root_hash):
                return False
        return True


#: Every ``journal.key_rotated`` leaf holds these bytes (canonical JSON of its type).
_ROTATION_MARK = b'"type":"journal.key_rotated"'


def _rotations(session: Session) -> dict[int, tuple[str, str | None]]:
    """The journal's key rotations: leaf index -> (new fingerprint, previous fingerprint)."""
    found: dict[int, tuple[str, str | None]] = {}
    rows = session.execute(
        select(Event.leaf_index, Event.payload).where(Event.type == KEY_ROTATED)
    ).all()
    for index, payload in rows:
        new, old = payload.get("fingerprint"), payload.get("old_fingerprint")
        if isinstance(new, str):
            found[int(index)] = (new, old if isinstance(old, str) else None)
    return found


def _leaves(
    sessions: sessionmaker[Session],
    first: int,
    end: int,
    known: dict[int, tuple[bytes, bytes]],
) -> Iterator[tuple[bytes, bytes]]:
    """Leaves ``[first, end)`` as (leaf, leaf hash): those handed over, the others read from
    the database :data:`READ_BATCH` at a time (a first tail after a long pause may be big)."""
    index = first
    while index < end:
        pair = known.get(index)
        if pair is not None:
            yield pair
            index += 1
            continue
        stop = min(end, index + READ_BATCH)
        with sessions() as session:
            rows = session.execute(
                select(Event.leaf_index, Event.leaf, Event.leaf_hash)
                .where(Event.leaf_index >= index, Event.leaf_index < stop)
                .order_by(Event.leaf_index)
            ).all()
        for leaf_index, leaf, leaf_hash in rows:
            if leaf_index != index:
                raise TailNotWritten(f"leaf {index} is not in the events table")
            yield bytes(leaf), bytes(leaf_hash)
            index += 1
        if index < stop:
            raise TailNotWritten(f"leaf {index} is not in the events table")


def _segments_everywhere(session: Session, offers: Sequence[StorageOffer]) -> int:
    """The journal size every offer holds in segments (0 when that is not known).

    Each offer's furthest recorded segment; the furthest of those is taken when every offer
    holds that segment's key — after a rebuild from one offer, only that offer's segments are
    recorded, and the others' would otherwise send every tail back to leaf 0."""
    names = [offer.name for offer in offers]
    rows = session.execute(
        select(MetadataCopy.offer, MetadataCopy.tree_size, MetadataCopy.key)
        .where(
            MetadataCopy.kind == SEGMENT_KIND,
            MetadataCopy.offer.in_(names),
            MetadataCopy.tree_size
            == select(func.max(MetadataCopy.tree_size))
            .where(MetadataCopy.kind == SEGMENT_KIND, MetadataCopy.offer.in_(names))
            .scalar_subquery(),
        )
        .limit(1)
    ).first()
    if rows is None:
        return 0
    _, size, key = rows
    try:
        if all(offer.head(key) is not None for offer in offers):
            return int(size or 0)
    except StorageError:
        pass  # an offer that cannot answer: the recorded minimum below
    recorded = dict(
        session.execute(
            select(MetadataCopy.offer, func.max(MetadataCopy.tree_size))
            .where(MetadataCopy.kind == SEGMENT_KIND, MetadataCopy.offer.in_(names))
            .group_by(MetadataCopy.offer)
        ).all()
    )
    return min((int(recorded.get(name) or 0) for name in names), default=0)
