"""Database plumbing: the declarative base, engines, sessions, and portable column types.

The caller owns the transaction (the route, the CLI command, the unit of work; see
docs/conventions.md, "Transactions"): services ``flush()``, never ``commit()``. That is what
makes an ingest all-or-nothing across domains.
"""

from __future__ import annotations

import fcntl
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Engine, MetaData, create_engine, event, text
from sqlalchemy.engine import URL, Dialect, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp always stored and returned as timezone-aware UTC.

    SQLite keeps no time zone; PostgreSQL's ``timestamptz`` does. Normalising at the boundary
    means the rest of the code never compares a naive datetime with an aware one.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of every SAE table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


def utcnow() -> datetime:
    """Now, timezone-aware UTC (the only clock the domain reads; tests may patch it)."""
    return datetime.now(UTC)


def new_id() -> str:
    """A new opaque identifier for units, objects, transfers…"""
    return str(uuid.uuid4())


def lock_for_writing(session: Session, key: int) -> None:
    """Make the caller's transaction the only one, across every process, past this point.

    For a read-then-write that two instances must not both do (scheduling an audit, numbering
    a disposal list): PostgreSQL takes the advisory lock ``key`` until the transaction ends;
    SQLite takes its database write lock now (``BEGIN IMMEDIATE``) instead of at the first
    write, so what the transaction reads next is what it will write over. Call it before the
    reads it protects; on SQLite a transaction that has already written holds the lock.
    """
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
        return
    driver = connection.connection.driver_connection
    if driver is not None and not driver.in_transaction:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def sqlite_file(url: str | URL) -> str | None:
    """The file of a SQLite database URL; None for an in-memory one or another database.

    Processes sharing that file coordinate through lock files beside it (:class:`WriterTurns`,
    the journal's segment publisher)."""
    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() == "sqlite" and database and database != ":memory:":
        return database
    return None


class WriterTurns:
    """Server processes sharing one SQLite database take turns to write, promptly.

    SQLite lets one connection write at a time, and one that finds the database locked sleeps
    in its busy handler (1, 2, 5, 10… up to 100 ms) before it looks again: with two processes
    committing back to back, each commit waited for a sleep that ended long after the other's.
    An exclusive ``flock`` on a file beside the database, held around a busy writer's
    transaction (the group commit), hands the turn over as soon as it is released. The lock
    belongs to the open file: the kernel releases it when a holder dies. For any other
    database (PostgreSQL queues its own lock waiters), a no-op.
    """

    def __init__(self, url: str) -> None:
        database = sqlite_file(url)
        self._fd: int | None = None
        if database is not None:
            self._fd = os.open(f"{database}.writer-lock", os.O_RDWR | os.O_CREAT, 0o600)

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Wait for the turn, keep it for the ``with`` block."""
        if self._fd is None:
            yield
            return
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers proceed during an ingest; foreign keys are off by default in SQLite.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


#: A pooled connection that waited longer than this (seconds) is pinged before it is lent.
PING_AFTER_IDLE = 1.0


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url`` with the settings SAE relies on (FKs and WAL on SQLite)."""
    if url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {"check_same_thread": False, "timeout": 30})
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_engine(url, **kwargs)
    _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: Engine) -> None:
    """Ping a server's connection before lending it, when it waited in the pool more than
    :data:`PING_AFTER_IDLE` seconds; a dead one is replaced before anyone uses it.

    Instead of ``pool_pre_ping`` (a ping at every checkout): a deposit checks out three or four
    connections, and their pings were a quarter of its round trips to PostgreSQL. A connection
    that was used a moment ago is alive, or its server went away in that moment; either way a
    statement on it fails as it would have after a ping, and SQLAlchemy then invalidates every
    connection opened before the failure. One that waited longer (a restart of the server, a
    firewall's idle timeout) is checked, as ``pool_pre_ping`` would."""

    @event.listens_for(engine, "checkin")
    def returned(dbapi_connection: Any, entry: ConnectionPoolEntry) -> None:
        entry.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def lent(dbapi_connection: Any, entry: ConnectionPoolEntry, proxy: Any) -> None:
        since = entry.info.get("idle_since")  # None: a new connection, just made
        if since is None or time.monotonic() - since <= PING_AFTER_IDLE:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # the driver's error for a dead connection, whichever it is
            raise DisconnectionError(f"connection lost while idle: {exc}") from exc
        if not alive:
            raise DisconnectionError("connection lost while idle")


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions that do not expire objects on commit (responses are built after commit)."""
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=True)


def make_read_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions for one read, in autocommit: no ``BEGIN`` before the statement, no ``ROLLBACK``
    when the connection goes back to the pool (two round trips of three, on a server). For a
    look-up that is one statement (each statement sees what is committed when it runs, as in
    a transaction at ``READ COMMITTED``), never for a write: nothing would roll it back."""
    return sessionmaker(
        bind=engine.execution_options(isolation_level="AUTOCOMMIT"),
        expire_on_commit=False,
        autoflush=False,
    )


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any exception."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
