"""The journal: appending facts (in the caller's transaction), sealing heads, proofs.

Appending never commits: the caller's transaction makes a fact and what it records durable
together. Sealing (signing + time-stamping a head) runs in its own short transaction, after
the facts it covers are committed.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import BindParameter, Connection, Row, Select, bindparam, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sae.db import UTCDateTime, lock_for_writing, utcnow
from sae.journal import merkle
from sae.journal.checkpoint import Checkpoint, SigningKey
from sae.journal.errors import HeadNotFound, InvalidProofRequest, JournalCorrupt, KeyChanged
from sae.journal.keyhistory import expected_fingerprint, fingerprint
from sae.journal.models import SEALER, TREE_SIZE, Event, JournalNode, JournalState, TreeHead
from sae.journal.tsa import TimestampAuthority

if TYPE_CHECKING:
    from sae.journal.note import NoteKey

LEAF_VERSION = 1


# --------------------------------------------------------------------------- leaf encoding


def canonical_json(value: Any) -> Any:
    """``value`` as it comes back from a JSON column (string keys, lists, no tuples).

    The leaf is re-derived from the stored row by ``sae journal verify``: normalising first
    guarantees that what is stored and what is hashed are the same document.
    """
    return json.loads(json.dumps(value, ensure_ascii=False, allow_nan=False))


def encode_leaf(
    *,
    leaf_index: int,
    type: str,
    actor: str,
    occurred_at: dt.datetime,
    payload: dict[str, Any],
    transfer_id: str | None,
    unit_id: str | None,
    object_id: str | None,
    object_digests: Mapping[str, str],
) -> bytes:
    """The canonical bytes of a leaf (version 1; see docs/journal.md).

    Compact JSON, keys sorted by code point, UTF-8, no NaN; ``at`` is ISO 8601 UTC with ``Z``.
    """
    doc = {
        "v": LEAF_VERSION,
        "index": leaf_index,
        "type": type,
        "actor": actor,
        "at": occurred_at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        "transfer": transfer_id,
        "unit": unit_id,
        "object": object_id,
        "sha512": dict(sorted(object_digests.items())),
        "data": payload,
    }
    return json.dumps(
        doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def leaf_hash(leaf: bytes) -> bytes:
    """RFC 9162 §2.1.1 leaf hash: SHA-256(0x00 || leaf)."""
    return merkle.leaf_hash(leaf)


def encode_event_leaf(event: Event) -> bytes:
    """Re-derive an event row's leaf from its columns."""
    return encode_leaf(
        leaf_index=event.leaf_index,
        type=event.type,
        actor=event.actor,
        occurred_at=event.occurred_at,
        payload=event.payload,
        transfer_id=event.transfer_id,
        unit_id=event.unit_id,
        object_id=event.object_id,
        object_digests=event.digests or {},
    )


# --------------------------------------------------------------------------- stored nodes


class DbNodes:
    """A :class:`merkle.NodeSource` over ``events.leaf_hash`` (level 0) and ``journal_nodes``."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.reads = 0

    def get_nodes(self, keys: Sequence[merkle.NodeKey]) -> Mapping[merkle.NodeKey, bytes]:
        """A query per kind of node (and per 400 keys); raises :class:`JournalCorrupt` if any
        is missing."""
        out: dict[merkle.NodeKey, bytes] = {}
        leaves = [ix for lv, ix in keys if lv == 0]
        inner = [(lv, ix) for lv, ix in keys if lv > 0]
        # SQL text straight to the driver, on the session's connection: an append reads its
        # peaks under the journal's write lock (the serial part of every deposit), and building
        # a statement of a new shape each time cost more there than running it.
        connection = self.session.connection()
        mark = _placeholder(connection)
        for chunk in _chunks(leaves):
            self.reads += 1
            marks = ", ".join([mark] * len(chunk))  # the SQL holds placeholders, never values
            sql = f"SELECT leaf_index, leaf_hash FROM events WHERE leaf_index IN ({marks})"  # noqa: S608
            rows = connection.exec_driver_sql(sql, tuple(chunk))
            out.update({(0, ix): bytes(h) for ix, h in rows})
        for pairs in _chunks(inner):
            self.reads += 1
            where = " OR ".join([f'(level = {mark} AND "index" = {mark})'] * len(pairs))
            sql = f'SELECT level, "index", hash FROM journal_nodes WHERE {where}'  # noqa: S608
            rows = connection.exec_driver_sql(sql, tuple(v for pair in pairs for v in pair))
            out.update({(lv, ix): bytes(h) for lv, ix, h in rows})
        missing = [k for k in keys if k not in out]
        if missing:
            raise JournalCorrupt(f"journal node(s) missing: {missing[:5]}")
        return out


# --------------------------------------------------------------------------- appending


@dataclass(frozen=True)
class NewEvent:
    """A fact to append (see :func:`append_events`)."""

    type: str
    actor: str
    payload: dict[str, Any] = field(default_factory=dict)
    transfer_id: str | None = None
    unit_id: str | None = None
    object_id: str | None = None
    object_digests: dict[str, str] = field(default_factory=dict)


T = TypeVar("T")


def _chunks(items: Sequence[T], size: int = 400) -> Iterator[Sequence[T]]:
    """``items`` in slices of ``size`` (a statement's bound parameters stay well under the
    databases' limits)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _placeholder(connection: Connection) -> str:
    """The driver's positional parameter mark, for SQL text handed to it as it is."""
    return "?" if connection.dialect.paramstyle == "qmark" else "%s"


_RESERVE_SQL = "UPDATE journal_state SET value = value + {p} WHERE name = {p} RETURNING value"


def _reserve(session: Session, count: int) -> int:
    """Reserve ``count`` leaf indices; return the first.

    The UPDATE takes the row lock (PostgreSQL) or the database write lock (SQLite) and keeps it
    until the caller's transaction ends: appenders are serialised, and a rolled-back append
    gives its indices back. No gap, no duplicate, whatever the number of processes.
    """
    connection = session.connection()
    sql = _RESERVE_SQL.format(p=_placeholder(connection))
    new_size = connection.exec_driver_sql(sql, (count, TREE_SIZE)).scalar_one_or_none()
    if new_size is None:
        ensure_state(session)
        new_size = connection.exec_driver_sql(sql, (count, TREE_SIZE)).scalar_one()
    return int(new_size) - count


def ensure_state(session: Session) -> None:
    """Create the counters if they are missing (a fresh or emptied database).

    The migration creates them; this covers a database whose tables were emptied (tests) by
    counting the leaves that exist. ``ON CONFLICT DO NOTHING`` lets concurrent callers race.
    """
    dialect = session.get_bind().dialect.name
    insert_fn = pg_insert if dialect == "postgresql" else sqlite_insert
    size = session.scalar(select(func.coalesce(func.max(Event.leaf_index) + 1, 0)))
    for name, value in ((TREE_SIZE, int(size or 0)), (SEALER, 0)):
        session.execute(
            insert_fn(JournalState).values(name=name, value=value).on_conflict_do_nothing()
        )


def peaks_at(session: Session, size: int) -> list[bytes]:
    """The Merkle peaks of the tree of the first ``size`` leaves (committed)."""
    keys = merkle.peak_keys(size)
    nodes = DbNodes(session).get_nodes(keys) if keys else {}
    return [nodes[k] for k in keys]


@dataclass(frozen=True)
class AppendedLeaf:
    """Where a fact landed."""

    leaf_index: int
    leaf: bytes
    leaf_hash: bytes


def _json_text(value: Any) -> str:
    """The canonical JSON text used inside leaves (sorted keys, compact, UTF-8, no NaN)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def _str_keys_only(value: Any) -> bool:
    """True when every mapping key in ``value`` is a string (JSON round-trips it unchanged)."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and _str_keys_only(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(_str_keys_only(v) for v in value)
    return True


_encode_str = json.encoder.encode_basestring  # ensure_ascii=False flavour, as in the leaves


def _opt(value: str | None) -> str:
    return "null" if value is None else _encode_str(value)


def compose_leaf(
    *,
    leaf_index: int,
    type: str,
    actor: str,
    at: str,
    payload_text: str,
    digests_text: str,
    transfer_id: str | None,
    unit_id: str | None,
    object_id: str | None,
) -> bytes:
    """:func:`encode_leaf`'s exact bytes, assembled from pre-serialised parts (hot paths).

    ``at`` is the leaf's time as written (``2026-11-29T08:49:46.054701Z``); ``payload_text`` and
    ``digests_text`` are canonical JSON (:func:`_json_text`, digests sorted). Keys in code-point
    order; the equality with :func:`encode_leaf` is tested.
    """
    return (
        f'{{"actor":{_encode_str(actor)},"at":"{at}","data":{payload_text},'
        f'"index":{leaf_index},"object":{_opt(object_id)},"sha512":{digests_text},'
        f'"transfer":{_opt(transfer_id)},"type":{_encode_str(type)},'
        f'"unit":{_opt(unit_id)},"v":{LEAF_VERSION}}}'
    ).encode()


def _compose_leaf(
    index: int, spec: NewEvent, at: str, payload_text: str, digests_text: str
) -> bytes:
    """:func:`compose_leaf` for a :class:`NewEvent` (the append path)."""
    return compose_leaf(
        leaf_index=index,
        type=spec.type,
        actor=spec.actor,
        at=at,
        payload_text=payload_text,
        digests_text=digests_text,
        transfer_id=spec.transfer_id,
        unit_id=spec.unit_id,
        object_id=spec.object_id,
    )


def _prepare(
    session: Session, events: Sequence[NewEvent]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Reserve indices and build the event and node rows (the caller inserts them).

    ``payload`` and ``digests`` are returned as canonical JSON *text*: the leaf embeds exactly
    that text and the row stores it, so what is hashed and what is stored cannot differ.
    """
    session.flush()  # the caller's pending rows first: nothing of theirs is reordered after us
    start = _reserve(session, len(events))
    peaks = peaks_at(session, start)
    now = utcnow()
    at = now.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    rows: list[dict[str, Any]] = []
    nodes: list[dict[str, Any]] = []
    for offset, spec in enumerate(events):
        index = start + offset
        payload = spec.payload if _str_keys_only(spec.payload) else canonical_json(spec.payload)
        payload_text = _json_text(payload)
        digests_text = _json_text({str(k): str(v) for k, v in spec.object_digests.items()})
        leaf = _compose_leaf(index, spec, at, payload_text, digests_text)
        lh = merkle.leaf_hash(leaf)
        created, peaks = merkle.append_leaf(index, peaks, lh)
        nodes.extend({"level": lv, "index": ix, "hash": h} for (lv, ix), h in created)
        rows.append(
            {
                "leaf_index": index,
                "type": spec.type,
                "actor": spec.actor,
                "occurred_at": now,
                "transfer_id": spec.transfer_id,
                "unit_id": spec.unit_id,
                "object_id": spec.object_id,
                "payload_text": payload_text,
                "digests_text": digests_text,
                "leaf": leaf,
                "leaf_hash": lh,
            }
        )
    return rows, nodes


_EVENT_KEYS = (
    "leaf_index",
    "type",
    "actor",
    "occurred_at",
    "transfer_id",
    "unit_id",
    "object_id",
    "payload_text",
    "digests_text",
    "leaf",
    "leaf_hash",
)
# The batch path goes straight to the driver's executemany: SQLAlchemy's per-row parameter
# processing would cost a third of the time. Only the timestamp needs a dialect conversion,
# done once per batch by the column type itself.
_RAW_SQL = {
    "sqlite": (
        "INSERT INTO events (leaf_index, type, actor, occurred_at, transfer_id, unit_id, "
        "object_id, payload, digests, leaf, leaf_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        'INSERT INTO journal_nodes (level, "index", hash) VALUES (?, ?, ?)',
    ),
    "postgresql": (
        "INSERT INTO events (leaf_index, type, actor, occurred_at, transfer_id, unit_id, "
        "object_id, payload, digests, leaf, leaf_hash) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s::json, %s::json, %s, %s)",
        'INSERT INTO journal_nodes (level, "index", hash) VALUES (%s, %s, %s)',
    ),
}


def append_events(session: Session, events: Sequence[NewEvent]) -> list[AppendedLeaf]:
    """Append facts as consecutive leaves, in order, inside the caller's transaction.

    The batch path (>= 10,000 events/s): one executemany per table, no ORM objects.
    """
    if not events:
        return []
    rows, nodes = _prepare(session, events)
    connection = session.connection()
    dialect = connection.dialect
    events_sql, nodes_sql = _RAW_SQL[dialect.name]
    to_db = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    stamp = rows[0]["occurred_at"]
    bound_stamp = to_db(stamp) if to_db is not None else stamp
    params = [
        tuple(bound_stamp if key == "occurred_at" else row[key] for key in _EVENT_KEYS)
        for row in rows
    ]
    connection.exec_driver_sql(events_sql, params)
    if nodes:
        connection.exec_driver_sql(nodes_sql, [(n["level"], n["index"], n["hash"]) for n in nodes])
    return [AppendedLeaf(r["leaf_index"], r["leaf"], r["leaf_hash"]) for r in rows]


def append_event(
    session: Session,
    *,
    type: str,
    actor: str,
    payload: dict[str, Any] | None = None,
    transfer_id: str | None = None,
    unit_id: str | None = None,
    object_id: str | None = None,
    object_digests: dict[str, str] | None = None,
) -> Event:
    """Append one fact as the next leaf. The caller commits; the row is flushed here."""
    spec = NewEvent(
        type=type,
        actor=actor,
        payload=payload or {},
        transfer_id=transfer_id,
        unit_id=unit_id,
        object_id=object_id,
        object_digests=object_digests or {},
    )
    rows, nodes = _prepare(session, [spec])
    row = dict(rows[0])
    row["payload"] = json.loads(row.pop("payload_text"))
    row["digests"] = json.loads(row.pop("digests_text"))
    event = Event(**row)
    session.add(event)
    session.add_all(JournalNode(**node) for node in nodes)
    session.flush()
    return event


def tree_size(session: Session) -> int:
    """The number of leaves (as this transaction sees it)."""
    value = session.scalar(select(JournalState.value).where(JournalState.name == TREE_SIZE))
    return int(value or 0)


# --------------------------------------------------------------------------- heads


def latest_head(session: Session) -> TreeHead | None:
    """The most recent sealed head."""
    return session.scalars(select(TreeHead).order_by(TreeHead.tree_size.desc()).limit(1)).first()


def head_of_size(session: Session, size: int) -> TreeHead:
    """The head sealed at exactly ``size`` leaves."""
    head = session.scalars(select(TreeHead).where(TreeHead.tree_size == size)).first()
    if head is None:
        raise HeadNotFound(f"no tree head was sealed at size {size}")
    return head


def covering_head(session: Session, leaf_index: int) -> TreeHead | None:
    """The earliest sealed head that includes leaf ``leaf_index``: the tightest time bound."""
    return session.scalars(_covering(select(TreeHead), leaf_index)).first()


def _covering(query: Select[Any], leaf_index: int | BindParameter[int]) -> Select[Any]:
    size = TreeHead.__table__.c.tree_size  # the table's column: keeps a Core select off the ORM
    return query.where(size > leaf_index).order_by(size).limit(1)


def covering_head_summary(session: Session, leaf_index: int) -> Row[Any, Any, Any] | None:
    """:func:`covering_head`'s ``tree_size``, ``root_hash`` and ``timestamp`` only, read as
    plain columns (every deposit's reply asks, and just after its commit there is rarely a head
    yet): no ORM object for a head that is not shown whole, and a statement built once."""
    return session.connection().execute(_COVERING_SUMMARY, {"leaf_index": leaf_index}).first()


_HEADS = TreeHead.__table__.c
_COVERING_SUMMARY = _covering(
    select(_HEADS.tree_size, _HEADS.root_hash, _HEADS.timestamp), bindparam("leaf_index")
)


#: The leaves that record the decision on a transfer (``rebuild.transfer_recovered``: an
#: accepted transfer whose own leaves were lost with the database before being published, and
#: that a rebuild brought back from its description, ``sae.recovery.rebuild``).
DECISIONS = ("ingest.accepted", "ingest.rejected", "rebuild.transfer_recovered")


@dataclass(frozen=True)
class TransferLeaf:
    """Where the decision on a transfer stands in the journal: its leaf (None when none is
    recorded) and the first signed head covering it (its fields None until one is sealed)."""

    leaf_index: int | None = None
    tree_size: int | None = None
    root_hash: bytes | None = None
    timestamp: dt.datetime | None = None


def journal_ref(session: Session, transfer_id: str, leaf_index: int | None = None) -> TransferLeaf:
    """The transfer's decisive leaf (accepted or rejected; looked up unless given) and the first
    head covering it."""
    if leaf_index is None:
        leaf_index = session.scalar(
            select(Event.leaf_index)
            .where(Event.transfer_id == transfer_id, Event.type.in_(DECISIONS))
            .order_by(Event.leaf_index.desc())
            .limit(1)
        )
    if leaf_index is None:
        return TransferLeaf()
    head = covering_head_summary(session, leaf_index)
    if head is None:
        return TransferLeaf(leaf_index=leaf_index)
    return TransferLeaf(
        leaf_index=leaf_index,
        tree_size=head.tree_size,
        root_hash=head.root_hash,
        timestamp=head.timestamp,
    )


def _take_sealer_lock(session: Session, *, wait: bool) -> bool:
    if session.get_bind().dialect.name != "postgresql":
        # SQLite serialises writers itself, and tree_heads.tree_size is unique: a second sealer
        # of the same size fails on insert and steps back.
        return True
    got = session.execute(
        select(JournalState.name)
        .where(JournalState.name == SEALER)
        .with_for_update(skip_locked=not wait)
    ).first()
    return got is not None


def seal(
    session: Session,
    *,
    signer: SigningKey,
    tsa: TimestampAuthority,
    origin: str,
    note_key: NoteKey | None = None,
    wait: bool = False,
) -> TreeHead | None:
    """Seal a head over every committed leaf; return it, the existing one, or None if busy.

    With ``note_key``, the head is also signed as a C2SP ``tlog-checkpoint`` note (what the
    witnesses co-sign, :mod:`sae.journal.witnessing`).

    Run it in its own transaction, after the facts to cover are committed; the caller commits.
    Returns None when another instance is sealing right now (it will cover the same leaves),
    unless ``wait``: then it waits for that instance and seals whatever it left uncovered —
    for a caller that needs a covering head now (a proof, the latest head).
    """
    if session.get(JournalState, SEALER) is None:
        ensure_state(session)
    if not _take_sealer_lock(session, wait=wait):
        return None
    size = tree_size(session)
    current = latest_head(session)
    if size == 0 or (current is not None and current.tree_size >= size):
        return current
    pinned = expected_fingerprint(session, heads=False)
    if pinned is not None and fingerprint(signer.public_pem) != pinned:
        # Another process rotated the key (``sae journal rotate-key``): a head signed with the
        # old key after the rotation leaf would fail every verification.
        raise KeyChanged(
            f"the journal's key is now {pinned}, not this process's "
            f"{fingerprint(signer.public_pem)}: reload the key",
            pinned=pinned,
        )
    root = merkle.root(size, DbNodes(session))
    checkpoint = Checkpoint(origin, size, root, utcnow())
    data = checkpoint.to_bytes()
    token = tsa.timestamp(data)
    head = TreeHead(
        tree_size=size,
        root_hash=root,
        origin=origin,
        timestamp=checkpoint.timestamp,
        checkpoint=data,
        signature=signer.sign(data),
        public_key_pem=signer.public_pem,
        tsr=token.tsr,
        tsa_chain_pem=token.chain_pem,
        tsa_time=token.gen_time,
        note=checkpoint_note(note_key, origin, size, root) if note_key is not None else None,
    )
    if session.get_bind().dialect.name != "postgresql":
        # SQLite has no sealer lock: another sealer may have read a larger size, time-stamped
        # and committed while this one was at the TSA. Heads must be committed in increasing
        # size — the segment publisher starts after the largest head an offer holds, so a
        # smaller head committed later would never reach an offer, and a rebuilt catalogue
        # would lack it. Take the write lock, then look again: a head as large wins.
        lock_for_writing(session, 0)
        current = latest_head(session)
        if current is not None and current.tree_size >= size:
            return current
    try:
        with session.begin_nested():
            session.add(head)
            session.flush()
    except IntegrityError:
        return session.scalars(select(TreeHead).where(TreeHead.tree_size == size)).first()
    return head


def checkpoint_note(note_key: NoteKey, origin: str, size: int, root: bytes) -> bytes:
    """The ``tlog-checkpoint`` note of a head (origin, size, base64 root), signed by the
    archive's note key."""
    from sae.journal.note import Note, checkpoint_text

    return bytes(Note.sign(checkpoint_text(origin, size, root), note_key))


def leaves_unsealed(session: Session) -> bool:
    """Whether leaves were committed after the latest head (a head is needed to cover them)."""
    size = tree_size(session)
    head = latest_head(session)
    return size > 0 and (head is None or head.tree_size < size)


def seal_due(session: Session, *, interval: dt.timedelta) -> bool:
    """Whether leaves arrived since the last head and it is older than ``interval``."""
    size = tree_size(session)
    head = latest_head(session)
    if size == 0 or (head is not None and head.tree_size >= size):
        return False
    return head is None or utcnow() - head.timestamp >= interval


# --------------------------------------------------------------------------- proofs


@dataclass(frozen=True)
class ConsistencyProof:
    """RFC 9162 §2.1.4 consistency between two tree sizes."""

    first: int
    second: int
    first_root: bytes
    second_root: bytes
    proof: list[bytes]


def consistency(session: Session, first: int, second: int) -> ConsistencyProof:
    """A consistency proof between sizes ``first`` <= ``second`` <= the current size."""
    size = tree_size(session)
    if not 0 < first <= second <= size:
        raise InvalidProofRequest(
            f"need 0 < first <= second <= {size} (the tree size), got first={first}, "
            f"second={second}"
        )
    nodes = DbNodes(session)
    ranges = merkle.consistency_ranges(first, second)
    fetched = nodes.get_nodes(
        list(
            dict.fromkeys(
                k for s, e in [*ranges, (0, first), (0, second)] for k in merkle.range_nodes(s, e)
            )
        )
    )
    return ConsistencyProof(
        first=first,
        second=second,
        first_root=merkle.range_hash(0, first, fetched),
        second_root=merkle.range_hash(0, second, fetched),
        proof=[merkle.range_hash(s, e, fetched) for s, e in ranges],
    )


def inclusion(session: Session, leaf_index: int, size: int) -> tuple[bytes, list[bytes]]:
    """``(root, audit path)`` of leaf ``leaf_index`` in the tree of ``size`` leaves."""
    if not 0 <= leaf_index < size <= tree_size(session):
        raise InvalidProofRequest(f"leaf {leaf_index} is not in a tree of size {size}")
    return merkle.root_and_inclusion_proof(leaf_index, size, DbNodes(session))


def iter_events(session: Session, *, start: int = 0, chunk: int = 5000) -> Iterator[Event]:
    """Every event in leaf order, read in chunks (constant memory)."""
    last = start - 1
    while True:
        rows = session.scalars(
            select(Event).where(Event.leaf_index > last).order_by(Event.leaf_index).limit(chunk)
        ).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].leaf_index


def find_events(
    session: Session,
    *,
    unit_id: str | None = None,
    object_id: str | None = None,
    transfer_id: str | None = None,
    types: Iterable[str] = (),
    date_from: dt.datetime | None = None,
    date_to: dt.datetime | None = None,
    after: int | None = None,
    limit: int = 100,
) -> list[Event]:
    """Events matching every given filter, in leaf order, from leaf index ``after + 1``."""
    query = select(Event).order_by(Event.leaf_index).limit(limit)
    if unit_id is not None:
        query = query.where(Event.unit_id == unit_id)
    if object_id is not None:
        query = query.where(Event.object_id == object_id)
    if transfer_id is not None:
        query = query.where(Event.transfer_id == transfer_id)
    wanted = list(types)
    if wanted:
        query = query.where(Event.type.in_(wanted))
    if date_from is not None:
        query = query.where(Event.occurred_at >= date_from)
    if date_to is not None:
        query = query.where(Event.occurred_at <= date_to)
    if after is not None:
        query = query.where(Event.leaf_index > after)
    return list(session.scalars(query))


def count_events(session: Session) -> int:
    """Number of event rows (what verification compares with the tree size)."""
    return int(session.scalar(select(func.count()).select_from(Event)) or 0)
