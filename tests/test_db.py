"""Database plumbing shared by every domain: the writers' turns on a shared SQLite file."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import Connection, create_engine, event, text

from sae import db
from sae.config import Settings
from sae.db import WriterTurns


def test_writer_turns_exclude_each_other_and_hand_over_at_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sae.db'}"
    first, second = WriterTurns(url), WriterTurns(url)  # as two processes: two open files
    order: list[str] = []
    try:
        with first.turn():
            waiter = threading.Thread(target=lambda: _take(second, order))
            waiter.start()
            time.sleep(0.3)
            order.append("first done")
        waiter.join(5)
        assert order == ["first done", "second in"]
    finally:
        first.close()
        second.close()
    assert (tmp_path / "sae.db.writer-lock").is_file()


def _take(turns: WriterTurns, order: list[str]) -> None:
    with turns.turn():
        order.append("second in")


def test_a_dead_holder_gives_the_turn_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sae.db'}"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from sae.db import WriterTurns\n"
            f"t = WriterTurns({url!r})\n"
            "with t.turn():\n"
            "    print('held', flush=True)\n"
            "    time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == b"held"
        holder.kill()  # SIGKILL while holding the turn
        holder.wait(10)
        turns = WriterTurns(url)
        taken = threading.Event()
        thread = threading.Thread(target=lambda: _enter(turns, taken), daemon=True)
        thread.start()
        assert taken.wait(5), "the turn of a killed process was not released"
        thread.join(5)
        turns.close()
    finally:
        holder.kill()
        holder.wait(10)
        if holder.stdout is not None:
            holder.stdout.close()


def _enter(turns: WriterTurns, taken: threading.Event) -> None:
    with turns.turn():
        taken.set()


def test_no_turns_where_the_database_queues_its_writers(tmp_path: Path) -> None:
    for url in ("sqlite://", "postgresql+psycopg://sae@db/sae"):
        turns = WriterTurns(url)
        with turns.turn(), turns.turn():  # a no-op: nested turns do not block
            pass
        turns.close()
    assert list(tmp_path.iterdir()) == []


# --- connections: pinged after a wait, one-statement reads in autocommit -----------------------


def _backend_pid(conn: Connection) -> int:
    return int(conn.execute(text("select pg_backend_pid()")).scalar_one())


def test_a_connection_killed_while_idle_is_replaced_before_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server connection that waited in the pool is pinged before it is lent: one that died
    meanwhile (the server restarted, a firewall dropped it) is replaced, and the statement runs.
    Without the ping, the first statement after the wait fails."""
    from tests.conftest import PG_URL, _postgres_reachable, require

    require(_postgres_reachable(), f"PostgreSQL not reachable at {PG_URL}")
    monkeypatch.setattr(db, "PING_AFTER_IDLE", 0.05)
    engine = db.make_engine(PG_URL, pool_size=1, max_overflow=0)
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            first = _backend_pid(conn)
        with admin.connect() as conn:
            conn.execute(text("select pg_terminate_backend(:pid)"), {"pid": first})
        time.sleep(0.2)  # longer than the wait after which a connection is pinged
        with engine.connect() as conn:
            assert _backend_pid(conn) != first  # a new connection, not an error
    finally:
        engine.dispose()
        admin.dispose()


def test_a_connection_lent_again_at_once_is_not_pinged() -> None:
    """Under load a connection goes back and out within milliseconds: no ping then (a ping at
    every checkout was a quarter of a deposit's round trips)."""
    from tests.conftest import PG_URL, _postgres_reachable, require

    require(_postgres_reachable(), f"PostgreSQL not reachable at {PG_URL}")
    engine = db.make_engine(PG_URL, pool_size=1, max_overflow=0)
    pings: list[object] = []
    real_ping = engine.dialect.do_ping
    engine.dialect.do_ping = lambda dbapi_connection: pings.append(1) or real_ping(dbapi_connection)  # type: ignore[method-assign]
    try:
        for _ in range(5):
            with engine.connect() as conn:
                conn.execute(text("select 1"))
        assert pings == []
    finally:
        engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_read_sessions_run_in_autocommit_and_leave_the_pool_as_it_was(
    kind: str, tmp_path: Path
) -> None:
    """``make_read_sessionmaker``: a look-up without a transaction around it (no BEGIN, no
    ROLLBACK), on the same pool; the connection comes back to ordinary sessions transactional:
    a rolled-back write there leaves nothing."""
    from tests.conftest import PG_URL, _postgres_reachable, require

    if kind == "postgresql":
        require(_postgres_reachable(), f"PostgreSQL not reachable at {PG_URL}")
        url = PG_URL
    else:
        url = f"sqlite:///{tmp_path / 'reads.db'}"
    engine = db.make_engine(url, pool_size=1, max_overflow=0)
    try:
        with engine.begin() as conn:
            conn.execute(text("create temporary table if not exists probe (n integer)"))
        reads, sessions = db.make_read_sessionmaker(engine), db.make_sessionmaker(engine)
        with reads() as session:
            # Autocommit: a statement stands alone (this one is kept without a commit; the
            # read sessions never write, but that is what proves there is no transaction).
            session.execute(text("insert into probe values (1)"))
        with sessions() as session:
            assert session.execute(text("select count(*) from probe")).scalar_one() == 1
            session.execute(text("insert into probe values (2)"))
            session.rollback()  # transactional again: the same connection, given back reset
        with sessions() as session:
            assert session.execute(text("select count(*) from probe")).scalar_one() == 1
    finally:
        engine.dispose()


def test_a_burst_of_concurrent_work_keeps_its_connections(settings: Settings) -> None:
    """A server process keeps the connections a burst opened (``SAE_DATABASE_POOL_SIZE``):
    eight deposits and the background threads at once needed more than SQLAlchemy's five, and
    every burst closed the others and opened them again at the next (on PostgreSQL, a server
    process each: a fifth of a connection per deposit). Both databases."""
    from sae.runtime import Runtime

    runtime = Runtime.open(settings)
    try:
        opened: list[object] = []
        event.listen(runtime.engine, "connect", lambda *_: opened.append(1))
        held = [runtime.engine.connect() for _ in range(12)]  # a burst: twelve at once
        for conn in held:
            conn.execute(text("select 1"))
            conn.close()
        first = len(opened)
        held = [runtime.engine.connect() for _ in range(12)]  # the next burst
        for conn in held:
            conn.execute(text("select 1"))
            conn.close()
        assert len(opened) == first  # none closed, none opened again
        assert runtime.engine.pool.checkedin() >= 12
    finally:
        runtime.close()
