"""sae journal verify: a clean journal passes; every kind of tampering names the leaf."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from sae.catalog.models import DataObject, DataObjectGroup
from sae.db import new_id
from sae.ingest.models import Transfer
from sae.journal import merkle
from sae.journal.checkpoint import SigningKey
from sae.journal.service import DbNodes, NewEvent, append_events, seal, tree_size
from sae.journal.tsa import BuiltinTSA
from sae.journal.verification import JournalReport, verify_journal
from tests.conftest import Database


@pytest.fixture
def journal(db_session: Session, builtin_tsa: BuiltinTSA) -> dict[str, object]:
    """40 events, sealed at 20 and 40; leaf 10 records an object that the catalog holds."""
    base = tree_size(db_session)
    transfer = Transfer(id=new_id(), status="OK")
    group = DataObjectGroup(id=new_id(), transfer_id=transfer.id, sip_id="g1")
    digest = hashlib.sha512(b"content").hexdigest()
    obj = DataObject(
        id=new_id(), transfer_id=transfer.id, group_id=group.id, sip_id="o1", sha512=digest
    )
    db_session.add(transfer)
    db_session.flush()
    db_session.add(group)
    db_session.flush()
    db_session.add(obj)
    db_session.flush()
    signer = SigningKey.generate()
    specs = [NewEvent(type="test.event", actor="tester", payload={"i": i}) for i in range(40)]
    specs[10] = NewEvent(
        type="ingest.object_stored",
        actor="tester",
        payload={"size": 7},
        transfer_id=transfer.id,
        object_id=obj.id,
        object_digests={obj.id: digest},
    )
    append_events(db_session, specs[:20])
    seal(db_session, signer=signer, tsa=builtin_tsa, origin="sae.test")
    append_events(db_session, specs[20:])
    seal(db_session, signer=signer, tsa=builtin_tsa, origin="sae.test")
    return {"base": base, "object": obj}


def _run(session: Session, sql: str, **params: object) -> None:
    session.execute(text(sql), params)
    session.expire_all()


def test_clean_journal_verifies(db_session: Session, journal: dict[str, object]) -> None:
    report = verify_journal(db_session)
    assert report.ok, report.problems
    assert report.events == tree_size(db_session)
    assert report.heads_checked >= 2
    assert report.objects_checked >= 1


def test_modified_payload_names_the_leaf(db_session: Session, journal: dict[str, object]) -> None:
    base = journal["base"]
    assert isinstance(base, int)
    _run(
        db_session,
        "UPDATE events SET payload = :p WHERE leaf_index = :i",
        p='{"i": 999}',
        i=base + 7,
    )
    report = verify_journal(db_session)
    assert not report.ok
    assert report.first_bad_leaf == base + 7


@pytest.mark.parametrize("column", ["actor", "type", "leaf"])
def test_one_byte_changed_in_any_column_names_the_leaf(
    db_session: Session, journal: dict[str, object], column: str
) -> None:
    base = journal["base"]
    assert isinstance(base, int)
    index = base + 25
    if column == "leaf":
        row = db_session.execute(
            text("SELECT leaf FROM events WHERE leaf_index = :i"), {"i": index}
        ).one()
        leaf = bytearray(row[0])
        leaf[len(leaf) // 2] ^= 1
        _run(
            db_session, "UPDATE events SET leaf = :v WHERE leaf_index = :i", v=bytes(leaf), i=index
        )
    else:
        _run(
            db_session,
            f"UPDATE events SET {column} = {column} || 'x' WHERE leaf_index = :i",
            i=index,
        )
    report = verify_journal(db_session)
    assert report.first_bad_leaf == index, report.problems


def test_consistently_rewritten_leaf_is_caught_by_the_signed_head(
    db_session: Session, journal: dict[str, object]
) -> None:
    """Rewriting a row, its leaf and its leaf hash together still breaks the signed root."""
    from sae.journal.models import Event
    from sae.journal.service import encode_event_leaf, leaf_hash

    base = journal["base"]
    assert isinstance(base, int)
    event = db_session.query(Event).filter(Event.leaf_index == base + 3).one()
    event.actor = "someone else"
    event.leaf = encode_event_leaf(event)
    event.leaf_hash = leaf_hash(event.leaf)
    db_session.flush()
    report = verify_journal(db_session)
    assert not report.ok
    kinds = {p.kind for p in report.problems}
    assert "root" in kinds
    assert "node" in kinds
    assert report.first_bad_leaf is not None
    assert report.first_bad_leaf <= base + 3


def test_deleted_row_names_the_leaf(db_session: Session, journal: dict[str, object]) -> None:
    base = journal["base"]
    assert isinstance(base, int)
    _run(db_session, "DELETE FROM events WHERE leaf_index = :i", i=base + 12)
    report = verify_journal(db_session)
    assert report.first_bad_leaf == base + 12
    assert report.problems[0].kind == "missing"


def test_swapped_rows_name_the_first(db_session: Session, journal: dict[str, object]) -> None:
    base = journal["base"]
    assert isinstance(base, int)
    a, b = base + 5, base + 30
    _run(db_session, "UPDATE events SET leaf_index = -1 WHERE leaf_index = :a", a=a)
    _run(db_session, "UPDATE events SET leaf_index = :a WHERE leaf_index = :b", a=a, b=b)
    _run(db_session, "UPDATE events SET leaf_index = :b WHERE leaf_index = -1", b=b)
    report = verify_journal(db_session)
    assert report.first_bad_leaf == a
    assert {p.leaf_index for p in report.problems} >= {a, b}


def test_inserted_row_is_detected(db_session: Session, journal: dict[str, object]) -> None:
    """A row slipped in at the end (and the counter bumped) is covered by no head: the counter
    disagrees unless bumped, and the heads' roots disagree if leaves are renumbered."""
    base = journal["base"]
    assert isinstance(base, int)
    size = tree_size(db_session)
    # Renumber to make room in the middle, then insert: the signed roots break.
    _run(
        db_session,
        "UPDATE events SET leaf_index = leaf_index + 1000000 WHERE leaf_index >= :i",
        i=base + 15,
    )
    _run(
        db_session, "UPDATE events SET leaf_index = leaf_index - 999999 WHERE leaf_index >= 1000000"
    )
    db_session.execute(
        text(
            "INSERT INTO events (leaf_index, type, actor, occurred_at, transfer_id, unit_id, "
            "object_id, payload, digests, leaf, leaf_hash) SELECT :i, type, actor, occurred_at, "
            "transfer_id, unit_id, object_id, payload, digests, leaf, leaf_hash FROM events "
            "WHERE leaf_index = :src"
        ),
        {"i": base + 15, "src": base + 16},
    )
    db_session.expire_all()
    report = verify_journal(db_session)
    assert not report.ok
    # The copy at 15 is word for word the old 15: the first row that no longer fits is 16.
    assert report.first_bad_leaf in (base + 15, base + 16)
    assert size == tree_size(db_session)


def test_changed_object_digest_names_its_ingest_leaf(
    db_session: Session, journal: dict[str, object]
) -> None:
    base, obj = journal["base"], journal["object"]
    assert isinstance(base, int)
    assert isinstance(obj, DataObject)
    _run(
        db_session,
        "UPDATE data_objects SET sha512 = :d WHERE id = :id",
        d=hashlib.sha512(b"forged").hexdigest(),
        id=obj.id,
    )
    report = verify_journal(db_session)
    assert [(p.kind, p.leaf_index) for p in report.problems] == [("object", base + 10)]


def test_tampered_node_and_head_are_detected(
    db_session: Session, journal: dict[str, object]
) -> None:
    _run(
        db_session,
        'UPDATE journal_nodes SET hash = :h WHERE level = 1 AND "index" = 3',
        h=b"\x00" * 32,
    )
    report = verify_journal(db_session)
    assert [p.kind for p in report.problems] == ["node"]
    assert report.first_bad_leaf == 6


# --------------------------------------------------------------------------- worker processes

# Blocks of 8 leaves checked by 2 worker processes, whatever the journal's size.
PARALLEL: dict[str, Any] = {"workers": 2, "block_level": 3, "parallel_from": 0}
SIZE = 100
HEADS = (20, 37, 64, SIZE)  # inside blocks, at a block's end, at a power of two, at the end
OBJECT_LEAF = 50


@pytest.fixture
def committed_journal(database: Database, builtin_tsa: BuiltinTSA) -> Iterator[Engine]:
    """100 committed events (worker processes read them with their own connections), sealed at
    20, 37, 64 and 100; leaf 50 records an object that the catalog holds."""
    database.reset()
    signer = SigningKey.generate()
    digest = hashlib.sha512(b"content").hexdigest()
    transfer_id, group_id, object_id = new_id(), new_id(), new_id()
    with Session(database.engine) as session, session.begin():
        session.add(Transfer(id=transfer_id, status="OK"))
        session.flush()
        session.add(DataObjectGroup(id=group_id, transfer_id=transfer_id, sip_id="g1"))
        session.flush()
        session.add(
            DataObject(
                id=object_id, transfer_id=transfer_id, group_id=group_id, sip_id="o1", sha512=digest
            )
        )
    specs = [NewEvent(type="test.event", actor="tester", payload={"i": i}) for i in range(SIZE)]
    specs[OBJECT_LEAF] = NewEvent(
        type="ingest.object_stored",
        actor="tester",
        payload={"size": 7},
        transfer_id=transfer_id,
        object_id=object_id,
        object_digests={object_id: digest},
    )
    done = 0
    for size in HEADS:
        with Session(database.engine) as session, session.begin():
            append_events(session, specs[done:size])
        with Session(database.engine) as session, session.begin():
            seal(session, signer=signer, tsa=builtin_tsa, origin="sae.test")
        done = size
    yield database.engine
    database.reset()


def _verify(engine: Engine, **options: Any) -> JournalReport:
    with Session(engine) as session:
        return verify_journal(session, **options)


def _problems(report: JournalReport) -> list[tuple[int | None, str, str]]:
    return sorted(
        ((p.leaf_index, p.kind, p.message) for p in report.problems), key=lambda p: repr(p)
    )


def test_worker_processes_give_the_same_root(committed_journal: Engine) -> None:
    alone = _verify(committed_journal, workers=1)
    pooled = _verify(committed_journal, **PARALLEL)
    assert (alone.workers, pooled.workers) == (1, 2)
    assert alone.ok, alone.problems
    assert pooled.ok, pooled.problems
    with Session(committed_journal) as session:
        stored_root = merkle.root(SIZE, DbNodes(session))
    assert alone.root_hash == pooled.root_hash == stored_root
    counts = (pooled.events, pooled.heads_checked, pooled.objects_checked)
    assert counts == (alone.events, alone.heads_checked, alone.objects_checked) == (SIZE, 4, 1)


TAMPERING = {
    # an event of the sixth block of eight (leaves 40-47), a middle one
    "payload": ["UPDATE events SET payload = '{\"i\": 999}' WHERE leaf_index = 43"],
    "actor": ["UPDATE events SET actor = actor || 'x' WHERE leaf_index = 43"],
    "deleted": ["DELETE FROM events WHERE leaf_index = 43"],
    "swapped": [
        "UPDATE events SET leaf_index = -1 WHERE leaf_index = 43",
        "UPDATE events SET leaf_index = 43 WHERE leaf_index = 70",
        "UPDATE events SET leaf_index = 70 WHERE leaf_index = -1",
    ],
    # a node inside a block (level 1, leaves 42-43) and one above the blocks (level 4, 32-47)
    "node": [
        "UPDATE journal_nodes SET hash = leaf_hash FROM events "
        'WHERE events.leaf_index = 0 AND journal_nodes.level = 1 AND journal_nodes."index" = 21',
        "UPDATE journal_nodes SET hash = leaf_hash FROM events "
        'WHERE events.leaf_index = 0 AND journal_nodes.level = 4 AND journal_nodes."index" = 2',
    ],
    "object": [f"UPDATE data_objects SET sha512 = '{hashlib.sha512(b'forged').hexdigest()}'"],
}
FIRST_BAD = {
    "payload": 43,
    "actor": 43,
    "deleted": 43,
    "swapped": 43,
    "node": 32,
    "object": OBJECT_LEAF,
}


@pytest.mark.parametrize("tampering", sorted(TAMPERING))
def test_worker_processes_name_the_same_first_bad_leaf(
    committed_journal: Engine, tampering: str
) -> None:
    with committed_journal.begin() as conn:
        for sql in TAMPERING[tampering]:
            conn.execute(text(sql))
    alone = _verify(committed_journal, workers=1)
    pooled = _verify(committed_journal, **PARALLEL)
    assert pooled.workers == 2
    assert pooled.first_bad_leaf == alone.first_bad_leaf == FIRST_BAD[tampering]
    assert _problems(pooled) == _problems(alone)
    assert pooled.events == alone.events
    if tampering == "deleted":
        assert [p.kind for p in pooled.problems] == ["missing"]
        assert pooled.root_hash is None


def test_worker_processes_catch_a_consistently_rewritten_row(committed_journal: Engine) -> None:
    """Columns, leaf and leaf hash rewritten together: only the stored nodes and the signed
    roots above leaf 43 can tell, some checked in the workers, some in the parent."""
    from sae.journal.models import Event
    from sae.journal.service import encode_event_leaf, leaf_hash

    with Session(committed_journal) as session, session.begin():
        event = session.query(Event).filter(Event.leaf_index == 43).one()
        event.actor = "someone else"
        event.leaf = encode_event_leaf(event)
        event.leaf_hash = leaf_hash(event.leaf)
    alone = _verify(committed_journal, workers=1)
    pooled = _verify(committed_journal, **PARALLEL)
    assert _problems(pooled) == _problems(alone)
    kinds = {(p.kind, p.leaf_index) for p in pooled.problems}
    # nodes of levels 1-3 are compared inside the block, 4-6 above it; heads 64 and 100 break
    assert {("node", 42), ("node", 40), ("node", 32), ("node", 0)} <= kinds
    assert ("root", 37) in kinds
    assert pooled.first_bad_leaf == 0
