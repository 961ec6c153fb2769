"""The journal on a real database (SQLite and PostgreSQL): appends, stored nodes, heads, proofs."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from sae.journal import merkle
from sae.journal.checkpoint import Checkpoint, SigningKey, verify_signature
from sae.journal.errors import InvalidProofRequest
from sae.journal.models import Event, JournalNode
from sae.journal.service import (
    DbNodes,
    NewEvent,
    append_event,
    append_events,
    consistency,
    covering_head,
    inclusion,
    seal,
    seal_due,
    tree_size,
)
from sae.journal.tsa import BuiltinTSA, verify_response
from tests.journal.helpers import JSON_VALUES


@pytest.fixture(scope="module")
def signer() -> SigningKey:
    return SigningKey.generate()


def _append(session: Session, n: int, prefix: str = "e") -> list[Event]:
    return append_events(
        session,
        [
            NewEvent(type="test.event", actor="tester", payload={"i": i, "name": f"{prefix}{i}"})
            for i in range(n)
        ],
    )


def test_append_gives_consecutive_leaves_and_stored_nodes(db_session: Session) -> None:
    base = tree_size(db_session)
    first = append_event(
        db_session,
        type="ingest.object_stored",
        actor="token:x:depositor",
        payload={"size": 3, "when": "2026", "tuple": (1, 2)},
        object_id="obj-1",
        object_digests={"obj-1": "ab" * 64},
    )
    assert first.leaf_index == base
    leaf = json.loads(first.leaf)
    assert leaf["index"] == base
    assert leaf["sha512"] == {"obj-1": "ab" * 64}
    assert leaf["data"]["tuple"] == [1, 2]
    assert leaf["v"] == 1
    rows = _append(db_session, 40)
    assert [r.leaf_index for r in rows] == list(range(base + 1, base + 41))
    assert tree_size(db_session) == base + 41

    mem = merkle.MemoryTree()
    for e in db_session.scalars(select(Event).order_by(Event.leaf_index)):
        mem.append(e.leaf)
    size = mem.size
    nodes = DbNodes(db_session)
    assert merkle.root(size, nodes) == mem.root()
    stored = db_session.scalar(select(JournalNode.hash).where(JournalNode.level == 1))
    assert stored == mem.levels[1][0]
    for index in (0, size // 2, size - 1):
        root, path = inclusion(db_session, index, size)
        assert root == mem.root()
        assert merkle.verify_inclusion(index, size, mem.levels[0][index], path, root)
    for first_size in (1, size // 3, size):
        proof = consistency(db_session, first_size, size)
        assert proof.first_root == mem.root(first_size)
        assert merkle.verify_consistency(
            first_size, size, proof.first_root, proof.second_root, proof.proof
        )


def test_proofs_cost_a_constant_number_of_queries(db_session: Session) -> None:
    _append(db_session, 300)
    size = tree_size(db_session)
    nodes = DbNodes(db_session)
    merkle.root_and_inclusion_proof(size // 2, size, nodes)
    assert nodes.reads <= 2
    nodes = DbNodes(db_session)
    merkle.consistency_proof(size // 3, size, nodes)
    assert nodes.reads <= 2


def test_bad_proof_requests_are_refused(db_session: Session) -> None:
    _append(db_session, 3)
    size = tree_size(db_session)
    with pytest.raises(InvalidProofRequest):
        consistency(db_session, 0, size)
    with pytest.raises(InvalidProofRequest):
        consistency(db_session, 2, size + 1)
    with pytest.raises(InvalidProofRequest):
        inclusion(db_session, size, size)


def test_seal_signs_and_timestamps_heads(
    db_session: Session, signer: SigningKey, builtin_tsa: BuiltinTSA
) -> None:
    _append(db_session, 5)
    head = seal(db_session, signer=signer, tsa=builtin_tsa, origin="sae.test")
    assert head is not None
    size = tree_size(db_session)
    assert head.tree_size == size
    cp = Checkpoint.from_bytes(head.checkpoint)
    assert (cp.tree_size, cp.root_hash, cp.origin) == (size, head.root_hash, "sae.test")
    assert head.root_hash == merkle.root(size, DbNodes(db_session))
    assert verify_signature(head.public_key_pem, head.checkpoint, head.signature)
    import hashlib

    verify_response(
        head.tsr, digest=hashlib.sha256(head.checkpoint).digest(), anchors=builtin_tsa.anchors
    )
    # Nothing new: sealing again returns the same head.
    again = seal(db_session, signer=signer, tsa=builtin_tsa, origin="sae.test")
    assert again is not None
    assert again.id == head.id
    assert not seal_due(db_session, interval=dt.timedelta(0))
    _append(db_session, 4)
    assert seal_due(db_session, interval=dt.timedelta(0))
    assert not seal_due(db_session, interval=dt.timedelta(hours=1))
    later = seal(db_session, signer=signer, tsa=builtin_tsa, origin="sae.test")
    assert later is not None
    assert later.tree_size == size + 4
    proof = consistency(db_session, head.tree_size, later.tree_size)
    assert proof.first_root == head.root_hash
    assert proof.second_root == later.root_hash
    assert merkle.verify_consistency(
        head.tree_size, later.tree_size, head.root_hash, later.root_hash, proof.proof
    )
    covering = covering_head(db_session, size - 1)
    assert covering is not None
    assert covering.id == head.id
    covering = covering_head(db_session, size)
    assert covering is not None
    assert covering.id == later.id
    assert covering_head(db_session, size + 4) is None


@given(
    payload=st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=4),
    actor=st.text(max_size=10),
    object_id=st.none() | st.text(max_size=8),
    digests=st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=3),
)
def test_fast_leaf_equals_reference_encoding(
    payload: dict[str, object], actor: str, object_id: str | None, digests: dict[str, str]
) -> None:
    """The hot path's assembled leaf is byte for byte the reference encoding."""
    from sae.journal.service import _compose_leaf, _json_text, canonical_json, encode_leaf

    when = dt.datetime(2026, 11, 29, 8, 0, 0, 12, tzinfo=dt.UTC)
    spec = NewEvent(
        type="t.x", actor=actor, payload=payload, object_id=object_id, object_digests=digests
    )
    fast = _compose_leaf(
        7, spec, "2026-11-29T08:00:00.000012Z", _json_text(payload), _json_text(digests)
    )
    reference = encode_leaf(
        leaf_index=7,
        type="t.x",
        actor=actor,
        occurred_at=when,
        payload=canonical_json(payload),
        transfer_id=None,
        unit_id=None,
        object_id=object_id,
        object_digests=digests,
    )
    assert fast == reference
    assert json.loads(fast)["data"] == canonical_json(payload)


def test_non_string_keys_are_normalised_before_hashing(db_session: Session) -> None:
    from sae.journal.verification import verify_journal

    append_events(db_session, [NewEvent(type="t", actor="a", payload={"m": {10: "x", 9: "y"}})])
    append_event(db_session, type="t", actor="a", payload={"k": (1, 2), "m": {2: 1, 10: 0}})
    db_session.expire_all()
    assert verify_journal(db_session, check_objects=False).ok
