"""Sealing after a transfer and at least every N minutes while facts arrive."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from sae.config import Settings
from sae.db import make_engine, make_sessionmaker, transaction
from sae.journal.errors import SigningKeyError
from sae.journal.keys import load_journal_keys, tsa_health
from sae.journal.models import TreeHead
from sae.journal.sealing import seal_in_turn, seal_now
from sae.journal.service import NewEvent, append_events
from sae.journal.tsa import BuiltinTSA
from tests.journal.conftest import free_port


@pytest.fixture
def sessions(settings: Settings) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(settings.db_url)
    yield make_sessionmaker(engine)
    engine.dispose()


def _append(sessions: sessionmaker[Session], n: int) -> None:
    with transaction(sessions) as session:
        append_events(session, [NewEvent(type="test.event", actor="t") for _ in range(n)])


def test_seal_if_due_follows_the_interval(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    def seal_if_due(sessions: sessionmaker[Session], settings: Settings) -> TreeHead | None:
        return seal_in_turn(sessions, settings, "the periodic round", due_only=True).head

    assert seal_if_due(sessions, settings) is None  # empty journal
    _append(sessions, 3)
    first = seal_if_due(sessions, settings)
    assert first is not None
    assert first.tree_size == 3
    assert seal_if_due(sessions, settings) is None  # nothing new
    _append(sessions, 2)
    assert seal_if_due(sessions, settings) is None  # new, but the last head is recent
    with transaction(sessions) as session:
        session.execute(
            text("UPDATE tree_heads SET timestamp = :t"),
            {"t": first.timestamp.replace(year=first.timestamp.year - 1)},
        )
    later = seal_if_due(sessions, settings)
    assert later is not None
    assert later.tree_size == 5
    # After a transfer, sealing right away covers it whatever the interval.
    _append(sessions, 1)
    now = seal_now(sessions, settings)
    assert now is not None
    assert now.tree_size == 6


def test_tsa_health(settings: Settings, tmp_path: Path, builtin_tsa: BuiltinTSA) -> None:
    ok, detail = tsa_health(settings)
    assert ok, detail
    assert "built-in" in detail
    ca = tmp_path / "ca.pem"
    ca.write_bytes(builtin_tsa.anchors[0].public_bytes(serialization.Encoding.PEM))
    down = settings.model_copy(
        update={"tsa_url": f"http://127.0.0.1:{free_port()}/", "tsa_ca_file": ca}
    )
    ok, detail = tsa_health(down)
    assert not ok
    assert "journal.tsa_unavailable" in detail
    with pytest.raises(SigningKeyError):
        load_journal_keys(settings.model_copy(update={"tsa_url": "http://127.0.0.1:1/"}))
