"""Journal segments, without a database: format, determinism, and the verifier's verdicts."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from sae.journal import merkle
from sae.journal.checkpoint import Checkpoint, SigningKey
from sae.journal.segments import (
    SegmentFormatError,
    SegmentHead,
    build_segment,
    parse_header,
    read_segment,
    segment_key,
    verify_segments,
)
from sae.journal.service import encode_leaf
from sae.journal.tsa import BuiltinTSA

AT = dt.datetime(2026, 12, 6, 9, 0, tzinfo=dt.UTC)


def _leaf(index: int) -> bytes:
    return encode_leaf(
        leaf_index=index,
        type="access.object_read",
        actor="token:test:reader",
        occurred_at=AT + dt.timedelta(seconds=index),
        payload={"n": index, "note": "été\u2028ligne"},
        transfer_id=None,
        unit_id=None,
        object_id=None,
        object_digests={},
    )


def _journal(tsa: BuiltinTSA, sizes: list[int]) -> tuple[list[bytes], list[tuple[str, bytes]]]:
    """Leaves and the segments of heads sealed at ``sizes`` (key, bytes)."""
    key = SigningKey.generate()
    leaves = [_leaf(i) for i in range(sizes[-1])]
    tree = merkle.MemoryTree()
    for leaf in leaves:
        tree.append(leaf)
    segments, first = [], 0
    for size in sizes:
        checkpoint = Checkpoint("sae.test", size, tree.root(size), AT + dt.timedelta(minutes=size))
        data = checkpoint.to_bytes()
        token = tsa.timestamp(data)
        head = SegmentHead(
            origin="sae.test",
            tree_size=size,
            root_hash=checkpoint.root_hash,
            timestamp=checkpoint.timestamp,
            checkpoint=data,
            signature=key.sign(data),
            public_key_pem=key.public_pem,
            tsr=token.tsr,
            tsa_chain_pem=token.chain_pem,
            tsa_time=token.gen_time,
        )
        segments.append((segment_key(first, size), build_segment(first, head, leaves[first:size])))
        first = size
    return leaves, segments


def _chunks(data: bytes, size: int = 7) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_a_segment_reads_back_as_its_head_and_leaves(builtin_tsa: BuiltinTSA) -> None:
    leaves, segments = _journal(builtin_tsa, [3, 8])
    key, data = segments[1]
    assert key == "journal/segments/0000000000000003-0000000000000008.jsonl"
    header, body = read_segment(_chunks(data))
    assert (header.first_leaf, header.head.tree_size, header.key) == (3, 8, key)
    assert list(body) == leaves[3:8]
    lines = data.split(b"\n")
    assert lines[-1] == b""
    assert len(lines) == 1 + 5 + 1
    doc = json.loads(lines[0])
    assert list(doc) == sorted(doc)
    assert doc["format"] == "sae-journal-segment/1"
    # Each line after the header is the leaf verbatim: an auditor hashes it as it stands.
    assert merkle.leaf_hash(lines[1]) == merkle.leaf_hash(leaves[3])


def test_the_same_head_always_gives_the_same_bytes(builtin_tsa: BuiltinTSA) -> None:
    _, segments = _journal(builtin_tsa, [4])
    key, data = segments[0]
    header, body = read_segment([data])
    assert build_segment(header.first_leaf, header.head, body) == data


def test_a_leaf_with_a_raw_newline_is_refused(builtin_tsa: BuiltinTSA) -> None:
    _, segments = _journal(builtin_tsa, [1])
    header, _ = read_segment([segments[0][1]])
    with pytest.raises(ValueError, match="line break"):
        build_segment(0, header.head, [b'{"index":0,\n"v":1}'])
    with pytest.raises(ValueError, match="1 leaves given"):
        build_segment(0, SegmentHead(**{**_fields(header.head), "tree_size": 2}), [_leaf(0)])


def _fields(head: SegmentHead) -> dict[str, object]:
    return {name: getattr(head, name) for name in SegmentHead.__slots__}


def test_a_header_not_canonical_or_cut_short_is_refused(builtin_tsa: BuiltinTSA) -> None:
    _, segments = _journal(builtin_tsa, [2])
    data = segments[0][1]
    line = data.split(b"\n")[0]
    with pytest.raises(SegmentFormatError, match="canonical"):
        parse_header(json.dumps(json.loads(line), sort_keys=True).encode())
    _, body = read_segment([data[:-1]])
    with pytest.raises(SegmentFormatError, match="not terminated"):
        list(body)


def test_a_sound_journal_verifies_to_the_last_root(builtin_tsa: BuiltinTSA) -> None:
    leaves, segments = _journal(builtin_tsa, [1, 5, 6, 13])
    verdict = verify_segments((key, _chunks(data)) for key, data in segments)
    assert verdict.ok, verdict.problems
    tree = merkle.MemoryTree()
    for leaf in leaves:
        tree.append(leaf)
    assert (verdict.tree_size, verdict.root_hash, verdict.segments) == (13, tree.root(), 4)


def test_an_altered_leaf_is_named_by_its_segment(builtin_tsa: BuiltinTSA) -> None:
    _, segments = _journal(builtin_tsa, [2, 5, 9])
    key, data = segments[1]
    segments[1] = (key, data.replace(b'"n":3', b'"n":4'))
    verdict = verify_segments((k, [d]) for k, d in segments)
    assert [(p.key, p.kind) for p in verdict.problems] == [(key, "root")]


def test_a_missing_segment_is_a_gap_naming_its_neighbours(builtin_tsa: BuiltinTSA) -> None:
    _, segments = _journal(builtin_tsa, [2, 5, 9])
    del segments[1]
    verdict = verify_segments((k, [d]) for k, d in segments)
    assert [p.kind for p in verdict.problems] == ["gap"]
    assert segments[0][0] in verdict.problems[0].message
    assert verdict.problems[0].key == segments[1][0]


def test_a_bad_signature_token_index_or_count_is_named(builtin_tsa: BuiltinTSA) -> None:
    _, segments = _journal(builtin_tsa, [2, 5, 9])
    header, body = read_segment([segments[1][1]])
    leaves = list(body)
    wrong_sig = SegmentHead(**{**_fields(header.head), "signature": b"\x30\x00"})
    segments[1] = (segments[1][0], build_segment(2, wrong_sig, leaves))
    header2, body2 = read_segment([segments[2][1]])
    wrong_tsr = SegmentHead(**{**_fields(header2.head), "tsr": header.head.tsr})
    segments[2] = (segments[2][0], build_segment(5, wrong_tsr, body2))
    verdict = verify_segments((k, [d]) for k, d in segments)
    assert [(p.key, p.kind) for p in verdict.problems] == [
        (segments[1][0], "head"),
        (segments[2][0], "head"),
    ]
    assert "signature" in verdict.problems[0].message
    assert "time-stamp" in verdict.problems[1].message

    _, fresh = _journal(builtin_tsa, [3])
    key, data = fresh[0]
    lines = data.split(b"\n")
    swapped = b"\n".join([lines[0], lines[2], lines[1], lines[3], b""])
    verdict = verify_segments([(key, [swapped])])
    assert {p.kind for p in verdict.problems} == {"index", "root"}
    dropped = b"\n".join([lines[0], lines[1], lines[2], b""])
    verdict = verify_segments([(key, [dropped])])
    assert [p.kind for p in verdict.problems] == ["count"]
