"""Schema migrations as an act: ``sae migrate`` (upgrade, current, history), and the check at start.

The catalogue's schema is versioned by Alembic revisions (``migrations/versions/``). A process
that opens the runtime either upgrades the schema itself (``SAE_AUTO_MIGRATE`` on, the default:
the embedded installation upgrades when its package does) and logs the change, or, with it off
(the production example), refuses to start on a schema that is not exactly the code's
(:class:`SchemaOutdated`, naming ``sae migrate``; :class:`SchemaAhead` for a database already
upgraded by a newer SAE) — upgrading is then a deliberate act, run once, from one host.

**One upgrade at a time.** :func:`upgrade` runs every pending revision in one transaction,
after taking the installation's migration lock in it:

- PostgreSQL: ``pg_advisory_xact_lock(MIGRATION_LOCK)``, a fixed key; a second host waits
  there, and once the first commits it reads the new revision and has nothing to do. The lock
  is released with the transaction, so a killed process holds nothing.
- SQLite: an exclusive ``flock`` on ``<database>.migrate-lock`` beside the file (no timeout,
  released by the kernel when its holder dies), then ``BEGIN IMMEDIATE``: the database's write
  lock for the whole upgrade, which also makes it one transaction (Python's sqlite3 would
  otherwise run each DDL statement in its own). Other processes' writes wait for it (their
  busy timeout) instead of reading a half-built schema. Foreign keys are off during the
  upgrade (SQLite's table rebuilds need it) and all checked before its commit.

Errors (codes are stable)::

    ServiceUnavailable (503)
    └── SchemaError          database.schema: the catalogue's schema is not the code's
        ├── SchemaOutdated   database.schema_outdated: older (or empty), SAE_AUTO_MIGRATE off
        └── SchemaAhead      database.schema_ahead: a revision this SAE does not know
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

from sae.db import sqlite_file
from sae.errors import ServiceUnavailable

#: The Alembic scripts ship inside the package (``sae/migrations``) so that an installed wheel,
#: outside any checkout, can build and upgrade its schema; the repository's ``alembic.ini``
#: points here too.
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

#: The advisory lock every upgrade of a PostgreSQL catalogue takes ("SAE" "D8": schema).
MIGRATION_LOCK = 0x5AE0_5C4D

#: What an operator runs to upgrade (said by every refusal).
COMMAND = "sae migrate"

log = logging.getLogger("sae.migrate")


class SchemaError(ServiceUnavailable):
    """The catalogue's schema is not the one this SAE's code works with."""

    code = "database.schema"
    title = "Database schema not current"

    def __init__(self, detail: str, *, current: list[str], heads: list[str]) -> None:
        super().__init__(detail, current=current, heads=heads)


class SchemaOutdated(SchemaError):
    """Older than the code (or empty), and SAE_AUTO_MIGRATE is off: ``sae migrate`` first."""

    code = "database.schema_outdated"


class SchemaAhead(SchemaError):
    """At a revision the code does not know: a newer SAE upgraded it."""

    code = "database.schema_ahead"


def alembic_config() -> Config:
    """An Alembic config pointing at the project's migrations."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revisions() -> list[str]:
    """The revision(s) the code's schema is at (one: ``tests/test_migrations.py``)."""
    return sorted(_scripts().get_heads())


def revisions() -> list[str]:
    """Every revision of the code's history, oldest first (parents before children)."""
    return [r.revision for r in reversed(list(_scripts().walk_revisions()))]


def _current(connection: Connection) -> list[str]:
    return sorted(MigrationContext.configure(connection).get_current_heads())


@dataclass(frozen=True)
class SchemaState:
    """Where a catalogue's schema stands against the code's."""

    current: list[str]
    heads: list[str]
    #: Revisions of the database the code does not know (a newer SAE's).
    unknown: list[str]

    @property
    def up_to_date(self) -> bool:
        return self.current == self.heads

    @property
    def ahead(self) -> bool:
        return bool(self.unknown)

    @property
    def pending(self) -> list[str]:
        """The revisions an upgrade would run, oldest first."""
        if self.ahead or self.up_to_date:
            return []
        scripts = _scripts()
        done: set[str] = set()
        for revision in self.current:
            done.update(r.revision for r in scripts.iterate_revisions(revision, "base"))
        return [
            r.revision for r in reversed(list(scripts.walk_revisions())) if r.revision not in done
        ]

    def describe(self) -> str:
        """The current revision(s) in words (``(empty)`` for a database never migrated)."""
        return ", ".join(self.current) or "(empty)"


def _state(connection: Connection) -> SchemaState:
    scripts = _scripts()
    current = _current(connection)
    known = {r.revision for r in scripts.walk_revisions()}
    return SchemaState(
        current=current,
        heads=sorted(scripts.get_heads()),
        unknown=[r for r in current if r not in known],
    )


def schema_state(engine: Engine) -> SchemaState:
    """The schema's state (``sae migrate current``), without changing anything."""
    with engine.connect() as connection:
        return _state(connection)


def _ahead(state: SchemaState) -> SchemaAhead:
    return SchemaAhead(
        f"the database schema is at revision {', '.join(state.unknown)}, which this version "
        f"of SAE does not know (its latest is {', '.join(state.heads)}): it was upgraded by a "
        "newer SAE. Run that version, or restore the database from before the upgrade; never "
        "start an older SAE on it",
        current=state.current,
        heads=state.heads,
    )


def check_schema(engine: Engine) -> SchemaState:
    """Refuse a schema that is not exactly the code's (``SAE_AUTO_MIGRATE`` off)."""
    state = schema_state(engine)
    if state.ahead:
        raise _ahead(state)
    if not state.up_to_date:
        raise SchemaOutdated(
            f"the database schema is at revision {state.describe()}, this SAE needs "
            f"{', '.join(state.heads)} ({len(state.pending)} migration(s) pending) and "
            f"SAE_AUTO_MIGRATE is off: run `{COMMAND}` (once, from one host), then start again",
            current=state.current,
            heads=state.heads,
        )
    return state


@dataclass(frozen=True)
class SchemaChange:
    """What :func:`upgrade` did: the revisions before and after (equal: nothing to do)."""

    before: list[str]
    after: list[str]
    #: The revisions it ran, oldest first.
    applied: list[str]

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def describe(self) -> str:
        before = ", ".join(self.before) or "(empty)"
        return f"schema upgraded from {before} to {', '.join(self.after)}"


@contextmanager
def _sqlite_lock(connection: Connection) -> Iterator[None]:
    """The SQLite side of the migration lock, around the upgrade's transaction.

    Foreign keys are off meanwhile (a connection setting, outside any transaction): Alembic
    alters a SQLite table by copying it, dropping the original and renaming the copy, and with
    them on, dropping a table that other rows reference fails (or would delete them).
    :func:`upgrade` checks every foreign key before its commit instead.
    """
    database = sqlite_file(connection.engine.url)
    fd = None
    if database is not None:
        fd = os.open(f"{database}.migrate-lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
    connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    connection.commit()
    try:
        yield
    finally:
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        connection.commit()
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


@contextmanager
def _migration_lock(connection: Connection) -> Iterator[None]:
    """Held around the transaction of an upgrade: no two processes upgrade at once."""
    if connection.dialect.name == "postgresql":
        with connection.begin():
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            yield
        return
    with _sqlite_lock(connection), connection.begin():
        # The database's write lock now, not at the first write (Python's sqlite3 would also
        # run each DDL statement in a transaction of its own without it).
        connection.exec_driver_sql("BEGIN IMMEDIATE")
        yield


def upgrade(engine: Engine) -> SchemaChange:
    """Bring the schema to the code's revision, under the migration lock; log what changed.

    Everything pending runs in one transaction: a failure leaves the schema as it was. A
    database ahead of the code is refused (:class:`SchemaAhead`), never touched.
    """
    # Most starts have nothing to do: said without taking any lock (every process of every
    # host starts this way). Otherwise the state is read again under the lock.
    state = schema_state(engine)
    if state.ahead:
        raise _ahead(state)
    if state.up_to_date:
        return SchemaChange(state.current, state.current, [])
    cfg = alembic_config()
    with engine.connect() as connection, _migration_lock(connection):
        state = _state(connection)
        if state.ahead:
            raise _ahead(state)
        if state.up_to_date:  # another process upgraded it while this one waited
            return SchemaChange(state.current, state.current, [])
        pending = state.pending
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "heads")
        if connection.dialect.name == "sqlite":  # foreign keys were off: checked once, here
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise RuntimeError(f"the migrations broke foreign keys: {broken[:10]}")
        change = SchemaChange(state.current, _current(connection), pending)
    log.info(
        "database.migrated: %s (%d revision(s): %s)",
        change.describe(),
        len(change.applied),
        ", ".join(change.applied),
    )
    return change


@dataclass(frozen=True)
class Revision:
    """One revision of the history (``sae migrate history``)."""

    revision: str
    down: list[str]
    title: str
    head: bool
    current: bool


def history(engine: Engine | None = None) -> list[Revision]:
    """Every revision, oldest first; ``current`` marks the database's (with ``engine``)."""
    current: set[str] = set()
    if engine is not None:
        current = set(schema_state(engine).current)
    scripts = _scripts()
    heads = set(scripts.get_heads())
    revisions = []
    for script in reversed(list(scripts.walk_revisions())):
        down = script.down_revision
        downs = [] if down is None else [down] if isinstance(down, str) else list(down)
        title = (script.doc or "").strip().splitlines()[0] if script.doc else ""
        revisions.append(
            Revision(
                revision=script.revision,
                down=downs,
                title=title,
                head=script.revision in heads,
                current=script.revision in current,
            )
        )
    return revisions
