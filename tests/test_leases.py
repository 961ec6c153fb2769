"""Leases: one holder at a time across processes, renewed by it, taken over once expired
(SQLite and PostgreSQL, each taker with its own engine as separate processes have)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from sae import leases
from sae.config import Settings
from sae.db import make_engine, make_sessionmaker, utcnow

MINUTE = timedelta(minutes=1)


@pytest.fixture
def engines(settings: Settings) -> Iterator[list[sessionmaker[Session]]]:
    """Four independent engines on the test database: four processes' connections."""
    made = [make_engine(settings.db_url) for _ in range(4)]
    yield [make_sessionmaker(engine) for engine in made]
    for engine in made:
        engine.dispose()


def test_one_holder_renews_the_others_wait_for_the_expiry(
    engines: list[sessionmaker[Session]],
) -> None:
    first, second = engines[0], engines[1]
    now = utcnow()
    assert leases.take(first, "work", "a", MINUTE, now=now)  # the first taker makes the row
    assert not leases.take(second, "work", "b", MINUTE, now=now + timedelta(seconds=30))
    # The holder renews; its renewal pushes the expiry, not the moment it took the lease.
    assert leases.take(first, "work", "a", MINUTE, now=now + timedelta(seconds=50))
    assert not leases.take(second, "work", "b", MINUTE, now=now + timedelta(seconds=70))
    held = leases.holder(second, "work")
    assert held is not None
    assert held[0] == "a"
    assert held[1] == now + timedelta(seconds=110)
    # "a" died: once its lease has expired, "b" takes it over.
    assert leases.take(second, "work", "b", MINUTE, now=now + timedelta(seconds=111))
    assert not leases.take(first, "work", "a", MINUTE, now=now + timedelta(seconds=112))
    assert leases.holder(first, "work") == ("b", now + timedelta(seconds=171))


def test_release_now_or_later(engines: list[sessionmaker[Session]]) -> None:
    first, second = engines[0], engines[1]
    now = utcnow()
    assert leases.take(first, "work", "a", MINUTE)
    assert not leases.release(second, "work", "b")  # not b's to release
    assert leases.release(first, "work", "a", until=now + timedelta(seconds=2))
    assert not leases.take(second, "work", "b", MINUTE, now=now + timedelta(seconds=1))
    assert leases.take(second, "work", "b", MINUTE, now=now + timedelta(seconds=2))
    assert leases.release(second, "work", "b")
    assert leases.take(first, "work", "a", MINUTE)  # released now: free at once


@pytest.mark.parametrize("exists", [False, True], ids=["first-ever", "expired"])
def test_concurrent_takers_one_wins(engines: list[sessionmaker[Session]], exists: bool) -> None:
    """Four processes reach a free lease at the same moment: one holds it, whether its row is
    yet to be made or there and expired."""
    if exists:
        assert leases.take(engines[0], "race", "old", MINUTE, now=utcnow() - 2 * MINUTE)
    start = threading.Barrier(len(engines))
    won: list[str] = []

    def take(sessions: sessionmaker[Session], owner: str) -> None:
        start.wait()
        if leases.take(sessions, "race", owner, MINUTE):
            won.append(owner)

    threads = [
        threading.Thread(target=take, args=(sessions, f"owner-{i}"))
        for i, sessions in enumerate(engines)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1, won
    held = leases.holder(engines[0], "race")
    assert held is not None
    assert held[0] == won[0]
