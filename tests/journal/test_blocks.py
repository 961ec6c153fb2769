"""The block reader re-derives a leaf from the stored text exactly as ``encode_leaf`` does."""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from sae.journal.blocks import BlockTask, blocks, digests_of, leaf_time, payload_text
from sae.journal.service import _json_text, canonical_json, compose_leaf, encode_leaf
from tests.journal.helpers import JSON_VALUES


def _stored_forms(value: object) -> list[str]:
    """The texts a JSON column may hold: as the batch path writes it, as the ORM writes it."""
    return [_json_text(value), json.dumps(value), json.dumps(value, indent=1, ensure_ascii=False)]


@given(
    payload=st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=4),
    digests=st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=3),
    actor=st.text(max_size=10),
    object_id=st.none() | st.text(max_size=8),
    microsecond=st.sampled_from([0, 12, 54701, 999999]),
)
def test_leaf_from_stored_text_is_the_reference_encoding(
    payload: dict[str, object],
    digests: dict[str, str],
    actor: str,
    object_id: str | None,
    microsecond: int,
) -> None:
    when = dt.datetime(2026, 11, 29, 8, 0, 0, microsecond, tzinfo=dt.UTC)
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
    stamps: list[object] = [
        when.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f"),  # SQLite's stored text
        when.astimezone(ZoneInfo("Europe/Paris")),  # PostgreSQL in another time zone
        when.replace(tzinfo=None),
    ]
    for stored_payload in _stored_forms(payload):
        for stored_digests in _stored_forms(digests):
            for stamp in stamps:
                digests_text, by_object = digests_of(stored_digests)
                assert by_object == digests
                derived = compose_leaf(
                    leaf_index=7,
                    type="t.x",
                    actor=actor,
                    at=leaf_time(stamp),
                    payload_text=payload_text(stored_payload),
                    digests_text=digests_text,
                    transfer_id=None,
                    unit_id=None,
                    object_id=object_id,
                )
                assert derived == reference


def test_stored_text_is_never_taken_for_canonical_unless_it_is() -> None:
    """A row whose text matches a forged, non-canonical leaf must not pass as given by its
    columns: the text is decoded and re-encoded, as the ORM path did."""
    assert payload_text('{"b":1,"a":2}') == '{"a":2,"b":1}'
    assert payload_text('{"a":1,"a":2}') == '{"a":2}'
    assert payload_text('{"a":1.0e2}') == '{"a":100.0}'
    assert payload_text('{"a":"\\u00e9"}') == '{"a":"é"}'
    assert payload_text(None) == "null"
    assert digests_of('{"o":"AB"}') == ('{"o":"AB"}', {"o": "AB"})
    assert digests_of('{"o": "AB"}') == ('{"o":"AB"}', {"o": "AB"})
    assert digests_of('{"b":"1","a":"2"}')[0] == '{"a":"2","b":"1"}'
    assert digests_of('{"o":"\\u00e9"}')[0] == '{"o":"é"}'
    assert digests_of("null") == ("{}", {})
    assert leaf_time("2026-11-29 08:00:00.000000") == "2026-11-29T08:00:00Z"
    assert leaf_time("2026-11-29 08:00:00.000010") == "2026-11-29T08:00:00.000010Z"
    assert leaf_time("2026-11-29 09:00:00+01:00") == "2026-11-29T08:00:00Z"


def test_blocks_are_aligned_and_carry_their_heads() -> None:
    tasks = blocks(20, 3, [3, 8, 9, 20, 21], check_objects=True)
    assert [(t.start, t.end) for t in tasks] == [(0, 8), (8, 16), (16, 20)]
    assert [t.head_sizes for t in tasks] == [(3, 8), (9,), (20,)]
    assert all(t.bound == 20 and t.level == 3 for t in tasks)
    assert blocks(0, 3, [], check_objects=True) == []
    assert isinstance(tasks[0], BlockTask)
