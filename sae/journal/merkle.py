"""RFC 9162 §2.1 Merkle tree hashing, proofs and their verification (pure functions).

The tree is never rebuilt to answer a question. Every node of the tree that a root, an
inclusion proof or a consistency proof needs is the hash of an *aligned perfect subtree*: the
``2**level`` leaves starting at ``index * 2**level``. Such nodes never change once their last
leaf is appended, so the log stores them as it grows (see :func:`append_leaf`) and a proof costs
one batched read of O(log n) nodes (see :class:`NodeSource`).

Proof generation works in two steps: the RFC's recursive definitions are walked on leaf ranges
only (:func:`inclusion_ranges`, :func:`consistency_ranges`), then each range is folded from the
stored nodes that tile it (:func:`range_nodes`, :func:`range_hash`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

# (level, index): the aligned perfect subtree over leaves [index << level, (index + 1) << level).
NodeKey = tuple[int, int]

LeafRange = tuple[int, int]
"""A half-open range of leaf indices ``[start, end)``."""


class MerkleError(ValueError):
    """A size, index or proof is out of range or malformed."""


def leaf_hash(data: bytes) -> bytes:
    """Return the RFC 9162 leaf hash ``SHA-256(0x00 || data)``."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the RFC 9162 interior node hash ``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly smaller than ``n`` (``n >= 2``), the RFC's ``k``."""
    return 1 << ((n - 1).bit_length() - 1)


def range_nodes(start: int, end: int) -> list[NodeKey]:
    """Tile the leaf range ``[start, end)`` with aligned perfect subtrees, left to right.

    For the ranges that RFC 9162's recursion produces (every range used by a root or a proof),
    the tiles have strictly decreasing sizes, so the range's hash is the right fold of the tiles
    (:func:`range_hash`).
    """
    if not 0 <= start < end:
        raise MerkleError(f"empty or negative leaf range [{start}, {end})")
    tiles: list[NodeKey] = []
    while start < end:
        level = (end - start).bit_length() - 1
        # The alignment constraint only bites for ranges outside the RFC recursion; keeping
        # it makes the function total instead of silently wrong.
        while start & ((1 << level) - 1):
            level -= 1
        tiles.append((level, start >> level))
        start += 1 << level
    return tiles


def fold_tiles(hashes: Sequence[bytes]) -> bytes:
    """Hash tiles of decreasing size into the RFC's MTH of their union (right fold)."""
    if not hashes:
        raise MerkleError("no tiles to fold")
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


class NodeSource(Protocol):
    """Where aligned perfect subtree hashes come from (memory, a database table...)."""

    def get_nodes(self, keys: Sequence[NodeKey]) -> Mapping[NodeKey, bytes]:
        """Return the hash of every requested node (level 0 = leaf hashes); all must exist."""
        ...


def range_hash(start: int, end: int, nodes: Mapping[NodeKey, bytes]) -> bytes:
    """Return MTH(D[start:end]) from already fetched nodes."""
    try:
        return fold_tiles([nodes[key] for key in range_nodes(start, end)])
    except KeyError as exc:
        raise MerkleError(f"missing stored node {exc.args[0]}") from exc


def _fetch(ranges: Iterable[LeafRange], source: NodeSource) -> Mapping[NodeKey, bytes]:
    keys: list[NodeKey] = []
    seen: set[NodeKey] = set()
    for start, end in ranges:
        for key in range_nodes(start, end):
            if key not in seen:
                seen.add(key)
                keys.append(key)
    return source.get_nodes(keys)


def inclusion_ranges(index: int, size: int) -> list[LeafRange]:
    """Leaf ranges whose hashes form the audit path PATH(index, D[size]) (RFC 9162 §2.1.3.1).

    Returned leaf-to-root, the order in which a verifier consumes them.
    """
    if not 0 <= index < size:
        raise MerkleError(f"leaf index {index} is outside a tree of size {size}")
    out: list[LeafRange] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo += k
    out.reverse()
    return out


def consistency_ranges(first: int, second: int) -> list[LeafRange]:
    """Leaf ranges whose hashes form PROOF(first, D[second]) (RFC 9162 §2.1.4.1)."""
    if not 0 < first <= second:
        raise MerkleError(f"no consistency proof from size {first} to size {second}")
    out: list[LeafRange] = []
    lo, hi, m = 0, second, first
    whole = True  # the RFC's "b": is the current subtree part of the first tree as a whole?
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo += k
            m -= k
            whole = False
    if not whole:
        out.append((lo, hi))
    out.reverse()
    return out


def root(size: int, source: NodeSource) -> bytes:
    """Return the root hash of the first ``size`` leaves."""
    if size < 0:
        raise MerkleError(f"negative tree size {size}")
    if size == 0:
        return EMPTY_ROOT
    return range_hash(0, size, _fetch([(0, size)], source))


def inclusion_proof(index: int, size: int, source: NodeSource) -> list[bytes]:
    """Return the RFC 9162 audit path of leaf ``index`` in the tree of ``size`` leaves."""
    ranges = inclusion_ranges(index, size)
    nodes = _fetch(ranges, source)
    return [range_hash(s, e, nodes) for s, e in ranges]


def consistency_proof(first: int, second: int, source: NodeSource) -> list[bytes]:
    """Return the RFC 9162 consistency proof between tree sizes ``first`` and ``second``."""
    ranges = consistency_ranges(first, second)
    nodes = _fetch(ranges, source)
    return [range_hash(s, e, nodes) for s, e in ranges]


def root_and_inclusion_proof(
    index: int, size: int, source: NodeSource
) -> tuple[bytes, list[bytes]]:
    """Return ``(root, audit path)`` with a single fetch of stored nodes."""
    ranges = inclusion_ranges(index, size)
    nodes = _fetch([*ranges, (0, size)], source)
    return range_hash(0, size, nodes), [range_hash(s, e, nodes) for s, e in ranges]


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root_hash: bytes
) -> bool:
    """Check an audit path for the leaf *hash* ``leaf`` (RFC 9162 §2.1.3.2)."""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root_hash


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Check a consistency proof between two tree heads (RFC 9162 §2.1.4.2)."""
    if not 0 < first <= second:
        return False
    if first == second:
        return not proof and first_root == second_root
    if not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_root and sr == second_root and sn == 0


def peak_levels(size: int) -> list[int]:
    """Levels of the perfect subtrees ("peaks") that tile a tree of ``size`` leaves, left first."""
    return [level for level in range(size.bit_length() - 1, -1, -1) if size >> level & 1]


def peak_keys(size: int) -> list[NodeKey]:
    """Node keys of the peaks of a tree of ``size`` leaves, left first."""
    return range_nodes(0, size) if size else []


def append_leaf(
    size: int, peaks: Sequence[bytes], new_leaf_hash: bytes
) -> tuple[list[tuple[NodeKey, bytes]], list[bytes]]:
    """Append one leaf hash to a tree of ``size`` leaves whose peaks are ``peaks``.

    Returns the interior nodes completed by this leaf (level >= 1, to be stored) and the new
    peaks. Amortised cost: one node per leaf.
    """
    if len(peaks) != bin(size).count("1"):
        raise MerkleError(f"{len(peaks)} peaks do not describe a tree of size {size}")
    stack = list(peaks)
    created: list[tuple[NodeKey, bytes]] = []
    cur, level, index = new_leaf_hash, 0, size
    while size >> level & 1:
        cur = node_hash(stack.pop(), cur)
        level += 1
        index >>= 1
        created.append(((level, index), cur))
    stack.append(cur)
    return created, stack


def root_from_peaks(peaks: Sequence[bytes]) -> bytes:
    """Root hash of a tree given its peaks (left first)."""
    return fold_tiles(peaks) if peaks else EMPTY_ROOT


class MemoryTree:
    """An in-memory log keeping every aligned subtree hash; a reference :class:`NodeSource`."""

    def __init__(self) -> None:
        self.levels: list[list[bytes]] = [[]]
        self._peaks: list[bytes] = []

    @property
    def size(self) -> int:
        """Number of leaves."""
        return len(self.levels[0])

    def append(self, data: bytes) -> int:
        """Append a leaf's bytes; return its index."""
        return self.append_hash(leaf_hash(data))

    def append_hash(self, lh: bytes) -> int:
        """Append a leaf hash; return its index."""
        index = self.size
        created, self._peaks = append_leaf(index, self._peaks, lh)
        self.levels[0].append(lh)
        for (level, _idx), h in created:
            if len(self.levels) <= level:
                self.levels.append([])
            self.levels[level].append(h)
        return index

    def get_nodes(self, keys: Sequence[NodeKey]) -> Mapping[NodeKey, bytes]:
        """Return stored node hashes."""
        return {(lv, ix): self.levels[lv][ix] for lv, ix in keys}

    def root(self, size: int | None = None) -> bytes:
        """Root of the first ``size`` leaves (all by default)."""
        return root(self.size if size is None else size, self)
