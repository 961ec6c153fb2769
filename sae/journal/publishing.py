"""Publishing the journal's segments to every offer of the strategy.

After each sealed head (the background sealer, a deposit without a sealer, ``sae journal
seal``) and every minute (the background auditor's catch-up round), :func:`publish_segments`
writes to each offer the segments (``sae.journal.segments``) it does not hold yet, oldest
first, at most ``limit`` per offer and call, and records each in ``metadata_copies``.

- **Per offer**: one offer down does not hold back the others; it catches up at a later round.
  What an offer still needs starts after the last segment recorded on it (its watermark):
  heads are sealed in increasing size, one sealer at a time, so nothing is ever sealed below
  it.
- **Idempotent**: a segment's bytes are a function of its head, so a key already on the offer
  (a crash between the write and the record, another process) is read back and compared:
  the same SHA-512 is recorded; different bytes are *not* (``journal.segment_conflict``,
  an error: tampering or a bug; ``sae journal verify --offer`` names the segment).
- **One publisher at a time**: on PostgreSQL the ``segment_publisher`` row of
  ``journal_state``, taken ``FOR UPDATE SKIP LOCKED`` in a transaction of its own for the
  round (a busy publisher makes the others skip the round, as the sealer does); on SQLite an
  exclusive, non-blocking ``flock`` on a file beside the database, because SQLite's only lock
  is the database write lock and no transaction may hold it while offers are written. What
  to publish is read in one short transaction, the offers are written outside any, and each
  copy is recorded in a short transaction of its own.
- **Not journaled**: a publication is logged (``journal.segment_published``), never appended
  as an event: an event is a leaf, a leaf needs a head, a head a segment — a publication would
  publish itself forever.
- **Memory**: a segment is written to a spooled temporary file (in memory up to
  :data:`SPOOL_IN_MEMORY`, on disk beyond), its leaves read :data:`READ_BATCH` at a time. Heads
  are sealed every few seconds under load, so segments are small; the first one after
  upgrading an old journal sealed rarely may hold millions of leaves, and is then on disk.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import BinaryIO, cast

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from sae.db import sqlite_file, transaction
from sae.journal.models import Event, JournalState, TreeHead
from sae.journal.segments import (
    KIND,
    PREFIX,
    SegmentHead,
    SegmentVerifier,
    segment_key,
    verify_segments,
    write_segment,
)
from sae.storage.base import StorageOffer, StoredObject
from sae.storage.errors import ObjectExists, ReplicationFailed, StorageError
from sae.storage.models import MetadataCopy
from sae.storage.service import copy_digest, store_copies

log = logging.getLogger("sae.journal")

#: The ``journal_state`` row a PostgreSQL publisher locks for its round.
PUBLISHER = "segment_publisher"
#: Segments per offer and call: a backlog (every head of a journal older than this feature)
#: drains over several rounds, each short enough to leave the sealer and the auditor to their
#: other work.
DEFAULT_LIMIT = 50
READ_BATCH = 8192
SPOOL_IN_MEMORY = 8 * 1024 * 1024


@dataclass
class PublishCounts:
    """What one call did: segments written, found already there (recorded), refused as
    different from what the head gives, offers that failed; ``busy``: another publisher held
    the lock, nothing was tried."""

    published: int = 0
    already_there: int = 0
    conflicts: int = 0
    failed_offers: int = 0
    busy: bool = False


def publish_segments(
    sessions: sessionmaker[Session],
    offers: Sequence[StorageOffer],
    *,
    limit: int = DEFAULT_LIMIT,
) -> PublishCounts:
    """Write to each offer the segments it lacks, oldest first, at most ``limit`` each.

    Never raises for an offer's failure (logged, retried next round).
    """
    counts = PublishCounts()
    with _publisher_lock(sessions) as got:
        if not got:
            counts.busy = True
            return counts
        for offer in offers:
            _publish_to(sessions, offer, limit, counts)
    return counts


def publish_quietly(
    sessions: sessionmaker[Session], offers: Sequence[StorageOffer]
) -> PublishCounts | None:
    """:func:`publish_segments` for a caller that has just sealed a head and must carry on
    whatever happens (a deposit already acknowledged, the sealer's loop): a failure is logged
    and the auditor's next round catches up."""
    try:
        return publish_segments(sessions, offers)
    except Exception:  # the database may be down too: nothing here may fail the caller
        log.exception("journal.segment_publish_crashed")
        return None


def _publish_to(
    sessions: sessionmaker[Session], offer: StorageOffer, limit: int, counts: PublishCounts
) -> None:
    with sessions() as session:
        pending = pending_segments(session, offer.name, limit)
    for first, head in pending:
        key = segment_key(first, head.tree_size)
        try:
            written = _write(sessions, offer, key, first, head)
        except (StorageError, ValueError) as exc:
            # The offer is down or refuses (or a leaf is missing from the database, which
            # `sae journal verify` reports): the next round starts again from this segment.
            detail = exc.detail if isinstance(exc, StorageError) else str(exc)
            log.warning(
                "journal.segment_publish_failed offer=%s key=%s: %s", offer.name, key, detail
            )
            counts.failed_offers += 1
            return
        if written is None:
            counts.conflicts += 1
            continue
        stored, existed = written
        record_copy(
            sessions,
            offer.name,
            key,
            kind=KIND,
            tree_size=head.tree_size,
            sha512=stored.sha512 or "",
            size=stored.size,
            stored=stored,
        )
        if existed:
            counts.already_there += 1
        else:
            counts.published += 1
            log.info("journal.segment_published offer=%s key=%s", offer.name, key)


def pending_segments(session: Session, offer: str, limit: int) -> list[tuple[int, SegmentHead]]:
    """The next ``limit`` heads whose segment ``offer`` has not recorded, each with its first
    leaf (the previous head's size), oldest first."""
    watermark = session.scalar(
        select(func.max(MetadataCopy.tree_size)).where(
            MetadataCopy.offer == offer, MetadataCopy.kind == KIND
        )
    )
    after = watermark or 0
    heads = list(
        session.scalars(
            select(TreeHead)
            .where(TreeHead.tree_size > after)
            .order_by(TreeHead.tree_size)
            .limit(limit)
        )
    )
    if not heads:
        return []
    previous = session.scalar(
        select(func.max(TreeHead.tree_size)).where(TreeHead.tree_size < heads[0].tree_size)
    )
    out, first = [], previous or 0
    for head in heads:
        out.append((first, SegmentHead.of(head)))
        first = head.tree_size
    return out


def leaves_between(sessions: sessionmaker[Session], first: int, end: int) -> Iterator[bytes]:
    """The leaves ``[first, end)`` in order, read ``READ_BATCH`` at a time."""
    expected = first
    with sessions() as session:
        while expected < end:
            rows = session.execute(
                select(Event.leaf_index, Event.leaf)
                .where(Event.leaf_index >= expected, Event.leaf_index < end)
                .order_by(Event.leaf_index)
                .limit(READ_BATCH)
            ).all()
            if not rows:
                break
            for index, leaf in rows:
                if index != expected:
                    raise ValueError(f"leaf {expected} is missing from the events table")
                yield leaf
                expected += 1


def _write(
    sessions: sessionmaker[Session],
    offer: StorageOffer,
    key: str,
    first: int,
    head: SegmentHead,
) -> tuple[StoredObject, bool] | None:
    """Write the segment; ``(copy, existed)``, or None when the offer holds other bytes."""
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool:
        source = cast(BinaryIO, spool)
        write_segment(source, first, head, leaves_between(sessions, first, head.tree_size))
        source.seek(0)
        digest = hashlib.sha512()
        for chunk in iter(lambda: source.read(1024 * 1024), b""):
            digest.update(chunk)
        expected = digest.hexdigest()
        source.seek(0)
        try:
            copies = store_copies([offer], key, source, retain_until=None, expected_sha512=expected)
            return copies[0], False
        except ReplicationFailed as exc:
            if not isinstance(exc.__cause__, ObjectExists):
                raise
        return _already_there(offer, key, expected)


def _already_there(
    offer: StorageOffer, key: str, expected: str
) -> tuple[StoredObject, bool] | None:
    """The copy a crash or another process left under ``key``: recorded if it is ours."""
    stored = adopt_written(offer, key, expected, conflict="journal.segment_conflict")
    return None if stored is None else (stored, True)


def adopt_written(
    offer: StorageOffer, key: str, expected: str, *, conflict: str
) -> StoredObject | None:
    """What a crash or another process left under ``key`` (write-once: it cannot be written
    again): ours, to be recorded, when it has the ``expected`` SHA-512; else None, logged as
    ``conflict`` (an error: tampering or a bug), and not recorded."""
    actual, _ = copy_digest(offer, key)
    if actual != expected:
        log.error(
            "%s offer=%s key=%s: the offer holds sha512 %s, SAE gives %s; not recorded",
            conflict,
            offer.name,
            key,
            actual,
            expected,
        )
        return None
    stored = offer.head(key)
    if stored is None:  # gone between the read and the head: the next round writes it
        raise ObjectExists(offer.name, key)
    return stored


def record_copy(
    sessions: sessionmaker[Session],
    offer: str,
    key: str,
    *,
    kind: str,
    tree_size: int,
    sha512: str,
    size: int,
    stored: StoredObject,
) -> None:
    """Record a journal object written to ``offer`` (``metadata_copies``); a second record of
    the same copy (another process, unique offer and key) is the same fact."""
    row = MetadataCopy.of_copy(
        offer, key, stored, kind=kind, tree_size=tree_size, sha512=sha512, size=size
    )
    try:
        with transaction(sessions) as session:
            session.add(row)
    except IntegrityError:
        pass  # recorded meanwhile (unique offer, key): the same copy


def verify_offer(offer: StorageOffer) -> SegmentVerifier:
    """Verify the journal from ``offer`` alone: its segments, listed and folded in key order,
    each streamed (``sae journal verify --offer``). An offer that cannot be read raises."""
    keys = sorted(offer.list_keys(PREFIX))
    return verify_segments((key, offer.get(key)) for key in keys)


# --------------------------------------------------------------------------- the lock


def _publisher_lock(sessions: sessionmaker[Session]) -> AbstractContextManager[bool]:
    """Whether this process publishes this round (see the module's docstring)."""
    return exclusive_turn(sessions, PUBLISHER)


@contextmanager
def exclusive_turn(sessions: sessionmaker[Session], name: str) -> Iterator[bool]:
    """Whether this process, of all those sharing the catalogue, has the turn ``name`` (held
    until the block ends; never waits): a row of ``journal_state`` locked ``SKIP LOCKED`` on
    PostgreSQL (machines share it), a ``flock`` beside the SQLite file. Work one process at a
    time must do (publishing segments, a restore drill) takes its turn here."""
    bind = sessions.kw.get("bind")
    url = getattr(bind, "url", None)
    if url is not None and url.get_backend_name() == "postgresql":
        with _row_lock(sessions, name) as got:
            yield got
        return
    database = sqlite_file(url) if url is not None else None
    if database is None:
        yield True  # one process only can see this database
        return
    with _file_lock(f"{database}.{name.replace('_', '-')}-lock") as got:
        yield got


@contextmanager
def _row_lock(sessions: sessionmaker[Session], name: str) -> Iterator[bool]:
    with transaction(sessions) as session:
        session.execute(pg_insert(JournalState).values(name=name, value=0).on_conflict_do_nothing())
    with transaction(sessions) as session:
        got = session.execute(
            select(JournalState.name)
            .where(JournalState.name == name)
            .with_for_update(skip_locked=True)
        ).first()
        yield got is not None


@contextmanager
def _file_lock(path: str) -> Iterator[bool]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
