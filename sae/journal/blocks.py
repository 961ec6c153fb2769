"""One block of ``sae journal verify``: the leaves of an aligned perfect subtree, checked alone.

A block is the ``2**level`` leaves starting at a multiple of ``2**level`` (the last block of the
journal may be shorter). Everything about its leaves can be checked without looking outside it:
each row's leaf bytes re-derived from its columns, the stored leaf hash, every stored subtree
hash of level 1 to ``level`` inside it, the catalog's SHA-512 of the objects its leaves record,
and the signature and time-stamp of the heads that end inside it. What it hands back to the
caller is small: the problems, the block's peaks (its root when complete) and, for each head
ending inside it, the peaks of the block's leaves up to that head. The caller folds the blocks
in order (:mod:`sae.journal.verification`), so blocks can be checked in parallel processes,
each reading its rows from the database with its own connection.

The rows are read with plain SQL and the leaf is re-derived from the stored *text* of the JSON
columns and the timestamp, not from ORM objects: type processing of a million rows was half the
time of a verification. The bytes are exactly those of :func:`sae.journal.service.encode_leaf`
on the values the ORM would have loaded (``json.loads`` of the columns, the timestamp as SQLite
stores it or as PostgreSQL returns it, in UTC); the equality is tested.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from cryptography import x509
from sqlalchemy import Connection, Engine, select

from sae.journal import merkle
from sae.journal.checkpoint import Checkpoint, CheckpointFormatError, verify_signature
from sae.journal.errors import TimestampInvalid
from sae.journal.keyhistory import fingerprint
from sae.journal.models import TreeHead
from sae.journal.service import compose_leaf
from sae.journal.tsa import verify_response

MAX_PROBLEMS = 100
READ_BATCH = 8192
"""Rows read per query inside a block (bounded memory, on PostgreSQL too)."""

# Dialect-specific SQL, run on the driver's own cursor: no result processing per row. On
# PostgreSQL ``json::text`` is the stored text as written (the columns are ``json``, not
# ``jsonb``); SQLite returns its stored text as it is.
_SQL = {
    "sqlite": (
        "SELECT leaf_index, type, actor, occurred_at, transfer_id, unit_id, object_id, payload, "
        "digests, leaf, leaf_hash FROM events WHERE leaf_index >= ? AND leaf_index < ? "
        "ORDER BY leaf_index",
        "SELECT min(leaf_index) FROM events WHERE leaf_index >= ? AND leaf_index < ?",
        'SELECT "index", hash FROM journal_nodes WHERE level = ? AND "index" >= ? '
        'AND "index" < ? ORDER BY "index"',
    ),
    "postgresql": (
        "SELECT leaf_index, type, actor, occurred_at, transfer_id, unit_id, object_id, "
        "payload::text, digests::text, leaf, leaf_hash FROM events "
        "WHERE leaf_index >= %s AND leaf_index < %s ORDER BY leaf_index",
        "SELECT min(leaf_index) FROM events WHERE leaf_index >= %s AND leaf_index < %s",
        'SELECT "index", hash FROM journal_nodes WHERE level = %s AND "index" >= %s '
        'AND "index" < %s ORDER BY "index"',
    ),
}


@dataclass
class Problem:
    """One thing that does not check; ``leaf_index`` is the earliest leaf it may concern."""

    leaf_index: int | None
    kind: str
    message: str


@dataclass(frozen=True)
class BlockTask:
    """Check leaves ``[start, end)``, the first ``end - start`` leaves of an aligned block."""

    start: int
    """A multiple of ``2**level``."""
    end: int
    """At most ``start + 2**level``."""
    level: int
    bound: int
    """One past the last leaf index the whole journal may hold (where a gap search stops)."""
    head_sizes: tuple[int, ...] = ()
    """Sizes of the heads that end in ``(start, end]``: their signatures are checked here."""
    check_objects: bool = True
    key_spans: tuple[tuple[int, str], ...] | None = None
    """The key history (:meth:`KeyHistory.spans`): each head must be signed by the key in force
    at its size. None: by the key stored beside it (a caller without a history)."""


@dataclass
class BlockResult:
    """What the caller needs of a checked block."""

    start: int
    leaves: int = 0
    """Leaves found in order from ``start`` (short of the block if rows are missing)."""
    events: int = 0
    """Rows read (a row found after a gap counts, as it was read)."""
    problems: list[Problem] = field(default_factory=list)
    peaks: list[bytes] = field(default_factory=list)
    """Peaks of the ``leaves`` leaves, left first: the block's root alone when it is complete."""
    head_peaks: dict[int, list[bytes]] = field(default_factory=dict)
    """For each head size reached, the peaks of the block's leaves up to that size."""
    head_faults: dict[int, str | None] = field(default_factory=dict)
    """For each head size reached, why its checkpoint, signature or token fails (None: fine)."""
    objects_checked: int = 0
    gap: bool = False
    """A leaf is missing: nothing after it was read, and nothing after it counts."""
    ended: bool = False
    """The rows ended inside the block (no row follows, up to ``bound``)."""

    def add(self, leaf_index: int | None, kind: str, message: str) -> None:
        """Record a problem (the first ``MAX_PROBLEMS`` are kept)."""
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(Problem(leaf_index, kind, message))


# --------------------------------------------------------------------------- leaf derivation

_canonical = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
).encode
_raw_decode = json.JSONDecoder().raw_decode
_PLAIN = r'"([^"\\\x00-\x1f]*)"'
# One digest whose id and value need no escaping (every ingest leaf): the stored text is then
# exactly its canonical encoding, so it is used as it is.
_ONE_DIGEST = re.compile(r"\{" + _PLAIN + ":" + _PLAIN + r"\}").fullmatch


@lru_cache(maxsize=256)
def leaf_time(value: object) -> str:
    """A leaf's ``at`` from the stored timestamp, exactly as :func:`encode_leaf` writes it.

    SQLite stores text (``2026-11-29 08:49:46.054701``, read back by SQLAlchemy with
    ``datetime.fromisoformat``); PostgreSQL returns an aware datetime. Naive means UTC. Cached:
    the leaves appended together share their timestamp.
    """
    when = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    if not isinstance(when, dt.datetime):
        raise TypeError(f"not a timestamp: {type(value).__name__}")
    if when.tzinfo is None:
        return when.isoformat() + "Z"
    return when.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _loads(text: Any) -> Any:
    """``json.loads``, with its exact semantics, a little faster on compact text."""
    if isinstance(text, str):
        try:
            value, end = _raw_decode(text)
        except ValueError:
            pass
        else:
            if end == len(text):
                return value
    return json.loads(text)


def payload_text(stored: Any) -> str:
    """The leaf's ``data`` from the stored payload column (None is SQL NULL)."""
    return "null" if stored is None else _canonical(_loads(stored))


def digests_of(stored: Any) -> tuple[str, dict[str, Any]]:
    """The leaf's ``sha512`` text and the digests by object id, from the stored column."""
    if stored == "{}":
        return "{}", {}
    match = _ONE_DIGEST(stored) if isinstance(stored, str) else None
    if match is not None:
        return stored, {match[1]: match[2]}
    value = (None if stored is None else _loads(stored)) or {}
    if not isinstance(value, dict):
        raise TypeError(f"digests are a JSON {type(value).__name__}, not an object")
    return _canonical(dict(sorted(value.items()))), value


# --------------------------------------------------------------------------- heads


@lru_cache(maxsize=8)
def _chain(chain_pem: bytes) -> tuple[x509.Certificate, ...]:
    # Every head of a TSA carries the same chain: parse it once.
    return tuple(x509.load_pem_x509_certificates(chain_pem))


def head_fault(
    size: int,
    root_hash: bytes,
    origin: str,
    checkpoint: bytes,
    signature: bytes,
    public_key_pem: bytes,
    tsr: bytes,
    tsa_chain_pem: bytes,
    *,
    expected_key: str | None = None,
) -> str | None:
    """Why a head's checkpoint, SAE signature or time-stamp token does not check, or None.

    ``expected_key``: the fingerprint of the key in force at this size (the key history); the
    key stored beside the head must be it. The root itself is compared by the caller, who alone
    knows the whole tree.
    """
    try:
        cp = Checkpoint.from_bytes(checkpoint)
    except CheckpointFormatError as exc:
        return f"head {size}: malformed checkpoint ({exc})"
    if (cp.tree_size, cp.root_hash, cp.origin) != (size, root_hash, origin):
        return f"head {size}: checkpoint does not match its columns"
    if expected_key is not None and fingerprint(public_key_pem) != expected_key:
        return (
            f"head {size}: signed by a key that is not in the journal's key history (key "
            f"{fingerprint(public_key_pem)[:16]}…, the key in force is {expected_key[:16]}…)"
        )
    if not verify_signature(public_key_pem, checkpoint, signature):
        return f"head {size}: SAE's signature does not verify"
    try:
        chain = list(_chain(tsa_chain_pem))
        verify_response(
            tsr,
            digest=hashlib.sha256(checkpoint).digest(),
            anchors=chain[-1:],
            extra_certs=chain,
        )
    except (TimestampInvalid, ValueError) as exc:
        return f"head {size}: time-stamp token refused ({exc})"
    return None


def _head_faults(conn: Connection, task: BlockTask, sizes: set[int]) -> dict[int, str | None]:
    if not sizes:
        return {}
    rows = conn.execute(
        select(
            TreeHead.tree_size,
            TreeHead.root_hash,
            TreeHead.origin,
            TreeHead.checkpoint,
            TreeHead.signature,
            TreeHead.public_key_pem,
            TreeHead.tsr,
            TreeHead.tsa_chain_pem,
        ).where(TreeHead.tree_size > task.start, TreeHead.tree_size <= task.end)
    )
    faults: dict[int, str | None] = {}
    for row in rows:
        if row[0] not in sizes:
            continue
        expected = None
        if task.key_spans is not None:
            in_force = [fpr for since, fpr in task.key_spans if since < row[0]]
            if not in_force:
                faults[row[0]] = f"head {row[0]}: no key of the journal's key history governs it"
                continue
            expected = in_force[-1]
        faults[row[0]] = head_fault(*row, expected_key=expected)
    return faults


# --------------------------------------------------------------------------- a block


def check_block(conn: Connection, task: BlockTask) -> BlockResult:
    """Check the leaves of ``task`` read through ``conn`` (whose transaction it reads in)."""
    events_sql, next_sql, nodes_sql = _SQL[conn.dialect.name]
    result = BlockResult(start=task.start)
    hashes: list[bytes] = []
    expected = task.start
    low = task.start
    cursor = conn.connection.cursor()
    try:
        while low < task.end and not result.gap:
            high = min(low + READ_BATCH, task.end)
            cursor.execute(events_sql, (low, high))
            claims: dict[str, tuple[int, str]] = {}
            for row in cursor.fetchall():
                result.events += 1
                index = row[0]
                if index != expected:
                    result.add(
                        expected,
                        "missing",
                        f"leaves {expected}..{index - 1} are missing (rows deleted?)",
                    )
                    result.gap = True
                    break
                hashes.append(_check_row(row, result, claims if task.check_objects else None))
                expected += 1
            else:
                if claims:
                    # Checked batch by batch: memory stays constant however many objects.
                    result.objects_checked += _check_objects(conn, claims, result)
                if expected < high:
                    break  # the rows end here, or a gap follows: see below
                low = high
        if not result.gap and expected < task.end:
            cursor.execute(next_sql, (expected, task.bound))
            found = cursor.fetchone()
            if found is not None and found[0] is not None:
                result.events += 1
                result.add(
                    expected,
                    "missing",
                    f"leaves {expected}..{found[0] - 1} are missing (rows deleted?)",
                )
                result.gap = True
            else:
                result.ended = True
        levels = _levels(hashes)
        if not result.gap:
            # A block cut by a gap is not compared: its stored nodes say nothing more.
            _compare_nodes(cursor, nodes_sql, task.start, levels, result)
    finally:
        cursor.close()
    result.leaves = len(hashes)
    result.peaks = _peaks(levels, result.leaves)
    reached = {size for size in task.head_sizes if size <= task.start + result.leaves}
    result.head_peaks = {size: _peaks(levels, size - task.start) for size in reached}
    result.head_faults = _head_faults(conn, task, reached)
    return result


def _check_row(
    row: Sequence[Any], result: BlockResult, claims: dict[str, tuple[int, str]] | None
) -> bytes:
    """Check one event row; return the hash of its stored leaf (the tree is built on them)."""
    index, type_, actor, occurred_at, transfer_id, unit_id, object_id = row[:7]
    stored_payload, stored_digests, leaf, stored_hash = row[7:]
    leaf = bytes(leaf) if isinstance(leaf, bytearray | memoryview) else leaf
    try:
        digests_text, digests = digests_of(stored_digests)
        derived = compose_leaf(
            leaf_index=index,
            type=type_,
            actor=actor,
            at=leaf_time(occurred_at),
            payload_text=payload_text(stored_payload),
            digests_text=digests_text,
            transfer_id=transfer_id,
            unit_id=unit_id,
            object_id=object_id,
        )
    except (TypeError, ValueError, AttributeError) as exc:
        result.add(index, "leaf", f"leaf {index}: its columns are unreadable ({exc})")
        digests, derived = {}, None
    if derived is not None and derived != leaf:
        result.add(index, "leaf", f"leaf {index}: its columns no longer give its bytes")
    if not isinstance(leaf, bytes):
        result.add(index, "leaf", f"leaf {index}: the stored leaf is not bytes")
        leaf = b""
    lh = hashlib.sha256(b"\x00" + leaf).digest()
    if lh != stored_hash:
        result.add(index, "leaf_hash", f"leaf {index}: stored leaf hash is wrong")
    if claims is not None:
        for object_id, digest in digests.items():
            if isinstance(digest, str):
                claims.setdefault(object_id, (index, digest))
    return lh


def _levels(hashes: list[bytes]) -> list[list[bytes]]:
    """Every complete aligned subtree hash over ``hashes``, level by level (level 0 first)."""
    levels = [hashes]
    sha256 = hashlib.sha256
    while len(levels[-1]) >= 2:
        below = levels[-1]
        levels.append(
            [
                sha256(b"\x01" + below[i] + below[i + 1]).digest()
                for i in range(0, len(below) - 1, 2)
            ]
        )
    return levels


def _peaks(levels: list[list[bytes]], size: int) -> list[bytes]:
    """Peaks of the first ``size`` leaves of the block, left first."""
    return [levels[level][index] for level, index in merkle.peak_keys(size)]


def _compare_nodes(
    cursor: Any, nodes_sql: str, start: int, levels: list[list[bytes]], result: BlockResult
) -> None:
    wrong: list[tuple[int, int]] = []
    for level in range(1, len(levels)):
        computed = levels[level]
        first = start >> level
        cursor.execute(nodes_sql, (level, first, first + len(computed)))
        stored = cursor.fetchall()
        if (
            len(stored) == len(computed)
            and [h for _, h in stored] == computed
            and all(ix == first + k for k, (ix, _) in enumerate(stored))
        ):
            continue
        by_index = {ix: h for ix, h in stored}
        wrong.extend(
            (level, first + k) for k, h in enumerate(computed) if by_index.get(first + k) != h
        )
    for level, index in sorted(wrong, key=lambda key: (key[1] << key[0], key[0])):
        result.add(
            index << level,
            "node",
            f"stored subtree hash (level {level}, index {index}) is missing or wrong",
        )


def _check_objects(
    conn: Connection, claims: dict[str, tuple[int, str]], result: BlockResult
) -> int:
    from sae.catalog.models import DataObject

    checked = 0
    ids = list(claims)
    for begin in range(0, len(ids), 1000):
        rows = conn.execute(
            select(DataObject.id, DataObject.sha512).where(
                DataObject.id.in_(ids[begin : begin + 1000])
            )
        )
        for object_id, sha512 in rows:
            checked += 1
            leaf_index, recorded = claims[object_id]
            if sha512 is not None and sha512.lower() != recorded.lower():
                result.add(
                    leaf_index,
                    "object",
                    f"object {object_id}: the catalog's SHA-512 differs from leaf {leaf_index}",
                )
    return checked


# --------------------------------------------------------------------------- worker processes

_engine: Engine | None = None


def init_worker(url: str) -> None:
    """Process-pool initializer: this worker's own engine (never a connection of the parent)."""
    global _engine
    from sae.db import make_engine

    _engine = make_engine(url)


def run_block(task: BlockTask) -> BlockResult:
    """Check one block in a worker process, in a read-only transaction of its own."""
    assert _engine is not None, "init_worker was not called"
    with _engine.connect() as conn:
        try:
            return check_block(conn, task)
        finally:
            conn.rollback()


def blocks(
    bound: int,
    level: int,
    head_sizes: Iterable[int],
    *,
    check_objects: bool,
    key_spans: tuple[tuple[int, str], ...] | None = None,
) -> list[BlockTask]:
    """The aligned blocks of ``2**level`` leaves that cover ``[0, bound)``, in order."""
    size = 1 << level
    sizes = sorted(head_sizes)
    tasks = []
    for start in range(0, bound, size):
        end = min(start + size, bound)
        tasks.append(
            BlockTask(
                start=start,
                end=end,
                level=level,
                bound=bound,
                head_sizes=tuple(sizes[bisect_right(sizes, start) : bisect_right(sizes, end)]),
                check_objects=check_objects,
                key_spans=key_spans,
            )
        )
    return tasks
