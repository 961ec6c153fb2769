"""Typed helpers to make journals, heads and bundles without a database."""

from __future__ import annotations

import datetime as dt
import hashlib

from hypothesis import strategies as st

from sae.journal import merkle
from sae.journal.bundle import ProofMaterial, build_bundle
from sae.journal.checkpoint import Checkpoint, SigningKey
from sae.journal.service import encode_leaf
from sae.journal.tsa import TimestampAuthority

CONTENT = b"%PDF-1.4 deliberation du conseil municipal\n"
OBJECT_ID = "0b0e3c9a-0000-4000-8000-000000000001"
UNIT_ID = "0b0e3c9a-0000-4000-8000-0000000000aa"
TITLE = "Délibération n° 12"
PRODUCER = "FRAD000_URBA"

#: Any JSON value, small: what a journal payload may hold.
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)


def make_bundle(
    tsa: TimestampAuthority, key: SigningKey, *, size: int = 37, index: int = 21
) -> bytes:
    """A bundle for ``CONTENT`` recorded at leaf ``index`` of a tree of ``size`` leaves."""
    tree = merkle.MemoryTree()
    sha512 = hashlib.sha512(CONTENT).hexdigest()
    leaf_of_object = b""
    for i in range(size):
        is_object = i == index
        leaf = encode_leaf(
            leaf_index=i,
            type="ingest.object_stored" if is_object else "access.read",
            actor="token:test:depositor",
            occurred_at=dt.datetime(2026, 11, 29, 8, 0, i % 60, tzinfo=dt.UTC),
            payload=(
                {"size": len(CONTENT), "title": TITLE, "producer": PRODUCER}
                if is_object
                else {"n": i}
            ),
            transfer_id=None,
            unit_id=UNIT_ID if is_object else None,
            object_id=OBJECT_ID if is_object else None,
            object_digests={OBJECT_ID: sha512} if is_object else {},
        )
        if is_object:
            leaf_of_object = leaf
        tree.append(leaf)
    head = Checkpoint("sae.test", size, tree.root(), dt.datetime.now(dt.UTC))
    cp = head.to_bytes()
    token = tsa.timestamp(cp)
    return build_bundle(
        ProofMaterial(
            object_info={
                "object_id": OBJECT_ID,
                "unit_id": UNIT_ID,
                "size": len(CONTENT),
                "sha512": sha512,
                "title": TITLE,
                "producer": PRODUCER,
                "leaf_index": index,
            },
            leaf=leaf_of_object,
            leaf_index=index,
            tree_size=size,
            audit_path=merkle.inclusion_proof(index, size, tree),
            checkpoint=cp,
            signature=key.sign(cp),
            public_key_pem=key.public_pem,
            tsr=token.tsr,
            tsa_chain_pem=token.chain_pem,
        )
    )
