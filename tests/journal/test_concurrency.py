"""Eight writers appending at once (and sealers racing): no gap, no duplicate, every proof valid."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from sae.journal import merkle
from sae.journal.checkpoint import SigningKey
from sae.journal.models import Event, TreeHead
from sae.journal.service import DbNodes, NewEvent, append_events, seal, tree_size
from sae.journal.tsa import BuiltinTSA, TimestampToken
from sae.journal.verification import verify_journal
from tests.conftest import Database

WRITERS = 8
TRANSACTIONS = 15


@pytest.fixture
def clean(database: Database) -> Iterator[Database]:
    database.reset()
    yield database
    database.reset()


def test_concurrent_writers_and_sealers(clean: Database, builtin_tsa: BuiltinTSA) -> None:
    signer = SigningKey.generate()
    errors: list[BaseException] = []
    start = threading.Barrier(WRITERS + 2)
    done = threading.Event()

    def writer(w: int) -> None:
        try:
            start.wait()
            for t in range(TRANSACTIONS):
                with Session(clean.engine) as session, session.begin():
                    append_events(
                        session,
                        [
                            NewEvent(
                                type="test.concurrent", actor=f"w{w}", payload={"t": t, "k": k}
                            )
                            for k in range(1 + (w + t) % 4)
                        ],
                    )
                    if t % 5 == 4:
                        session.rollback()  # an abandoned transaction gives its indices back
        except BaseException as exc:  # report in the main thread
            errors.append(exc)

    def sealer() -> None:
        try:
            start.wait()
            while not done.is_set():
                with Session(clean.engine) as session, session.begin():
                    seal(session, signer=signer, tsa=builtin_tsa, origin="sae.test")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    sealers = [threading.Thread(target=sealer) for _ in range(2)]
    for th in threads + sealers:
        th.start()
    for th in threads:
        th.join(timeout=240)
    done.set()
    for th in sealers:
        th.join(timeout=60)
    assert not errors, errors

    expected = sum(
        1 + (w + t) % 4 for w in range(WRITERS) for t in range(TRANSACTIONS) if t % 5 != 4
    )
    with Session(clean.engine) as session:
        with session.begin():
            seal(session, signer=signer, tsa=builtin_tsa, origin="sae.test")
        indices = list(session.scalars(select(Event.leaf_index).order_by(Event.leaf_index)))
        assert indices == list(range(expected))  # no gap, no duplicate
        assert tree_size(session) == expected
        sizes = list(session.scalars(select(TreeHead.tree_size).order_by(TreeHead.tree_size)))
        assert len(sizes) == len(set(sizes))
        assert sizes[-1] == expected
        report = verify_journal(session)
        assert report.ok, report.problems
        assert report.heads_checked == len(sizes)
        nodes = DbNodes(session)
        root = merkle.root(expected, nodes)
        leaf_hashes = {i: h for i, h in session.execute(select(Event.leaf_index, Event.leaf_hash))}
        for index in range(expected):
            proof = merkle.inclusion_proof(index, expected, nodes)
            assert merkle.verify_inclusion(index, expected, leaf_hashes[index], proof, root)
        heads = list(session.scalars(select(TreeHead).order_by(TreeHead.tree_size)))
        for a, b in zip(heads, heads[1:], strict=False):
            proof = merkle.consistency_proof(a.tree_size, b.tree_size, nodes)
            assert merkle.verify_consistency(
                a.tree_size, b.tree_size, a.root_hash, b.root_hash, proof
            )


class _SlowTSA:
    """The built-in TSA, with one more sealer's whole round run while the first is at it — as
    a busy external TSA lets happen: leaves arrive, another instance seals over them."""

    def __init__(self, tsa: BuiltinTSA, meanwhile: Callable[[], None]) -> None:
        self._tsa = tsa
        self._meanwhile: Callable[[], None] | None = meanwhile

    def timestamp(self, message: bytes) -> TimestampToken:
        meanwhile, self._meanwhile = self._meanwhile, None
        if meanwhile is not None:
            meanwhile()
        return self._tsa.timestamp(message)


def test_a_sealer_overtaken_at_the_tsa_never_commits_a_smaller_head_after_a_larger_one(
    clean: Database, builtin_tsa: BuiltinTSA
) -> None:
    """The segment publisher starts after the largest head an offer holds: a smaller head
    committed after a larger one would be on no offer, and lost to a rebuild."""
    signer = SigningKey.generate()

    def append(n: int) -> None:
        with Session(clean.engine) as session, session.begin():
            append_events(session, [NewEvent(type="test.race", actor="t") for _ in range(n)])

    def another_instance() -> None:
        append(5)
        with Session(clean.engine) as session, session.begin():
            # On PostgreSQL the first sealer holds the sealer's row: this one steps back.
            seal(session, signer=signer, tsa=builtin_tsa, origin="sae.test")

    append(5)
    with Session(clean.engine) as session, session.begin():
        seal(
            session,
            signer=signer,
            tsa=_SlowTSA(builtin_tsa, another_instance),
            origin="sae.test",
        )
    with Session(clean.engine) as session:
        committed = list(session.scalars(select(TreeHead.tree_size).order_by(TreeHead.id)))
    assert committed == sorted(committed), committed
    assert committed[-1] == (10 if clean.kind == "sqlite" else 5)
