"""RFC 9162 roots and proofs, cross-checked against a literal reference and pymerkle."""

from __future__ import annotations

import hashlib
from functools import cache

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sae.journal import merkle
from sae.journal.merkle import MemoryTree

N = 300
LEAVES = [f"leaf-{i}".encode() for i in range(N)]


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


# --- A reference written straight from the RFC's recursive definitions, on byte lists. ---


@cache
def ref_mth(start: int, end: int) -> bytes:
    n = end - start
    if n == 0:
        return _h(b"")
    if n == 1:
        return _h(b"\x00" + LEAVES[start])
    k = 1
    while k * 2 < n:
        k *= 2
    return _h(b"\x01" + ref_mth(start, start + k) + ref_mth(start + k, end))


def ref_path(m: int, start: int, end: int) -> list[bytes]:
    n = end - start
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*ref_path(m, start, start + k), ref_mth(start + k, end)]
    return [*ref_path(m - k, start + k, end), ref_mth(start, start + k)]


def ref_subproof(m: int, start: int, end: int, b: bool) -> list[bytes]:
    n = end - start
    if m == n:
        return [] if b else [ref_mth(start, end)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*ref_subproof(m, start, start + k, b), ref_mth(start + k, end)]
    return [*ref_subproof(m - k, start + k, end, False), ref_mth(start, start + k)]


@pytest.fixture(scope="module")
def tree() -> MemoryTree:
    t = MemoryTree()
    for leaf in LEAVES:
        t.append(leaf)
    return t


def test_empty_tree_root() -> None:
    assert MemoryTree().root() == hashlib.sha256(b"").digest()


def test_rfc_hash_prefixes() -> None:
    assert merkle.leaf_hash(b"x") == _h(b"\x00x")
    assert merkle.node_hash(b"a", b"b") == _h(b"\x01ab")


def test_roots_match_reference_for_every_size(tree: MemoryTree) -> None:
    for size in range(1, N + 1):
        assert tree.root(size) == ref_mth(0, size), size


def test_inclusion_proofs_for_every_leaf_and_size(tree: MemoryTree) -> None:
    for size in range(1, N + 1):
        root = ref_mth(0, size)
        for index in range(size):
            proof = merkle.inclusion_proof(index, size, tree)
            assert proof == ref_path(index, 0, size), (index, size)
            lh = merkle.leaf_hash(LEAVES[index])
            assert merkle.verify_inclusion(index, size, lh, proof, root)


def test_consistency_proofs_for_every_pair(tree: MemoryTree) -> None:
    for second in range(1, N + 1):
        second_root = ref_mth(0, second)
        for first in range(1, second + 1):
            proof = merkle.consistency_proof(first, second, tree)
            assert proof == ref_subproof(first, 0, second, True), (first, second)
            assert merkle.verify_consistency(first, second, ref_mth(0, first), second_root, proof)


def test_roots_and_paths_match_pymerkle(tree: MemoryTree) -> None:
    pymerkle = pytest.importorskip("pymerkle")
    other = pymerkle.InmemoryTree(algorithm="sha256")
    for size, leaf in enumerate(LEAVES, start=1):
        other.append_entry(leaf)
        assert other.get_root(size) == tree.root(size)
        for first in (1, size // 2 or 1, size):
            p = other.prove_consistency(first, size)
            pymerkle.verify_consistency(other.get_root(first), tree.root(size), p)
    for size in (1, 2, 3, 7, 8, 9, 100, 255, 256, 257, 300):
        for index in range(0, size, 7):
            p = other.prove_inclusion(index + 1, size)
            pymerkle.verify_inclusion(merkle.leaf_hash(LEAVES[index]), tree.root(size), p)
            # pymerkle's path holds the leaf hash first, then the same siblings as RFC 9162.
            assert [*p.path[1:]] == merkle.inclusion_proof(index, size, tree)


def test_wrong_proofs_are_refused(tree: MemoryTree) -> None:
    size, index = 77, 33
    root = tree.root(size)
    proof = merkle.inclusion_proof(index, size, tree)
    lh = merkle.leaf_hash(LEAVES[index])
    assert not merkle.verify_inclusion(index + 1, size, lh, proof, root)
    assert not merkle.verify_inclusion(index, 64, lh, proof, root)
    assert not merkle.verify_inclusion(index, size, merkle.leaf_hash(b"x"), proof, root)
    assert not merkle.verify_inclusion(index, size, lh, proof[:-1], root)
    assert not merkle.verify_inclusion(index, size, lh, [*proof, proof[0]], root)
    assert not merkle.verify_inclusion(size, size, lh, proof, root)
    cproof = merkle.consistency_proof(20, 77, tree)
    r20 = tree.root(20)
    assert merkle.verify_consistency(20, 77, r20, root, cproof)
    assert not merkle.verify_consistency(21, 77, r20, root, cproof)
    assert not merkle.verify_consistency(20, 77, tree.root(19), root, cproof)
    assert not merkle.verify_consistency(20, 77, r20, tree.root(76), cproof)
    assert not merkle.verify_consistency(20, 77, r20, root, cproof[1:])
    assert not merkle.verify_consistency(20, 77, r20, root, [])
    assert not merkle.verify_consistency(0, 77, r20, root, cproof)
    with pytest.raises(merkle.MerkleError):
        merkle.inclusion_proof(5, 5, tree)
    with pytest.raises(merkle.MerkleError):
        merkle.consistency_proof(6, 5, tree)


def test_proofs_read_few_nodes(tree: MemoryTree) -> None:
    class Counting:
        def __init__(self) -> None:
            self.calls = 0
            self.keys = 0

        def get_nodes(self, keys):  # type: ignore[no-untyped-def]
            self.calls += 1
            self.keys += len(keys)
            return tree.get_nodes(keys)

    src = Counting()
    merkle.inclusion_proof(123, 299, src)
    merkle.consistency_proof(123, 299, src)
    merkle.root(299, src)
    assert src.calls == 3
    assert src.keys <= 3 * 2 * 9


@given(st.integers(min_value=1, max_value=1 << 40), st.data())
def test_ranges_tile_with_decreasing_sizes(size: int, data: st.DataObject) -> None:
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    first = data.draw(st.integers(min_value=1, max_value=size))
    for start, end in [
        *merkle.inclusion_ranges(index, size),
        *merkle.consistency_ranges(first, size),
        (0, size),
    ]:
        tiles = merkle.range_nodes(start, end)
        levels = [lv for lv, _ in tiles]
        assert levels == sorted(set(levels), reverse=True)
        assert sum(1 << lv for lv in levels) == end - start
        assert len(tiles) <= 64
