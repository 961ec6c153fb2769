"""A deposit's 201 waits for its journal leaves on every offer (issue 17 item 2): the tail.

The process's sealer is stopped (a server whose sealer has not sealed yet, or whose TSA is
down): no head, no segment covers the deposits. Each 201 still comes after a tail holding its
leaves is on the offer, and a catalogue lost then is rebuilt with those very leaves, at their
indices — not from the descriptions alone. What must stop the rebuild does: a tail altered,
signed by another key, or one missing before another.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from sae.config import Settings
from sae.db import make_engine, make_sessionmaker
from sae.journal.checkpoint import Checkpoint, SigningKey
from sae.journal.models import Event
from sae.journal.segments import PREFIX as SEGMENTS
from sae.journal.service import tree_size
from sae.journal.tails import PREFIX as TAILS
from sae.journal.tails import TailHeader, parse_tail_key, read_tail, write_tail
from sae.recovery.errors import SegmentInvalid
from sae.recovery.rebuild import rebuild
from sae.storage.fsck import reconcile
from tests.conftest import TEST_RULES_CSV, Api
from tests.recovery.test_rebuild import (
    get_json,
    local_offer,
    publish,
    rewrite,
    running,
    sqlite_target,
)
from tests.sipfactory import FileSpec, SipSpec, UnitSpec, build_zip, simple_sip


@dataclass
class Lost:
    """What the live catalogue said just before it was lost."""

    sealed: int  # leaves a published segment covers
    size: int  # leaves committed
    leaves: list[bytes]
    transfers: dict[str, Any]
    units: dict[str, Any]


def _size(api: Api) -> int:
    with api.runtime.sessions() as session:
        return tree_size(session)


def _leaves(sessions: Any, end: int) -> list[bytes]:
    with sessions() as session:
        rows = session.execute(
            select(Event.leaf).where(Event.leaf_index < end).order_by(Event.leaf_index)
        )
        return [bytes(leaf) for (leaf,) in rows]


def _two_files(message_id: str) -> bytes:
    return build_zip(
        SipSpec(
            message_id=message_id,
            files=[
                FileSpec(uri="Content/a.pdf", data=b"%PDF-1.4\n" + message_id.encode()),
                FileSpec(uri="Content/b.txt", data=b"bonjour " + message_id.encode()),
            ],
            units=[
                UnitSpec(
                    id="U1",
                    title="Dossier",
                    children=[
                        UnitSpec(id="U2", title="A", files=[0]),
                        UnitSpec(id="U3", title="B", files=[1]),
                    ],
                )
            ],
        )
    )


def _deposit_unsealed(settings: Settings) -> Lost:
    with running(settings) as api:
        api.load_rules(TEST_RULES_CSV)
        first = api.deposit(build_zip(simple_sip("MSG-TAIL-1")))
        assert first.status_code == 201, first.text
        publish(api)  # a head and its segment over everything so far
        sealed = _size(api)
        api.runtime.sealer.stop()  # from now on, nothing seals nor publishes
        transfers: dict[str, Any] = {}
        units: dict[str, Any] = {}
        for data in (build_zip(simple_sip("MSG-TAIL-2")), _two_files("MSG-TAIL-3")):
            response = api.deposit(data)
            assert response.status_code == 201, response.text
            reply = response.json()
            transfers[reply["transfer_id"]] = get_json(
                api, f"/api/v1/transfers/{reply['transfer_id']}"
            )
            for unit in reply["units"]:
                units[unit["id"]] = get_json(api, f"/api/v1/units/{unit['id']}")
        size = _size(api)
        return Lost(sealed, size, _leaves(api.runtime.sessions, size), transfers, units)


@pytest.fixture
def lost(settings: Settings) -> Lost:
    return _deposit_unsealed(settings)


def _tails(settings: Settings) -> list[str]:
    return sorted(local_offer(settings).list_keys(TAILS))


def test_every_201_comes_after_a_tail_holding_its_leaves(settings: Settings, lost: Lost) -> None:
    segment_ends = [
        int(k.rsplit("-", 1)[1].split(".")[0]) for k in local_offer(settings).list_keys(SEGMENTS)
    ]
    assert max(segment_ends) == lost.sealed  # no segment covers the last two deposits
    spans = [parse_tail_key(key) for key in _tails(settings)]
    assert all(span is not None for span in spans)
    ends = {span[1] for span in spans if span is not None}
    for transfer in lost.transfers.values():
        leaf = transfer["journal"]["leaf_index"]
        assert transfer["journal"]["tree_size"] is None  # no head yet: only the tail
        assert any(end > leaf for end in ends)
    assert max(ends) == lost.size
    # The tail's leaves are the catalogue's, its checkpoint signed by SAE's key.
    offer = local_offer(settings)
    last = max(_tails(settings), key=lambda key: parse_tail_key(key) or (0, 0))
    header, leaves = read_tail(offer.get(last))
    assert header.fault() is None
    assert list(leaves) == lost.leaves[header.first_leaf :]


def test_a_catalogue_lost_before_any_segment_comes_back_with_the_deposits_leaves(
    settings: Settings, lost: Lost, tmp_path: Path
) -> None:
    target = sqlite_target(tmp_path)
    report = rebuild(settings, "local", target)
    assert report.tails >= 1
    assert report.recovered == []  # back by their own leaves, not from their descriptions
    engine = make_engine(target)
    try:
        # Every acknowledged leaf, at its index, byte for byte; the rebuild's own come after.
        assert _leaves(make_sessionmaker(engine), lost.size) == lost.leaves
    finally:
        engine.dispose()
    assert report.admin_token_path is not None
    token = report.admin_token_path.read_text().strip()
    with running(settings.model_copy(update={"database_url": target})) as api:
        for transfer_id, before in lost.transfers.items():
            after = get_json(api, f"/api/v1/transfers/{transfer_id}", token)
            # Only the head differs: none covered the leaves before the loss; the rebuild's does.
            assert after["journal"]["leaf_index"] == before["journal"]["leaf_index"]
            assert after["journal"]["tree_size"] is not None
            assert {k: v for k, v in after.items() if k != "journal"} == {
                k: v for k, v in before.items() if k != "journal"
            }
        for unit_id, before in lost.units.items():
            assert get_json(api, f"/api/v1/units/{unit_id}", token) == before


def test_fsck_knows_the_tails(settings: Settings, lost: Lost) -> None:
    from sae.runtime import Runtime

    runtime = Runtime.open(settings)
    try:
        with runtime.sessions() as session:
            findings = reconcile(session, runtime.offer_set)
    finally:
        runtime.engine.dispose()
    assert not [f for f in findings if f.key.startswith(TAILS)], findings


def test_an_altered_tail_stops_the_rebuild(settings: Settings, lost: Lost, tmp_path: Path) -> None:
    offer = local_offer(settings)
    key = _tails(settings)[-1]
    data = b"".join(offer.get(key))
    header_line, _, rest = data.partition(b"\n")
    leaves = rest.split(b"\n")[:-1]
    doc = json.loads(leaves[-1])
    doc["actor"] = "someone-else"
    leaves[-1] = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    rewrite(offer, key, header_line + b"\n" + b"".join(leaf + b"\n" for leaf in leaves))
    with pytest.raises(SegmentInvalid) as stopped:
        rebuild(settings, "local", sqlite_target(tmp_path))
    assert stopped.value.key == key
    assert stopped.value.kind == "root"


def test_a_tail_signed_by_another_key_stops_the_rebuild(
    settings: Settings, lost: Lost, tmp_path: Path
) -> None:
    import io

    offer = local_offer(settings)
    key = _tails(settings)[-1]
    header, leaves = read_tail(offer.get(key))
    other = SigningKey.generate()
    forged = TailHeader(
        origin=header.origin,
        first_leaf=header.first_leaf,
        tree_size=header.tree_size,
        root_hash=header.root_hash,
        checkpoint=header.checkpoint,
        signature=other.sign(header.checkpoint),
        public_key_pem=other.public_pem,
    )
    out = io.BytesIO()
    write_tail(out, forged, leaves)
    rewrite(offer, key, out.getvalue())
    with pytest.raises(SegmentInvalid) as stopped:
        rebuild(settings, "local", sqlite_target(tmp_path))
    assert stopped.value.key == key
    assert "not this SAE's" in str(stopped.value.detail)


def test_a_tail_missing_before_another_stops_the_rebuild(
    settings: Settings, lost: Lost, tmp_path: Path
) -> None:
    tails = [key for key in _tails(settings) if (parse_tail_key(key) or (0, 0))[1] > lost.sealed]
    assert len(tails) >= 2  # one per deposit: they came one after the other
    rewrite(local_offer(settings), tails[0], None)
    with pytest.raises(SegmentInvalid) as stopped:
        rebuild(settings, "local", sqlite_target(tmp_path))
    assert stopped.value.kind == "gap"
    assert stopped.value.key == tails[1]


def test_no_201_when_the_tail_cannot_be_written(settings: Settings) -> None:
    """The transfer is committed, its description on the offer; its leaves are not: 503
    naming it, and the same SIP sent again answers 409."""
    with running(settings) as api:
        api.load_rules(TEST_RULES_CSV)
        api.runtime.sealer.stop()
        offer = local_offer(settings)
        blocker = offer.root / "data" / TAILS.rstrip("/")
        blocker.parent.mkdir(parents=True, exist_ok=True)
        blocker.write_bytes(b"not a directory: the offer cannot take a tail")
        data = build_zip(simple_sip("MSG-TAIL-KO"))
        response = api.deposit(data)
        assert response.status_code == 503, response.text
        problem = response.json()
        assert problem["code"] == "ingest.journal_not_on_offers"
        transfer_id = problem["detail"].split()[1]
        assert get_json(api, f"/api/v1/transfers/{transfer_id}")["status"] == "OK"
        again = api.deposit(data)
        assert again.status_code == 409, again.text


def test_a_tail_header_round_trips() -> None:
    import datetime as dt
    import io

    key = SigningKey.generate()
    checkpoint = Checkpoint("sae.test", 3, b"\x01" * 32, dt.datetime.now(dt.UTC)).to_bytes()
    header = TailHeader(
        "sae.test", 1, 3, b"\x01" * 32, checkpoint, key.sign(checkpoint), key.public_pem
    )
    out = io.BytesIO()
    write_tail(out, header, [b'{"a":1}', b'{"b":2}'])
    parsed, leaves = read_tail([out.getvalue()])
    assert parsed == header
    assert list(leaves) == [b'{"a":1}', b'{"b":2}']
    assert parsed.fault() is None
    bad = TailHeader(
        "sae.test", 1, 3, b"\x02" * 32, checkpoint, key.sign(checkpoint), key.public_pem
    )
    assert "does not match" in (bad.fault() or "")
    with pytest.raises(ValueError, match="1 leaves given"):
        write_tail(io.BytesIO(), header, [b'{"a":1}'])


def test_the_processes_of_one_data_directory_share_their_tails(settings: Settings) -> None:
    """With ``SAE_WORKERS`` > 1 the processes take turns to write tails and each starts where
    any of them ended (``journal-tails.mark``): a process whose leaves another's tail holds
    writes none, and no tail is written twice over the same leaves. The second process here
    is a second writer on the same data directory, database and offers."""
    from sae.journal.service import append_event
    from sae.journal.tails import MARK_NAME, TailWriter

    shared = settings.model_copy(update={"workers": 2})
    with running(shared) as api:
        api.load_rules(TEST_RULES_CSV)
        assert api.deposit(build_zip(simple_sip("MSG-SHARE-1"))).status_code == 201
        first = api.runtime.tail_writer
        assert first is not None
        assert first.mark is not None
        assert (shared.data_dir / MARK_NAME).is_file()
        other = TailWriter(api.runtime.sessions, shared, api.runtime.strategy_offers)
        before = _tails(settings)
        other.cover(_size(api))  # the first process's tail holds them already
        assert (other.written, _tails(settings)) == (0, before)
        # Leaves the first process was not handed (another act's): the other writes them,
        # from where the first one's tail ended, contiguous.
        with api.runtime.sessions() as session:
            append_event(session, type="test.event", actor="test")
            session.commit()
        reached = max(parse_tail_key(key)[1] for key in before)  # type: ignore[index]
        other.cover(_size(api))
        assert other.written == 1
        (new,) = sorted(set(_tails(settings)) - set(before))
        assert parse_tail_key(new) == (reached, _size(api))
        # ... and the first process finds them there: no tail of its own over them.
        written = first.written
        first.cover(_size(api))
        assert first.written == written
        other.mark.close()  # type: ignore[union-attr]
    # Another journal (a new database on the same data directory) does not trust the mark.
    alone = TailWriter(api.runtime.sessions, shared, api.runtime.strategy_offers)
    assert alone.mark is not None
    alone.mark.journal = "00" * 32
    with alone.mark.turn():
        assert alone.mark.read() is None
    alone.mark.close()


def test_one_process_keeps_no_mark(settings: Settings) -> None:
    with running(settings) as api:
        assert api.deposit(build_zip(simple_sip("MSG-ALONE-1"))).status_code == 201
        assert api.runtime.tail_writer is not None
        assert api.runtime.tail_writer.mark is None
    assert not (settings.data_dir / "journal-tails.mark").exists()


def _sae(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """A command in a process of its own (an operator's shell beside the server)."""
    env = {
        **os.environ,
        "SAE_DATA_DIR": str(settings.data_dir),
        "SAE_DATABASE_URL": settings.db_url,
    }
    return subprocess.run(
        [sys.executable, "-m", "sae", *args], capture_output=True, text=True, timeout=120, env=env
    )


def test_a_key_rotated_while_the_server_runs_signs_the_next_tails(
    settings: Settings, tmp_path: Path
) -> None:
    """``sae journal rotate-key`` in another process while the server takes deposits: the
    server's next tails hold the rotation leaf and are signed by the new key — the key in force
    for a checkpoint of their size — so a catalogue lost before any later head was published
    comes back from the offer (before: signed by the old key the process still had, refused)."""
    from sae.journal.keyhistory import fingerprint

    with running(settings) as api:
        api.load_rules(TEST_RULES_CSV)
        assert api.deposit(build_zip(simple_sip("MSG-ROT-1"))).status_code == 201
        publish(api)
        api.runtime.sealer.stop()  # from now on only tails reach the offer
        assert api.deposit(build_zip(simple_sip("MSG-ROT-2"))).status_code == 201
        rotated = _sae(settings, "journal", "rotate-key")
        assert rotated.returncode == 0, rotated.stdout + rotated.stderr
        new_key = SigningKey.load(settings.data_dir / "keys" / SigningKey.FILENAME)
        after = api.deposit(build_zip(simple_sip("MSG-ROT-3")))
        assert after.status_code == 201, after.text
        leaf = after.json()["journal"]["leaf_index"]
        size = _size(api)
    offer = local_offer(settings)
    covering = [key for key in _tails(settings) if (span := parse_tail_key(key)) and span[1] > leaf]
    assert covering
    for key in covering:
        header, _ = read_tail(offer.get(key))
        assert fingerprint(header.public_key_pem) == fingerprint(new_key.public_pem), key
    report = rebuild(settings, "local", sqlite_target(tmp_path))
    assert report.tails >= 2  # the old key's tail before the rotation, the new key's after
    assert report.leaves >= size


def test_a_tail_after_a_rotation_leaf_is_signed_by_the_new_key_before_the_files_swap(
    settings: Settings, tmp_path: Path
) -> None:
    """``rotate-key`` commits its leaf, then swaps the key files: a deposit in between (or
    after a crash between the two) has a tail holding the rotation leaf, which the new key —
    still only in ``journal-signing.<fingerprint>.key`` — must sign."""
    import base64

    from sae.db import transaction
    from sae.fileio import write_new_file
    from sae.journal.keyhistory import fingerprint, rotation_message
    from sae.journal.rotation import _swap_in, retired_name
    from sae.journal.service import append_event

    keys = settings.data_dir / "keys"
    with running(settings) as api:
        api.load_rules(TEST_RULES_CSV)
        assert api.deposit(build_zip(simple_sip("MSG-SWAP-1"))).status_code == 201
        publish(api)
        api.runtime.sealer.stop()
        old = SigningKey.load(keys / SigningKey.FILENAME)
        new = SigningKey.generate()
        fpr = fingerprint(new.public_pem)
        write_new_file(retired_name(keys, fpr), new.private_pem())  # rotate-key's step 1
        with transaction(api.runtime.sessions) as session:  # step 2: the leaf, committed
            append_event(
                session,
                type="journal.key_rotated",
                actor="system:cli",
                payload={
                    "fingerprint": fpr,
                    "public_key_pem": new.public_pem.decode("ascii"),
                    "old_fingerprint": fingerprint(old.public_pem),
                    "old_key_signature": base64.b64encode(old.sign(rotation_message(fpr))).decode(
                        "ascii"
                    ),
                    "lost": False,
                },
            )
        after = api.deposit(build_zip(simple_sip("MSG-SWAP-2")))  # before step 3, the swap
        assert after.status_code == 201, after.text
        leaf = after.json()["journal"]["leaf_index"]
    offer = local_offer(settings)
    last = max(_tails(settings), key=lambda key: parse_tail_key(key) or (0, 0))
    span = parse_tail_key(last)
    assert span is not None
    assert span[1] > leaf
    header, _ = read_tail(offer.get(last))
    assert fingerprint(header.public_key_pem) == fpr
    _swap_in(keys, fpr)  # step 3, as the start after a crash finishes it
    report = rebuild(settings, "local", sqlite_target(tmp_path))
    assert report.leaves >= leaf + 1
