"""The catalogue rebuilt from one offer alone, verified against the signed journal (issue 17).

:func:`rebuild` (``sae rebuild --from OFFER [--database URL]``):

1. **Target**: the database is migrated to head and must be empty — no row in any table but
  ``journal_state``'s counters — unless it carries *this* rebuild's progress marker (the
  ``journal_state`` rows ``rebuild_offer``, ``rebuild_next_leaf``, ``rebuild_started_at``):
  a rebuild killed midway, run again with the same offer, resumes after its last committed
  segment. Anything else is refused (:class:`RebuildTargetNotEmpty`).
2. **Journal**: the offer's ``journal/segments/`` are streamed in key order, one transaction
  each. A segment is checked as ``sae journal verify --offer`` does (its key against its
  header, continuity with the previous one, the number and indices of its leaves, the root
  recomputed from every leaf since leaf 0 against its head, the checkpoint, SAE's signature,
  the time-stamp token) and, since a rebuild trusts what it verifies, its head must be signed
  by *this* SAE's key. Its leaves become ``events`` rows (every column re-derived from the
  leaf), the Merkle nodes they complete ``journal_nodes`` rows, its head a ``tree_heads``
  row, its copy on the offer a ``metadata_copies`` row, and each leaf, in order, is replayed
  by its owner (:mod:`sae.recovery.replay`). The first problem stops the rebuild
  (:class:`SegmentInvalid`, naming the segment); nothing is papered over.
   Then the offer's ``journal/tails/`` (:mod:`sae.journal.tails`): the leaves of deposits
  acknowledged before a segment held them, each tail checked against its checkpoint signed by
  this SAE's key (no head: the one sealed at the end covers them); a gap stops the rebuild.
3. **Transfers acknowledged without their leaves on the offer** (a 503 after the commit, an
  earlier version): a description
  (``transfers/<id>.zip``) whose transfer the journal did not bring back is imported when
  every object it lists is on the offer with its size, and a ``rebuild.transfer_recovered``
  event (its id, the description's SHA-512) is journaled for it: the depositor had its 201,
  and segments are published at most every 10 seconds. One whose objects are not all there
  was left by a deposit that failed before its commit (``sae fsck``'s unrecorded metadata):
  it is skipped and reported. One whose MessageIdentifier another accepted transfer of the
  same agency holds (a deposit retried after such a failure) likewise.
4. **Texts**: the text layer of every archived PDF is read again from the offer
  (:mod:`sae.extraction`; derived data, never journaled), so search finds what it found.
5. **End**: a ``catalog.rebuilt`` event (offer, counts, duration), a new admin token as on a
  first start (tokens are not rebuilt: only their hashes were in the lost database), the
  progress marker removed, and a new head sealed over everything.

Memory is bounded whatever the archive's size: one segment's leaves are read as a stream and
written :data:`BATCH` at a time, one transfer's description at a time, description keys
:data:`KEY_BATCH` at a time. Rows go in with one multi-row INSERT per table and batch.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from sqlalchemy import Engine, delete, func, insert, inspect, select, update
from sqlalchemy.orm import Session, sessionmaker

from sae.auth.service import ensure_admin_token
from sae.config import Settings
from sae.db import make_engine, make_sessionmaker, transaction
from sae.errors import SAEError
from sae.extraction.service import extract_pending
from sae.ingest.models import Transfer
from sae.ingest.replay import import_transfer, read_description, transfer_ids
from sae.ingest.transfer_record import (
    PREFIX as TRANSFERS_PREFIX,
)
from sae.ingest.transfer_record import (
    TransferRecordError,
    read_transfer_record,
    transfer_record_key,
)
from sae.journal import merkle
from sae.journal.checkpoint import SigningKey
from sae.journal.errors import TimestampInvalid
from sae.journal.keyhistory import KEY_EVENTS, KEY_PINNED, KeyHistory, fingerprint, history_of
from sae.journal.keys import JournalKeys, load_journal_keys
from sae.journal.models import TREE_SIZE, Event, JournalNode, JournalState, TreeHead
from sae.journal.notekey import load_note_key
from sae.journal.segments import KIND as SEGMENT_KIND
from sae.journal.segments import PREFIX as SEGMENTS_PREFIX
from sae.journal.segments import (
    SegmentFormatError,
    SegmentHeader,
    read_segment,
    segment_head_fault,
)
from sae.journal.service import DbNodes, append_event, checkpoint_note, ensure_state, seal
from sae.journal.tails import PREFIX as TAILS_PREFIX
from sae.journal.tails import parse_tail_key, read_tail
from sae.journal.tsa import BuiltinTSA, verify_response
from sae.migrate import upgrade
from sae.models import Base
from sae.recovery import replay
from sae.recovery.errors import (
    DescriptionInvalid,
    RebuildStopped,
    RebuildTargetNotEmpty,
    SegmentInvalid,
)
from sae.storage.base import StorageOffer
from sae.storage.errors import StorageError
from sae.storage.models import MetadataCopy
from sae.storage.offers import load_offers

#: The ``journal_state`` rows of a rebuild in progress (its marker).
MARK_OFFER = "rebuild_offer"
MARK_NEXT_LEAF = "rebuild_next_leaf"
MARK_STARTED = "rebuild_started_at"
MARKS = (MARK_OFFER, MARK_NEXT_LEAF, MARK_STARTED)
#: Leaves inserted (and replayed) at a time within a segment.
BATCH = 2000
#: Description keys looked up at a time when looking for recovered transfers.
KEY_BATCH = 500
#: Who the journal says acted: the rebuild runs from a shell, as the system.
ACTOR = "system:rebuild"
#: Tables whose rows the summary counts.
COUNTED = (
    "transfers",
    "archive_units",
    "data_objects",
    "data_object_groups",
    "object_copies",
    "unit_links",
    "unit_rules",
    "unit_computed_rules",
    "rules",
    "holds",
    "disposal_lists",
    "tombstones",
    "events",
    "journal_nodes",
    "tree_heads",
    "metadata_copies",
    "contracts",
    "archival_profiles",
    "communications",
)
_SEGMENT_KEY = re.compile(r"^journal/segments/(\d{16})-(\d{16})\.jsonl$")


@dataclass
class RebuildProgress:
    """Where a rebuild stands (given to the progress callback after each step)."""

    phase: str  # "journal", "recovering", "texts", "sealing"
    segments: int = 0
    #: Tails (sae.journal.tails) that continued the segments: leaves acknowledged, not sealed.
    tails: int = 0
    leaves: int = 0
    #: The last leaf of the last segment on the offer, when known (from its key): the total.
    expected_leaves: int | None = None
    transfers: int = 0
    units: int = 0


@dataclass
class RebuildReport:
    """What a rebuild did."""

    offer: str
    database: str
    #: Segments verified and imported by this run, and before it (a resumed rebuild).
    segments: int
    segments_before: int
    leaves: int
    #: Tails imported after the segments (leaves that no published segment held yet).
    tails: int
    resumed_from_leaf: int
    recovered: list[str]
    skipped: list[str]
    counts: dict[str, int]
    #: The rebuilt journal's size at the end (its leaves, the rebuild's own included).
    tree_size: int
    seconds: float
    head_size: int | None
    admin_token_path: Path | None
    notes: list[str] = field(default_factory=list)

    @property
    def units_per_second(self) -> float:
        """Archive units rebuilt per second of this run."""
        return self.counts.get("archive_units", 0) / self.seconds if self.seconds > 0 else 0.0


ProgressFn = Callable[[RebuildProgress], None]


def rebuild(
    settings: Settings,
    offer_name: str,
    database_url: str | None = None,
    *,
    progress: ProgressFn | None = None,
    after_segment: Callable[[str], None] | None = None,
    scratch: bool = False,
) -> RebuildReport:
    """Rebuild the catalogue at ``database_url`` (default: the configured one) from the offer
    ``offer_name`` alone (see the module's docstring).

    ``after_segment`` is called with each segment's key once it is committed (an interruption
    there is what a resumed rebuild starts after). ``scratch``: a throwaway copy (``sae
    drill``): no ``catalog.rebuilt`` event, no admin token, no head sealed — the rebuilt
    journal is the offer's alone (plus any recovered transfer's leaf), comparable with the
    live one. Raises :class:`RebuildTargetNotEmpty`,
    :class:`SegmentInvalid` or :class:`DescriptionInvalid`, and the offer's
    :class:`~sae.storage.errors.StorageError`.
    """
    url = database_url or settings.db_url
    offer = load_offers(settings).get(offer_name)
    keys = load_journal_keys(settings)
    replay.load_all()
    engine = make_engine(url)
    try:
        upgrade(engine)
        sessions = make_sessionmaker(engine)
        run = _Rebuild(settings, url, engine, sessions, offer, keys, progress, after_segment)
        run.scratch = scratch
        return run.run()
    finally:
        engine.dispose()


@dataclass(frozen=True)
class CatchUp:
    """What :func:`replay_journal` replayed: leaves inserted and replayed, transfers brought
    back (by their ``ingest.accepted`` leaves, and recovered from their descriptions)."""

    leaves: int
    transfers: int
    recovered: list[str]
    notes: list[str]
    #: Heads over leaves the catalogue already held, sealed after its copy, now recorded.
    heads: int = 0


def replay_journal(
    sessions: sessionmaker[Session],
    offer: StorageOffer,
    *,
    start_leaf: int,
    keys: JournalKeys,
    settings: Settings | None = None,
    progress: ProgressFn | None = None,
) -> CatchUp:
    """Catch a restored catalogue up from ``offer`` (``sae restore``, :mod:`sae.recovery.backup`):
    the rebuild's replay on a catalogue that already holds ``start_leaf`` leaves — no target
    claimed, no marker, no ``catalog.rebuilt``, no admin token, no seal (the caller journals
    and seals). Segments ending at or before ``start_leaf`` whose head it holds are skipped
    (one whose head it lacks: below); one that straddles it (the backup held leaves sealed
    after it was taken) is verified whole, its leaves below
    ``start_leaf`` compared byte for byte with the catalogue's; every later leaf is inserted and
    replayed; then the descriptions of transfers the catalogue lacks are recovered as in a
    rebuild. Stops as a rebuild does (:class:`SegmentInvalid`, :class:`DescriptionInvalid`).

    A segment that ends at or before ``start_leaf`` whose head the catalogue lacks is not
    skipped: a running server's sealer may seal a head over leaves the backup copied, after the
    copy (over all of them, before ``sae backup`` journals it; on SQLite even over fewer, as the
    sealer reads the size before asking the TSA). That head was answered by the API and named
    by the transfers' replies and proofs: its segment is verified (signature, time-stamp, key
    in force, its leaves against the catalogue's, the root at its size) and its head recorded."""
    from sae.config import load_settings

    replay.load_all()
    bind = sessions.kw.get("bind")
    engine = bind if isinstance(bind, Engine) else None
    if engine is None:
        raise TypeError("replay_journal needs sessions bound to an engine")
    run = _Rebuild(
        settings or load_settings(),
        engine.url.render_as_string(hide_password=False),
        engine,
        sessions,
        offer,
        keys,
        progress,
        None,
    )
    run.catch_up = True
    size = run.replay_tails(run.replay_segments(start_leaf))
    run.check_not_behind(size)
    run.check_key_history()
    run.restore_cosignatures()
    run.state.phase = "recovering"
    transfers_by_leaves = run.state.transfers
    recovered, skipped = run._recover_transfers()
    del skipped  # named in the notes
    return CatchUp(
        leaves=size - start_leaf,
        transfers=transfers_by_leaves + len(recovered),
        recovered=recovered,
        notes=run.notes,
        heads=run.heads_recorded,
    )


def _fingerprint(offer_name: str) -> int:
    """The offer's name as a ``journal_state`` value (a BigInteger): 62 bits of its SHA-256."""
    return int.from_bytes(hashlib.sha256(offer_name.encode()).digest()[:8], "big") >> 2


def _now_micros() -> int:
    return int(time.time() * 1_000_000)


class _Rebuild:
    """One run of :func:`rebuild` (the state shared by its steps)."""

    def __init__(
        self,
        settings: Settings,
        url: str,
        engine: Engine,
        sessions: sessionmaker[Session],
        offer: StorageOffer,
        keys: JournalKeys,
        progress: ProgressFn | None,
        after_segment: Callable[[str], None] | None,
    ) -> None:
        self.settings = settings
        self.url = url
        self.engine = engine
        self.sessions = sessions
        self.offer = offer
        self.keys = keys
        self.progress_fn = progress
        self.after_segment = after_segment
        self.state = RebuildProgress("journal")
        self.notes: list[str] = []
        self.started = time.monotonic()
        self.saw_segment = False
        self.saw_description = False
        self.tsa_anchors = _trusted_tsa_anchors(settings, keys)
        self.note_key = load_note_key(settings)
        #: The keys in force as the replayed leaves say (pin, then signed rotations): each head
        #: must be signed by the key in force at its size. Filled from the catalogue when it
        #: already holds leaves (a resumed rebuild, a catch-up), else from the first key leaf
        #: or head, which must be a key this SAE holds or held (see ``_first_keys``).
        self.key_history: KeyHistory | None = None
        self.first_keys = _first_keys(settings, keys)
        #: Every key this SAE holds or held (its key file, those rotations retired).
        self.held_keys = _held_keys(settings, keys)
        self.settings_pin = settings.journal_key_fingerprint
        #: Catching up a restored catalogue (``replay_journal``), not rebuilding an empty one.
        self.catch_up = False
        #: A throwaway rebuild (``sae drill``): see :func:`rebuild`.
        self.scratch = False
        #: Heads recorded over leaves the catalogue already held (:meth:`_check_late_head`).
        self.heads_recorded = 0

    def _tell(self) -> None:
        if self.progress_fn is not None:
            self.progress_fn(self.state)

    # ------------------------------------------------------------------ the whole run

    def run(self) -> RebuildReport:
        start, started_at = self._claim_target()
        segments_before = self._committed_segments()
        size = self.replay_tails(self.replay_segments(start))
        self.check_not_behind(size)
        self.check_key_history()
        self.restore_cosignatures()
        self.state.phase = "recovering"
        self._tell()
        recovered, skipped = self._recover_transfers()
        if not self.saw_segment and not self.saw_description:
            # Most likely the wrong offer or bucket: an empty catalogue is not a rebuild.
            raise RebuildStopped(
                SEGMENTS_PREFIX, "empty", "the offer holds no journal segment and no description"
            )
        self.state.phase = "texts"
        self._tell()
        self.extract_texts()
        self.state.phase = "sealing"
        self._tell()
        counts = self._counts()
        seconds = (_now_micros() - started_at) / 1_000_000
        token_path = self._finish(counts, seconds, recovered, skipped)
        head = None if self.scratch else self._seal()
        return RebuildReport(
            offer=self.offer.name,
            database=_redacted(self.url),
            segments=self.state.segments,
            segments_before=segments_before,
            leaves=size,
            tails=self.state.tails,
            resumed_from_leaf=start,
            recovered=recovered,
            skipped=skipped,
            counts=self._counts(),
            tree_size=self._final_size(),
            seconds=time.monotonic() - self.started,
            head_size=head.tree_size if head is not None else None,
            admin_token_path=token_path,
            notes=self.notes,
        )

    def extract_texts(self) -> None:
        """The text of the archived PDFs, read again from the offer (derived data, not in the
        journal: ``sae.extraction``), so that search finds what it found before the loss."""
        done = extract_pending(self.sessions, [self.offer], self.settings.data_dir / "tmp")
        if done.skipped:
            self.notes.append(
                f"{len(done.skipped)} PDF(s) not read for their text (no copy checks out on"
                f" {self.offer.name}); the background worker tries again"
            )

    def replay_segments(self, start: int) -> int:
        """Verify, import and replay the offer's segments after leaf ``start``; the new size."""
        size = start
        peaks = self._peaks(size)
        self.state.leaves = size
        held: set[int] = set()
        if size > 0:
            with self.sessions() as session:
                if self.key_history is None:
                    self.key_history = history_of(session, self.settings_pin)
                # The heads over the leaves already held: their segments are skipped, those of
                # the others are not (a head sealed after a backup's copy, see replay_journal).
                held = set(
                    session.scalars(select(TreeHead.tree_size).where(TreeHead.tree_size <= size))
                )
        for key in self._segment_keys(size, held):
            size, peaks = self._import_segment(key, size, peaks)
            self.state.segments += 1
            self._tell()
            if self.after_segment is not None:
                self.after_segment(key)
        return size

    def replay_tails(self, size: int) -> int:
        """Verify, import and replay the tails that continue the journal after leaf ``size``
        (leaves acknowledged to depositors that no published segment holds yet); the new size.

        Each step takes, among the tails holding leaf ``size``, the one that goes furthest
        (tails of two processes may overlap). A tail starting after ``size`` when none holds it
        is a gap: the rebuild stops, naming it. Its checkpoint must be signed by this SAE's key
        and give the root of the leaves since leaf 0 (its leaves before ``size`` are those the
        catalogue holds, or the root would differ); it is not time-stamped, so no head comes
        of it: the head the rebuild seals at the end covers its leaves."""
        spans: list[tuple[int, int, str]] = []
        for key in self.offer.list_keys(TAILS_PREFIX):
            span = parse_tail_key(key)
            if span is None:
                raise SegmentInvalid(key, "key", "not a tail's name")
            if span[1] > size:
                spans.append((span[0], span[1], key))
        if not spans:
            return size
        self.saw_segment = True
        peaks = self._peaks(size)
        while True:
            holding = [span for span in spans if span[0] <= size < span[1]]
            if not holding:
                later = [span for span in spans if span[0] > size]
                if later:
                    first, _, key = min(later)
                    raise SegmentInvalid(
                        key,
                        "gap",
                        f"leaves [{size}, {first}) missing: no segment or tail on the offer "
                        "holds them",
                    )
                return size
            first, end, key = max(holding, key=lambda span: (span[1], -span[0]))
            size, peaks = self._import_tail(key, size, peaks)
            self.state.tails += 1
            self.notes.append(
                f"leaves [{first}, {end}) from {key}: signed, not yet time-stamped when the "
                "catalogue was lost; the head sealed at the end of the rebuild covers them"
            )
            self._tell()
            if self.after_segment is not None:
                self.after_segment(key)

    def _import_tail(self, key: str, size: int, peaks: list[bytes]) -> tuple[int, list[bytes]]:
        """Verify and import one tail's leaves from ``size`` on, in its own transaction."""
        with transaction(self.sessions) as session:
            context = replay.ReplayContext(session=session, offer=self.offer)
            try:
                header, leaves = read_tail(self.offer.get(key))
            except SegmentFormatError as exc:
                raise SegmentInvalid(key, "format", str(exc)) from None
            if header.key != key:
                raise SegmentInvalid(key, "key", f"its header says {header.key}")
            fault = header.fault()
            if fault is not None:
                raise SegmentInvalid(key, "head", fault)
            count = 0

            def fresh() -> Iterator[bytes]:
                nonlocal count
                for position, leaf in enumerate(leaves, start=header.first_leaf):
                    count += 1
                    if position >= size:  # below: held already, the root proves they are these
                        yield leaf

            try:
                index, peaks = self._import_batched(context, key, fresh(), size, peaks)
            except SegmentFormatError as exc:
                raise SegmentInvalid(key, "format", str(exc)) from None
            if count != header.tree_size - header.first_leaf or index != header.tree_size:
                raise SegmentInvalid(
                    key,
                    "count",
                    f"{count} leaves for [{header.first_leaf}, {header.tree_size})",
                )
            if merkle.root_from_peaks(peaks) != header.root_hash:
                raise SegmentInvalid(
                    key,
                    "root",
                    f"the leaves since leaf 0 do not give the root of tail {header.tree_size}",
                )
            # After its leaves: a rotation leaf among them governs this checkpoint's key.
            fault = self._key_fault("tail", header.tree_size, header.public_key_pem)
            if (
                fault is None
                and not self._ends_with_own_key()
                and fingerprint(header.public_key_pem) not in self.held_keys
            ):
                # A key this SAE held (retired by a rotation) may sign the tails written before
                # the rotation leaf; the history must still end with this SAE's key (checked
                # once every tail is in), and a key it never held is named here.
                fault = f"tail {header.tree_size}: signed by a key that is not this SAE's"
            if fault is not None:
                raise SegmentInvalid(key, "head", fault)
            for name in (TREE_SIZE, MARK_NEXT_LEAF):
                session.execute(
                    update(JournalState).where(JournalState.name == name).values(value=index)
                )
            self.notes.extend(context.notes)
        return index, peaks

    def check_not_behind(self, size: int) -> None:
        """Stop if another offer of the offers file holds journal segments past leaf ``size``.

        This offer is then behind (it was down while they were published): recovering
        transfers here and sealing would give those leaves' indices to other facts, and the
        service would publish a journal that forks from the other offer's. The rebuild is
        from this offer alone; this only looks at the others' segment names. An offer that
        cannot be listed (the disaster may have taken it) is noted and passed over."""
        for name, other in load_offers(self.settings).offers.items():
            if name == self.offer.name:
                continue
            try:
                ahead = next(
                    (
                        key
                        for key in other.list_keys(SEGMENTS_PREFIX)
                        if (match := _SEGMENT_KEY.match(key)) and int(match[2]) > size
                    ),
                    None,
                )
            except StorageError as exc:
                self.notes.append(f"offer {name} not checked for later segments: {exc.detail}")
                continue
            if ahead is not None:
                raise SegmentInvalid(
                    ahead,
                    "behind",
                    f"offer {name} holds journal leaves after leaf {size}, the last that offer "
                    f"{self.offer.name} holds: rebuild from {name}",
                )

    # ------------------------------------------------------------------ the target

    def _claim_target(self) -> tuple[int, int]:
        """The leaf to start from and when the rebuild started (µs since the epoch); a fresh
        target gets the marker, a marked one must be this offer's."""
        fingerprint = _fingerprint(self.offer.name)
        with transaction(self.sessions) as session:
            ensure_state(session)
            rows = session.execute(
                select(JournalState.name, JournalState.value).where(JournalState.name.in_(MARKS))
            )
            marks = {name: value for name, value in rows}
            if marks:
                if marks.get(MARK_OFFER) != fingerprint:
                    raise RebuildTargetNotEmpty(
                        "the target database holds a rebuild from another offer in progress: "
                        "run it again with that offer, or start from an empty database"
                    )
                size = _tree_size(session)
                if marks.get(MARK_NEXT_LEAF) != size:
                    raise RebuildTargetNotEmpty(
                        f"the target's rebuild marker says leaf {marks.get(MARK_NEXT_LEAF)}, "
                        f"its journal holds {size} leaves: it was changed since; start from an "
                        "empty database"
                    )
                self.notes.append(f"resumed after leaf {size - 1}" if size else "resumed")
                return size, int(marks.get(MARK_STARTED) or _now_micros())
            busy = _non_empty_tables(session)
            if busy:
                raise RebuildTargetNotEmpty(
                    "the target database is not empty (rows in "
                    f"{', '.join(busy[:5])}{'…' if len(busy) > 5 else ''}): a rebuild only "
                    "writes into an empty catalogue, one that neither `sae init` nor `sae serve` "
                    "has started on",
                    tables=busy,
                )
            now = _now_micros()
            session.add_all(
                [
                    JournalState(name=MARK_OFFER, value=fingerprint),
                    JournalState(name=MARK_NEXT_LEAF, value=0),
                    JournalState(name=MARK_STARTED, value=now),
                ]
            )
        return 0, now

    def _final_size(self) -> int:
        with self.sessions() as session:
            return _tree_size(session)

    def _committed_segments(self) -> int:
        with self.sessions() as session:
            return int(session.scalar(select(func.count()).select_from(TreeHead)) or 0)

    def _peaks(self, size: int) -> list[bytes]:
        """The Merkle peaks of the committed leaves (a resumed rebuild's starting point)."""
        if size == 0:
            return []
        with self.sessions() as session:
            keys = merkle.peak_keys(size)
            nodes: dict[merkle.NodeKey, bytes] = {}
            for level, index in keys:
                if level == 0:
                    value = session.scalar(select(Event.leaf_hash).where(Event.leaf_index == index))
                else:
                    value = session.scalar(
                        select(JournalNode.hash).where(
                            JournalNode.level == level, JournalNode.index == index
                        )
                    )
                if value is None:
                    raise RebuildTargetNotEmpty(
                        f"the target's journal lacks node {(level, index)}: start from an empty "
                        "database"
                    )
                nodes[(level, index)] = bytes(value)
            return [nodes[k] for k in keys]

    # ------------------------------------------------------------------ the journal

    def _segment_keys(self, committed: int, held: set[int]) -> Iterator[str]:
        """The offer's segment keys in order, from the first not yet committed (streamed:
        both kinds of offer list keys in lexical order, which is leaf order; checked). A
        segment within the ``committed`` leaves is skipped only when its head is among the
        ``held`` ones: the leaves may be held without the head (a backup copied before it)."""
        previous: str | None = None
        for key in self.offer.list_keys(SEGMENTS_PREFIX):
            if previous is not None and key <= previous:
                raise SegmentInvalid(key, "order", f"listed after {previous}")
            previous = key
            self.saw_segment = True
            match = _SEGMENT_KEY.match(key)
            if match is None:
                raise SegmentInvalid(key, "key", "not a segment's name")
            end = int(match[2])
            if self.state.expected_leaves is None or end > self.state.expected_leaves:
                self.state.expected_leaves = end
            if end <= committed and end in held:
                continue  # committed by the interrupted run this one resumes, or the backup
            yield key

    def _import_segment(self, key: str, size: int, peaks: list[bytes]) -> tuple[int, list[bytes]]:
        """Verify and import one segment in its own transaction; the new size and peaks."""
        digest = hashlib.sha512()
        length = 0

        def chunks() -> Iterator[bytes]:
            nonlocal length
            for chunk in self.offer.get(key):
                digest.update(chunk)
                length += len(chunk)
                yield chunk

        with transaction(self.sessions) as session:
            context = replay.ReplayContext(session=session, offer=self.offer)
            try:
                header, leaves = read_segment(chunks())
            except SegmentFormatError as exc:
                raise SegmentInvalid(key, "format", str(exc)) from None
            if header.first_leaf < size and header.head.tree_size <= size:
                # Wholly within what is imported: a second segment written for a head by a
                # publisher that raced another, or (catching up a backup) the segment of a head
                # sealed after the backup's copy over leaves it holds. Nothing to import.
                if session.scalar(
                    select(TreeHead.id).where(TreeHead.tree_size == header.head.tree_size)
                ):
                    # Its head must be the one the catalogue holds, its leaves those it holds.
                    self._check_covered(session, key, header, leaves)
                    self._record_copy(
                        session,
                        key,
                        SEGMENT_KIND,
                        header.head.tree_size,
                        digest.hexdigest(),
                        length,
                    )
                else:
                    self._check_late_head(session, key, header, leaves)
                    self._add_head(session, key, header, digest.hexdigest(), length)
                    self.heads_recorded += 1
                    self.notes.append(
                        f"head {header.head.tree_size} from {key}: sealed after the catalogue "
                        "was copied, over leaves it held; recorded"
                    )
                return size, peaks
            self._check_header(key, header, size)
            known: list[bytes] = []

            def fresh() -> Iterator[bytes]:
                nonlocal known
                for position, leaf in enumerate(leaves, start=header.first_leaf):
                    if position >= size:
                        yield leaf
                        continue
                    # A catch-up's first segment may start below the catalogue's size: its
                    # leaves the catalogue holds must be those bytes (they are in the peaks).
                    known.append(leaf)
                    if len(known) >= BATCH or position == size - 1:
                        self._compare_known(session, key, position + 1 - len(known), known)
                        known = []

            try:
                index, peaks = self._import_batched(context, key, fresh(), size, peaks)
            except SegmentFormatError as exc:
                raise SegmentInvalid(key, "format", str(exc)) from None
            if known:  # the segment ended before the catalogue's size
                raise SegmentInvalid(key, "count", f"ends before leaf {size}, its head says more")
            head = header.head
            if index != head.tree_size:
                raise SegmentInvalid(
                    key,
                    "count",
                    f"{index - header.first_leaf} leaves for "
                    f"[{header.first_leaf}, {head.tree_size})",
                )
            if merkle.root_from_peaks(peaks) != head.root_hash:
                raise SegmentInvalid(
                    key, "root", f"the leaves since leaf 0 do not give the root of head {index}"
                )
            # After its leaves: a rotation leaf among them governs this head's key.
            fault = self._key_fault("head", head.tree_size, head.public_key_pem)
            if fault is not None:
                raise SegmentInvalid(key, "head", fault)
            self._write_head(session, key, header, digest.hexdigest(), length)
            self.notes.extend(context.notes)
        return index, peaks

    def _check_covered(
        self, session: Session, key: str, header: SegmentHeader, leaves: Iterator[bytes]
    ) -> None:
        head = header.head
        held = session.scalar(select(TreeHead).where(TreeHead.tree_size == head.tree_size))
        if held is None or (held.checkpoint, held.signature, held.tsr) != (
            head.checkpoint,
            head.signature,
            head.tsr,
        ):
            raise SegmentInvalid(
                key,
                "overlap",
                f"starts at leaf {header.first_leaf} and ends at leaf {head.tree_size}, within "
                "what is imported, with a head the catalogue does not hold",
            )
        self._compare_segment(session, key, header, leaves)

    def _check_late_head(
        self, session: Session, key: str, header: SegmentHeader, leaves: Iterator[bytes]
    ) -> None:
        """Verify the head of a segment over leaves the catalogue holds without that head.

        A catch-up's catalogue is a backup: the server's sealer may seal a head over leaves
        the copy holds after the copy was made — over all of them, before ``sae backup``
        journals its ``catalog.backed_up`` leaf, or on SQLite over fewer (the sealer reads the
        size, asks the TSA, then commits) — so its segment ends at or before the backup's tree
        size. The API answered that head before the loss (transfers' replies, proof bundles):
        skipping the segment as one the backup holds would lose it. It is verified as an
        imported head is (SAE's signature, the time-stamp and its TSA, the key in force at its
        size), its leaves against the catalogue's and the root the catalogue's leaves give at
        its size; the caller records it, the tree's size unchanged."""
        head = header.head
        if header.key != key:
            raise SegmentInvalid(key, "key", f"its header says {header.key}")
        fault = segment_head_fault(head) or self._tsa_fault(
            head.tree_size, head.checkpoint, head.tsr, head.tsa_chain_pem
        )
        if fault is not None:
            raise SegmentInvalid(key, "head", fault)
        self._compare_segment(session, key, header, leaves)
        if merkle.root(head.tree_size, DbNodes(session)) != head.root_hash:
            raise SegmentInvalid(
                key, "root", f"the catalogue's leaves do not give the root of head {head.tree_size}"
            )
        fault = self._key_fault("head", head.tree_size, head.public_key_pem)
        if fault is not None:
            raise SegmentInvalid(key, "head", fault)

    def _compare_segment(
        self, session: Session, key: str, header: SegmentHeader, leaves: Iterator[bytes]
    ) -> None:
        """The segment's leaves are those the catalogue holds, as many as its head says."""
        head = header.head
        batch: list[bytes] = []
        position = header.first_leaf
        for leaf in leaves:
            batch.append(leaf)
            if len(batch) >= BATCH:
                self._compare_known(session, key, position, batch)
                position += len(batch)
                batch = []
        if batch:
            self._compare_known(session, key, position, batch)
            position += len(batch)
        if position != head.tree_size:
            raise SegmentInvalid(
                key,
                "count",
                f"{position - header.first_leaf} leaves for [{header.first_leaf}, "
                f"{head.tree_size})",
            )

    def _check_header(self, key: str, header: SegmentHeader, size: int) -> None:
        if header.key != key:
            raise SegmentInvalid(key, "key", f"its header says {header.key}")
        if header.first_leaf > size:
            raise SegmentInvalid(
                key,
                "gap",
                f"leaves [{size}, {header.first_leaf}) missing: no segment on the offer holds them",
            )
        # A segment may start below what is imported: a catch-up's first segment, or two
        # segments written from the same watermark (each head's own, by two publishers that
        # raced); its leaves the catalogue already holds must be those bytes (_compare_known).
        # One that ends there too adds nothing and is refused: it would take the size back.
        straddles = header.first_leaf < size < header.head.tree_size
        if header.first_leaf < size and not straddles:
            raise SegmentInvalid(
                key, "overlap", f"starts at leaf {header.first_leaf}, before leaf {size}"
            )
        head = header.head
        fault = segment_head_fault(head)
        # The segment carries its own public key: a forger would carry theirs. The key must be
        # the one in force at the head's size (``_key_fault``, once the segment's leaves —
        # perhaps a rotation — are replayed), the first one a key this SAE holds or held.
        if fault is None:
            fault = self._tsa_fault(head.tree_size, head.checkpoint, head.tsr, head.tsa_chain_pem)
        if fault is not None:
            raise SegmentInvalid(key, "head", fault)

    def _tsa_fault(self, size: int, checkpoint: bytes, tsr: bytes, chain_pem: bytes) -> str | None:
        """Why the token does not chain to a TSA this SAE trusts, or None. The segment carries
        its TSA's chain, which ``head_fault`` took as its own anchor: a forger would carry one
        of their own. Trusted: the configured TSA's anchors (``SAE_TSA_CA_FILE``, or the
        built-in TSA's root) and the built-in TSA's root when the data directory holds one (a
        service that moved to an external TSA keeps its earlier heads)."""
        if not self.tsa_anchors:
            return None  # nothing to pin to: the token was checked against its own chain
        try:
            verify_response(
                tsr,
                digest=hashlib.sha256(checkpoint).digest(),
                anchors=self.tsa_anchors,
                extra_certs=x509.load_pem_x509_certificates(chain_pem),
            )
        except (TimestampInvalid, ValueError) as exc:
            return f"head {size}: time-stamped by a TSA this SAE does not trust ({exc})"
        return None

    def _key_leaf(self, index: int, type_: str, payload: dict[str, Any]) -> str | None:
        """Take a key leaf into the history; why it is refused, or None."""
        if self.key_history is None or not self.key_history.entries:
            self.key_history = KeyHistory()
            first = payload.get("fingerprint" if type_ == KEY_PINNED else "old_fingerprint")
            if first not in self.first_keys:
                return f"leaf {index}: pins or rotates from a key that is not this SAE's"
            if type_ != KEY_PINNED:
                self.key_history.start(str(first), None)
        return self.key_history.apply(index, type_, payload)

    def _key_fault(self, what: str, size: int, public_pem: bytes) -> str | None:
        """Why a head (or tail) of ``size`` is not signed by the key in force, or None."""
        fpr = fingerprint(public_pem)
        if self.key_history is None:
            self.key_history = KeyHistory()
        in_force = self.key_history.key_for(size)
        if in_force is None:
            if fpr not in self.first_keys:
                return f"{what} {size}: signed by a key that is not this SAE's"
            self.key_history.start(fpr, public_pem)  # a journal older than pinning
            return None
        if in_force.fingerprint != fpr:
            return (
                f"{what} {size}: signed by a key that is not this SAE's key in force at that "
                f"size ({in_force.fingerprint[:16]}…, from the replayed key history)"
            )
        return None

    def restore_cosignatures(self) -> int:
        """Bring back the witnesses' cosignatures from the offer's witnessed checkpoints
        (``journal/checkpoints/``, :mod:`sae.journal.checkpoints`); how many were stored.

        Each note must be the checkpoint of a head the replayed journal holds (same origin, size
        and root) signed by the archive's note key; each of its cosignature lines by a witness of
        ``SAE_WITNESSES_FILE`` (by the key name the line gives) must verify against that
        witness's vkey, or the rebuild stops naming the note — a cosignature is only ever
        stored verified. Lines of witnesses the file does not name are left out (noted)."""
        from sae.journal.checkpoints import KIND, PREFIX, parse_checkpoint_key
        from sae.journal.models import HeadCosignature
        from sae.journal.note import Note, NoteError, checkpoint_text, verify_cosignature
        from sae.journal.witnessing import load_witnesses

        keys = sorted(self.offer.list_keys(PREFIX))
        if not keys:
            return 0
        witnesses = load_witnesses(self.settings)
        if witnesses is None:
            self.notes.append(
                f"{len(keys)} witnessed checkpoints on the offer, not read: no "
                "SAE_WITNESSES_FILE to check their cosignatures against"
            )
            return 0
        by_name = {w.name: w for w in witnesses.witnesses}
        stored = 0
        for key in keys:
            size = parse_checkpoint_key(key)
            if size is None:
                raise SegmentInvalid(key, "key", "not a witnessed checkpoint's name")
            data = b"".join(self.offer.get(key))
            with transaction(self.sessions) as session:
                head = session.scalars(select(TreeHead).where(TreeHead.tree_size == size)).first()
                if head is None:
                    self.notes.append(f"{key}: no head of {size} leaves in the journal, skipped")
                    continue
                text = checkpoint_text(head.origin, head.tree_size, head.root_hash)
                try:
                    note = Note.parse(data)
                except NoteError as exc:
                    raise SegmentInvalid(key, "format", exc.detail) from None
                if note.text != text:
                    raise SegmentInvalid(key, "checkpoint", f"not the checkpoint of head {size}")
                if not note.verified_by([self.note_key.verifier]):
                    raise SegmentInvalid(key, "checkpoint", "not signed by this archive's note key")
                have = set(
                    session.scalars(
                        select(HeadCosignature.witness).where(HeadCosignature.tree_size == size)
                    )
                )
                for signature in note.signatures:
                    if signature.name == self.note_key.verifier.name:
                        continue
                    witness = by_name.get(signature.name)
                    if witness is None:
                        self.notes.append(
                            f"{key}: the cosignature of {signature.name}, a witness "
                            "SAE_WITNESSES_FILE does not name, left out"
                        )
                        continue
                    line = signature.line.rstrip("\n")  # as head_cosignatures keeps it
                    try:
                        stamp = verify_cosignature(witness.verifier, text, line)
                    except NoteError as exc:
                        raise SegmentInvalid(
                            key,
                            "cosignature",
                            f"the cosignature of {signature.name}: {exc.detail}",
                        ) from None
                    if signature.name in have:
                        continue
                    session.add(
                        HeadCosignature(
                            tree_size=size,
                            witness=signature.name,
                            key_id=witness.verifier.key_id.hex(),
                            cosigned_at=stamp,
                            line=line,
                        )
                    )
                    stored += 1
                self._record_copy(
                    session, key, KIND, size, hashlib.sha512(data).hexdigest(), len(data)
                )
        if stored:
            self.notes.append(f"{stored} witnesses' cosignatures restored from {len(keys)} notes")
        return stored

    def _ends_with_own_key(self) -> bool:
        """Whether the key history replayed so far ends with this SAE's current key."""
        current = self.key_history.current if self.key_history is not None else None
        return current is None or current.fingerprint == fingerprint(self.keys.signer.public_pem)

    def check_key_history(self) -> None:
        """The replayed history must end with this SAE's key: a forged chain of rotations
        ending in someone else's key is not this SAE's journal."""
        if not self._ends_with_own_key():
            assert self.key_history is not None
            assert self.key_history.current is not None
            raise SegmentInvalid(
                SEGMENTS_PREFIX,
                "head",
                f"the journal's key history ends with key {self.key_history.current.fingerprint}"
                f", which is not this SAE's key {fingerprint(self.keys.signer.public_pem)}",
            )

    def _import_batched(
        self,
        context: replay.ReplayContext,
        key: str,
        leaves: Iterable[bytes],
        index: int,
        peaks: list[bytes],
    ) -> tuple[int, list[bytes]]:
        """Insert and replay ``leaves``, the next ones from ``index``, :data:`BATCH` at a time;
        the new size and peaks."""
        peaks = list(peaks)
        batch: list[bytes] = []
        for leaf in leaves:
            batch.append(leaf)
            if len(batch) >= BATCH:
                index, peaks = self._import_leaves(context, key, batch, index, peaks)
                batch = []
        return self._import_leaves(context, key, batch, index, peaks)

    def _import_leaves(
        self,
        context: replay.ReplayContext,
        key: str,
        leaves: list[bytes],
        index: int,
        peaks: list[bytes],
    ) -> tuple[int, list[bytes]]:
        """Insert a batch of leaves (events, nodes), then replay them in order."""
        if not leaves:
            return index, peaks
        events: list[replay.LeafEvent] = []
        rows: list[dict[str, Any]] = []
        nodes: list[dict[str, Any]] = []
        for leaf in leaves:
            try:
                event = replay.LeafEvent.parse(leaf)
            except replay.LeafFormatError as exc:
                raise SegmentInvalid(key, "index", f"leaf {index}: {exc}") from None
            if event.index != index:
                raise SegmentInvalid(key, "index", f"leaf {index} says index {event.index}")
            leaf_hash = merkle.leaf_hash(leaf)
            created, peaks = merkle.append_leaf(index, peaks, leaf_hash)
            nodes.extend({"level": lv, "index": ix, "hash": h} for (lv, ix), h in created)
            rows.append(_event_row(event, leaf_hash))
            events.append(event)
            index += 1
        session = context.session
        session.execute(insert(Event), rows)
        if nodes:
            session.execute(insert(JournalNode), nodes)
        for event in events:
            if event.type in KEY_EVENTS:
                problem = self._key_leaf(event.index, event.type, event.payload)
                if problem is not None:
                    raise SegmentInvalid(key, "key", problem)
            try:
                replay.apply(context, event)
            except (replay.UnknownEventType, replay.LeafFormatError) as exc:
                # Not the segment's fault: this SAE does not know how to replay the leaf.
                raise RebuildStopped(key, "replay", str(exc)) from None
            if event.type in ("ingest.accepted", "rebuild.transfer_recovered"):
                self.state.transfers += 1
                self.state.units += int(event.payload.get("units") or 0)
        self.state.leaves = index
        session.flush()
        return index, peaks

    def _compare_known(self, session: Session, key: str, first: int, leaves: list[bytes]) -> None:
        """The catalogue holds leaves ``[first, first + len(leaves))`` with these bytes."""
        rows = dict(
            session.execute(
                select(Event.leaf_index, Event.leaf).where(
                    Event.leaf_index >= first, Event.leaf_index < first + len(leaves)
                )
            ).all()
        )
        for index, leaf in enumerate(leaves, start=first):
            held = rows.get(index)
            if held is None or bytes(held) != leaf:
                raise SegmentInvalid(
                    key, "index", f"leaf {index} differs from the catalogue's (or it lacks it)"
                )

    def _write_head(
        self, session: Session, key: str, header: SegmentHeader, sha512: str, size: int
    ) -> None:
        head = header.head
        if self.catch_up:
            # A head sealed after the backup cannot be in it (a backup holds heads over its
            # own leaves only): one there means the catalogue is not the backup it claims.
            if session.scalar(select(TreeHead.id).where(TreeHead.tree_size == head.tree_size)):
                raise SegmentInvalid(
                    key, "head", f"the catalogue already holds head {head.tree_size}"
                )
        self._add_head(session, key, header, sha512, size)
        for name in (TREE_SIZE, MARK_NEXT_LEAF):
            session.execute(
                update(JournalState).where(JournalState.name == name).values(value=head.tree_size)
            )

    def _add_head(
        self, session: Session, key: str, header: SegmentHeader, sha512: str, size: int
    ) -> None:
        """The segment's head as a ``tree_heads`` row, its copy on this offer recorded."""
        head = header.head
        session.add(
            TreeHead(
                tree_size=head.tree_size,
                root_hash=head.root_hash,
                origin=head.origin,
                timestamp=head.timestamp,
                checkpoint=head.checkpoint,
                signature=head.signature,
                public_key_pem=head.public_key_pem,
                tsr=head.tsr,
                tsa_chain_pem=head.tsa_chain_pem,
                tsa_time=head.tsa_time,
                # Ed25519 is deterministic: the archive's note key gives the live head's note
                # again, byte for byte; the cosignatures come back from the witnessed
                # checkpoints (restore_cosignatures).
                note=checkpoint_note(self.note_key, head.origin, head.tree_size, head.root_hash),
            )
        )
        self._record_copy(session, key, SEGMENT_KIND, head.tree_size, sha512, size)

    def _record_copy(
        self, session: Session, key: str, kind: str, tree_size: int, sha512: str, size: int
    ) -> None:
        """Record a journal object of the offer (``metadata_copies``), as its publisher did,
        unless the catalogue holds the row already (a restore's, a resumed rebuild's)."""
        recorded = session.scalar(
            select(MetadataCopy.id).where(
                MetadataCopy.offer == self.offer.name, MetadataCopy.key == key
            )
        )
        if recorded:
            return
        session.add(
            MetadataCopy.of_copy(
                self.offer.name,
                key,
                self.offer.head(key),
                kind=kind,
                tree_size=tree_size,
                sha512=sha512,
                size=size,
            )
        )

    # ------------------------------------------------------------------ after the journal

    def _recover_transfers(self) -> tuple[list[str], list[str]]:
        """Import the descriptions no published leaf brought back (see the module's
        docstring); ``(recovered, skipped)`` transfer ids."""
        recovered: list[str] = []
        skipped: list[str] = []
        batch: list[tuple[str, str]] = []

        def run(items: list[tuple[str, str]]) -> None:
            with self.sessions() as session:
                ids = [transfer_id for _, transfer_id in items]
                known = set(session.scalars(select(Transfer.id).where(Transfer.id.in_(ids))))
            for _, transfer_id in items:
                if transfer_id in known:
                    continue
                if self._recover_one(transfer_id):
                    recovered.append(transfer_id)
                else:
                    skipped.append(transfer_id)

        for item in transfer_ids(self.offer.list_keys(TRANSFERS_PREFIX)):
            self.saw_description = True
            batch.append(item)
            if len(batch) >= KEY_BATCH:
                run(batch)
                batch = []
        if batch:
            run(batch)
        return recovered, skipped

    def _recover_one(self, transfer_id: str) -> bool:
        key = transfer_record_key(transfer_id)
        data, digest = read_description(self.offer, transfer_id)
        try:
            record = read_transfer_record(data).record
        except TransferRecordError as exc:
            raise DescriptionInvalid(key, "format", str(exc)) from None
        missing = self._missing_objects(record)
        if missing:
            self.notes.append(
                f"{key}: not recovered: {missing} (a deposit that failed before its commit; "
                "`sae fsck` reports it as unrecorded metadata)"
            )
            return False
        with transaction(self.sessions) as session:
            transfer = record.get("transfer") or {}
            duplicate = session.scalar(
                select(Transfer.id).where(
                    Transfer.status == "OK",
                    Transfer.transferring_agency == transfer.get("transferring_agency"),
                    Transfer.message_identifier == transfer.get("message_identifier"),
                )
            )
            if duplicate is not None:
                self.notes.append(
                    f"{key}: not recovered: transfer {duplicate} holds the same "
                    "MessageIdentifier (this one is a deposit retried after a failure)"
                )
                return False
            context = replay.ReplayContext(session=session, offer=self.offer)
            imported = import_transfer(context, transfer_id, data=data, expected_sha512=digest)
            append_event(
                session,
                type="rebuild.transfer_recovered",
                actor=ACTOR,
                transfer_id=transfer_id,
                # The objects' digests under the next signed head: their original leaves were
                # never published.
                object_digests=imported.digests,
                payload={
                    "offer": self.offer.name,
                    "description_sha512": digest,
                    "units": imported.units,
                    "objects": imported.objects,
                },
            )
            # The marker follows the journal, so that a rebuild interrupted here resumes.
            session.execute(
                update(JournalState)
                .where(JournalState.name == MARK_NEXT_LEAF)
                .values(value=_tree_size(session))
            )
        self.state.transfers += 1
        self.state.units += imported.units
        self._tell()
        return True

    def _missing_objects(self, record: dict[str, Any]) -> str | None:
        """What of the record's objects the offer lacks (None: every one is there)."""
        for obj in record.get("objects") or []:
            key = obj.get("storage_key") if isinstance(obj, dict) else None
            if not key:
                continue
            try:
                stored = self.offer.head(str(key))
            except StorageError as exc:
                return f"{key}: {exc.detail}"
            if stored is None:
                return f"{key} is not on the offer"
            if stored.size != obj.get("size"):
                return f"{key} holds {stored.size} bytes, the record says {obj.get('size')}"
        return None

    def _counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        with self.engine.connect() as connection:
            existing = set(inspect(connection).get_table_names())
            for name in COUNTED:
                if name in existing:
                    table = Base.metadata.tables[name]
                    counts[name] = int(
                        connection.execute(select(func.count()).select_from(table)).scalar_one()
                    )
        return counts

    def _finish(
        self, counts: dict[str, int], seconds: float, recovered: list[str], skipped: list[str]
    ) -> Path | None:
        """The summary event, the new admin token, the marker removed: one transaction (a
        scratch rebuild: the marker only)."""
        with transaction(self.sessions) as session:
            session.execute(delete(JournalState).where(JournalState.name.in_(MARKS)))
            if self.scratch:
                return None
            append_event(
                session,
                type="catalog.rebuilt",
                actor=ACTOR,
                payload={
                    "offer": self.offer.name,
                    "counts": counts,
                    "seconds": round(seconds, 3),
                    "segments": self._committed_segments_in(session),
                    "recovered_transfers": recovered[:1000],
                    "recovered_count": len(recovered),
                    "skipped_descriptions": skipped[:1000],
                },
            )
            return ensure_admin_token(session, self._token_dir())

    @staticmethod
    def _committed_segments_in(session: Session) -> int:
        return int(session.scalar(select(func.count()).select_from(TreeHead)) or 0)

    def _token_dir(self) -> Path:
        """Where the new admin token goes: the data directory, as on a first start, when the
        target is the configured database; beside it otherwise (a scratch rebuild must not
        overwrite the running service's ``admin.token``)."""
        if self.url == self.settings.db_url:
            return self.settings.data_dir
        name = hashlib.sha256(self.url.encode()).hexdigest()[:12]
        return self.settings.data_dir / "rebuilt" / name

    def _seal(self) -> TreeHead | None:
        with transaction(self.sessions) as session:
            return seal(
                session,
                signer=self.keys.signer,
                tsa=self.keys.tsa,
                origin=self.keys.origin,
                wait=True,
                note_key=self.note_key,
            )


def _event_row(event: replay.LeafEvent, leaf_hash: bytes) -> dict[str, Any]:
    """The ``events`` row of a leaf: every column from the leaf (``sae journal verify``
    re-derives the leaf from them and compares)."""
    return {
        "leaf_index": event.index,
        "type": event.type,
        "actor": event.actor,
        "occurred_at": event.occurred_at.replace(tzinfo=dt.UTC),
        "transfer_id": event.transfer_id,
        "unit_id": event.unit_id,
        "object_id": event.object_id,
        "payload": event.payload,
        "digests": event.digests,
        "leaf": event.leaf,
        "leaf_hash": leaf_hash,
    }


def _tree_size(session: Session) -> int:
    value = session.scalar(select(JournalState.value).where(JournalState.name == TREE_SIZE))
    return int(value or 0)


def _non_empty_tables(session: Session) -> list[str]:
    """The tables holding a row (``journal_state`` holds counters from the start)."""
    connection = session.connection()
    existing = set(inspect(connection).get_table_names())
    busy = []
    for table in Base.metadata.sorted_tables:
        if table.name == JournalState.__tablename__ or table.name not in existing:
            continue
        if connection.execute(select(1).select_from(table).limit(1)).first() is not None:
            busy.append(table.name)
    return busy


def _trusted_tsa_anchors(settings: Settings, keys: JournalKeys) -> list[x509.Certificate]:
    """The TSA roots a rebuild accepts (see ``_Rebuild._tsa_fault``)."""
    anchors: list[x509.Certificate] = list(getattr(keys.tsa, "anchors", []) or [])
    builtin = settings.data_dir / "tsa"
    if (builtin / "root.pem").is_file():
        try:
            anchors.extend(BuiltinTSA.load(builtin, create=False).anchors)
        except (OSError, ValueError, TypeError):
            pass  # an unreadable leftover: the configured TSA's anchors still hold
    unique: dict[bytes, x509.Certificate] = {}
    for cert in anchors:
        unique.setdefault(cert.fingerprint(hashes.SHA256()), cert)
    return list(unique.values())


def _redacted(url: str) -> str:
    """The database URL without its password (said in the report)."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def report_json(report: RebuildReport) -> str:
    """The report as JSON (keys sorted)."""
    doc = {
        "offer": report.offer,
        "database": report.database,
        "segments": report.segments,
        "segments_before": report.segments_before,
        "leaves": report.leaves,
        "resumed_from_leaf": report.resumed_from_leaf,
        "recovered": report.recovered,
        "skipped": report.skipped,
        "counts": report.counts,
        "seconds": round(report.seconds, 3),
        "units_per_second": round(report.units_per_second, 1),
        "head_size": report.head_size,
        "tree_size": report.tree_size,
        "admin_token_path": str(report.admin_token_path) if report.admin_token_path else None,
        "notes": report.notes,
    }
    return json.dumps(doc, sort_keys=True, ensure_ascii=False)


def _first_keys(settings: Settings, keys: JournalKeys) -> set[str]:
    """Fingerprints a rebuilt journal's first key may have: ``SAE_JOURNAL_KEY_FINGERPRINT``
    when set; else this SAE's key and the keys it retired (``sae journal rotate-key`` keeps
    them in ``$SAE_DATA_DIR/keys`` as ``journal-signing.<fingerprint>.key``, or their public
    half ``.pub.pem`` when the key was lost)."""
    if settings.journal_key_fingerprint is not None:
        return {settings.journal_key_fingerprint}
    return _held_keys(settings, keys)


def _held_keys(settings: Settings, keys: JournalKeys) -> set[str]:
    """Fingerprints of this SAE's key and of the keys it retired (``sae journal rotate-key``
    keeps them in ``$SAE_DATA_DIR/keys`` as ``journal-signing.<fingerprint>.key``, or their
    public half ``.pub.pem`` when the key was lost)."""
    found = {fingerprint(keys.signer.public_pem)}
    directory = settings.data_dir / "keys"
    for path in directory.glob("journal-signing.*.key"):
        try:
            found.add(fingerprint(SigningKey.load(path).public_pem))
        except SAEError:
            continue  # unreadable or too open: not trusted
    for path in directory.glob("journal-signing.*.pub.pem"):
        found.add(fingerprint(path.read_bytes()))
    found.discard("")
    return found
