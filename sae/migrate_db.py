"""An embedded catalogue moved to PostgreSQL (``sae migrate-db --to URL``), verified.

:func:`move_catalog` copies the SQLite catalogue of ``SAE_DATABASE_URL`` into an **empty**
PostgreSQL database, and proves the copy before committing it:

1. **Source**: the SQLite catalogue, at the code's schema revision (else ``sae migrate``
   first). Its write lock is taken for the whole copy (``BEGIN IMMEDIATE``): what is copied is
   one consistent state, and a server left running cannot deposit into the old catalogue
   meanwhile (its writes wait, then fail) — stop SAE before moving it.
2. **Target**: migrated to the code's revision if it is not (under the migration lock), then
   refused unless empty: no table SAE does not know, no row in any table but the counters the
   migrations themselves write (``journal_state`` at 0), re-checked inside the copy's
   transaction after taking the migration lock.
3. **Copy**, in one PostgreSQL transaction: table by table in foreign-key order, each streamed
   by primary key :data:`BATCH` rows at a time (memory stays bounded whatever the archive's
   size), every column as it is — ids included, SQL NULL kept apart from JSON ``null`` — then
   each serial sequence set past its table's highest id.
4. **Verification**, still inside that transaction: the row count of every table equals the
   source's; the journal's Merkle root recomputed from the target's leaves equals the one
   recomputed from the source's; and ``sae journal verify``'s check
   (:func:`~sae.journal.verification.verify_journal`: every leaf re-derived from its columns,
   every stored node, every signed head and time-stamp, every object's SHA-512) passes on the
   target. Any difference rolls everything back (:class:`MoveUnverified`): the target stays
   empty, the source untouched.
5. **A journal event** on the target, ``catalog.migrated`` (source, target without password,
   counts, tree size and root), then the commit. The source is left as it was: it is the way
   back until the new installation is trusted, and must never be started again beside it (the
   same keys and offers would then hold two diverging journals).

The signing keys, the built-in TSA's keys and the offers are not in the catalogue: they stay
where they are (``SAE_DATA_DIR``, the offers file). What to do next is in docs/upgrades.md.

Errors (codes are stable)::

    Conflict (409)
    └── MoveRefused        database.move_refused: not this way (the source is not SQLite, the
                           target not PostgreSQL, or not empty)
    UnprocessableEntity (422)
    └── MoveUnverified     database.move_unverified: the copy did not verify; rolled back
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Connection,
    Engine,
    MetaData,
    Table,
    Text,
    false,
    func,
    inspect,
    select,
    text,
    type_coerce,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from sae.config import Settings
from sae.db import make_engine
from sae.errors import Conflict, UnprocessableEntity
from sae.journal import merkle
from sae.journal.models import TREE_SIZE, Event, JournalState
from sae.journal.service import append_event
from sae.migrate import MIGRATION_LOCK, check_schema, upgrade
from sae.models import Base

#: Rows read and written at a time.
BATCH = 1000
#: The event that records the move, the first leaf the target adds.
EVENT = "catalog.migrated"
#: Who the journal says moved the catalogue: run from a shell, as the system.
ACTOR = "system:migrate-db"
#: Tables the migrations themselves fill (counters at 0 on a fresh schema).
COUNTERS = JournalState.__tablename__


class MoveRefused(Conflict):
    """The move cannot be made this way (source, target, or a target that is not empty)."""

    code = "database.move_refused"
    title = "Move refused"


class MoveUnverified(UnprocessableEntity):
    """The copy did not verify against the source; it was rolled back."""

    code = "database.move_unverified"
    title = "Move not verified"


@dataclass
class MoveProgress:
    """Where a move stands (given to the progress callback after each batch)."""

    phase: str  # "counting", "copying", "verifying", "done"
    table: str = ""
    rows: int = 0
    table_rows: int = 0
    done: int = 0
    total: int = 0


ProgressFn = Callable[[MoveProgress], None]


@dataclass
class MoveReport:
    """What a move did and verified."""

    source: str
    target: str
    counts: dict[str, int]
    tree_size: int
    root_hash: bytes
    #: The ``catalog.migrated`` leaf on the target.
    event_leaf: int
    seconds: float
    heads_checked: int = 0
    objects_checked: int = 0
    sequences: dict[str, int] = field(default_factory=dict)


def redacted(url: str) -> str:
    """A database URL without its password (what is said and journaled)."""
    return make_url(url).render_as_string(hide_password=True)


def move_catalog(
    settings: Settings,
    target_url: str,
    *,
    progress: ProgressFn | None = None,
    batch: int = BATCH,
) -> MoveReport:
    """Move the configured SQLite catalogue into the empty PostgreSQL database ``target_url``
    (see the module's docstring). Raises :class:`MoveRefused`, :class:`MoveUnverified`, and
    :class:`~sae.migrate.SchemaError` for a source not at the code's revision."""
    started = time.monotonic()
    source_url = settings.db_url
    if make_url(source_url).get_backend_name() != "sqlite":
        raise MoveRefused(
            "the configured catalogue (SAE_DATABASE_URL) is not SQLite: `sae migrate-db` moves "
            "an embedded installation; between PostgreSQL servers use pg_dump (docs/recovery.md)"
        )
    try:
        target = make_url(target_url)
    except Exception:  # an unparsable URL: said plainly, never echoed (it may hold a password)
        raise MoveRefused("--to is not a database URL (postgresql+psycopg://…)") from None
    if target.get_backend_name() != "postgresql":
        raise MoveRefused(
            f"--to must be a PostgreSQL URL (postgresql+psycopg://…), not {target.drivername}"
        )
    tell = progress or (lambda _p: None)
    source_engine = make_engine(source_url)
    target_engine = make_engine(target_url)
    try:
        check_schema(source_engine)  # the source must be exactly the code's schema
        _prepare_target(target_engine)
        with source_engine.connect() as src, target_engine.connect() as dst:
            # The source's write lock, for the whole copy: one state, no deposit meanwhile.
            try:
                src.exec_driver_sql("BEGIN IMMEDIATE")
            except OperationalError:
                raise MoveRefused(
                    "the SQLite catalogue stayed busy (a running SAE is writing to it): stop "
                    "SAE, then move it"
                ) from None
            try:
                with dst.begin():
                    report = _copy_and_verify(settings, src, dst, batch, tell)
                    report.source = redacted(source_url)
                    report.target = redacted(target_url)
            finally:
                src.rollback()
    finally:
        source_engine.dispose()
        target_engine.dispose()
    report.seconds = round(time.monotonic() - started, 3)
    tell(MoveProgress("done", done=sum(report.counts.values()), total=sum(report.counts.values())))
    return report


def _tables() -> list[Table]:
    """The catalogue's tables, parents before children."""
    return list(Base.metadata.sorted_tables)


def _prepare_target(engine: Engine) -> None:
    """Refuse a target holding anything; bring an empty one to the code's schema."""
    from sae.catalog.fulltext import INDEX_TABLES

    # The full-text index's tables are the migrations' (an earlier try left them, empty).
    known = {t.name for t in _tables()} | {"alembic_version"} | INDEX_TABLES
    with engine.connect() as connection:
        foreign = sorted(set(inspect(connection).get_table_names()) - known)
    if foreign:
        raise MoveRefused(
            "the target database is not empty: it holds tables SAE does not know "
            f"({', '.join(foreign[:5])}{'…' if len(foreign) > 5 else ''}); give an empty "
            "database (CREATE DATABASE … OWNER …)",
            tables=foreign,
        )
    upgrade(engine)  # an empty target at an older revision (or none) is brought to the code's
    with engine.connect() as connection:
        _refuse_rows(connection)


def _refuse_rows(connection: Connection) -> None:
    busy = []
    for table in _tables():
        query = select(1).select_from(table)
        if table.name == COUNTERS:
            query = query.where(table.c.value != 0)
        if connection.execute(query.limit(1)).first() is not None:
            busy.append(table.name)
    if busy:
        raise MoveRefused(
            "the target database is not empty (rows in "
            f"{', '.join(busy[:5])}{'…' if len(busy) > 5 else ''}): `sae migrate-db` only "
            "writes into an empty catalogue, one no SAE has started on",
            tables=busy,
        )


def _copy_and_verify(
    settings: Settings, src: Connection, dst: Connection, batch: int, tell: ProgressFn
) -> MoveReport:
    # Another process starting on the target meanwhile waits here, or is seen.
    dst.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
    _refuse_rows(dst)
    tables = _tables()
    tell(MoveProgress("counting"))
    counts = {t.name: _count(src, t) for t in tables}
    total = sum(counts.values())
    done = 0
    # The migrations' own counters make way for the source's.
    dst.execute(Base.metadata.tables[COUNTERS].delete())
    for table in tables:
        copied = 0
        tell(MoveProgress("copying", table.name, 0, counts[table.name], done, total))
        for rows in _read(src, table, batch):
            try:
                dst.execute(_target_table(table).insert(), rows)
            except DBAPIError as exc:  # a value SQLite let through and PostgreSQL does not
                raise MoveUnverified(
                    f"PostgreSQL refused a row of {table.name} (after {copied} copied): "
                    f"{str(exc.orig).strip()}",
                    table=table.name,
                ) from None
            copied += len(rows)
            done += len(rows)
            tell(MoveProgress("copying", table.name, copied, counts[table.name], done, total))
    sequences = _reset_sequences(dst, tables)
    tell(MoveProgress("verifying", done=done, total=total))
    return _verify_and_journal(settings, src, dst, counts, sequences)


def _count(connection: Connection, table: Table) -> int:
    return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


def _target_table(table: Table) -> Table:
    """``table`` for the inserts: its JSON columns keep SQL NULL apart from JSON ``null``
    (``none_as_null``; JSON ``null`` is passed as :attr:`JSON.NULL`)."""
    cached = _TARGETS.get(table.name)
    if cached is not None:
        return cached
    columns = [
        Column(c.name, JSON(none_as_null=True) if isinstance(c.type, JSON) else c.type)
        for c in table.columns
    ]
    copy = Table(table.name, _TARGET_METADATA, *columns)
    _TARGETS[table.name] = copy
    return copy


_TARGET_METADATA = MetaData()
_TARGETS: dict[str, Table] = {}


def _read(connection: Connection, table: Table, batch: int) -> Iterator[list[dict[str, Any]]]:
    """The table's rows in primary-key order, ``batch`` at a time, ready to insert."""
    json_columns = {c.name for c in table.columns if isinstance(c.type, JSON)}
    columns = [type_coerce(c, Text) if c.name in json_columns else c for c in table.columns]
    query = select(*columns).order_by(*table.primary_key.columns)
    # Per statement: a connection's own execution_options() would change it for good.
    result = connection.execute(query.execution_options(yield_per=batch))
    names = [c.name for c in table.columns]
    for part in result.partitions(batch):
        rows = []
        for row in part:
            values = dict(zip(names, row, strict=True))
            for name in json_columns:
                raw = values[name]
                if raw is not None:
                    parsed = json.loads(raw)
                    values[name] = JSON.NULL if parsed is None else parsed
            rows.append(values)
        yield rows


def _reset_sequences(connection: Connection, tables: list[Table]) -> dict[str, int]:
    """Each serial id's sequence set to follow the highest id copied (ids were given)."""
    restarted: dict[str, int] = {}
    for table in tables:
        column = table.autoincrement_column
        if column is None:
            continue
        sequence = func.pg_get_serial_sequence(table.name, column.name)
        following = func.coalesce(func.max(column), 0) + 1
        next_id = connection.execute(
            select(func.setval(sequence, following, false())).select_from(table)
        ).scalar_one()
        restarted[table.name] = int(next_id)
    return restarted


def journal_root(connection: Connection) -> tuple[int, bytes]:
    """The journal's size and Merkle root, recomputed from every leaf hash in order (RFC 9162);
    a gap in the leaf indices refuses (it would be a journal ``sae journal verify`` refuses)."""
    peaks: list[bytes] = []
    expected = 0
    query = select(Event.leaf_index, Event.leaf_hash).order_by(Event.leaf_index)
    for part in connection.execute(query.execution_options(yield_per=BATCH)).partitions(BATCH):
        for index, leaf_hash in part:
            if index != expected:
                raise MoveUnverified(f"the journal has no leaf {expected}: run sae journal verify")
            _, peaks = merkle.append_leaf(index, peaks, bytes(leaf_hash))
            expected += 1
    return expected, merkle.root_from_peaks(peaks)


def _verify_and_journal(
    settings: Settings,
    src: Connection,
    dst: Connection,
    counts: dict[str, int],
    sequences: dict[str, int],
) -> MoveReport:
    from sae.journal.verification import verify_journal

    copied = {t.name: _count(dst, t) for t in _tables()}
    different = {n: (counts[n], copied[n]) for n in counts if counts[n] != copied[n]}
    if different:
        raise MoveUnverified(
            "row counts differ after the copy: "
            + ", ".join(f"{n} {a} → {b}" for n, (a, b) in sorted(different.items())),
            counts=different,
        )
    size, root = journal_root(src)
    target_size, target_root = journal_root(dst)
    if (size, root) != (target_size, target_root):
        raise MoveUnverified(
            f"the journal's root differs: source {size} leaves, {root.hex()}; target "
            f"{target_size} leaves, {target_root.hex()}"
        )
    state = src.execute(
        select(JournalState.value).where(JournalState.name == TREE_SIZE)
    ).scalar_one_or_none()
    if int(state or 0) != size:
        raise MoveUnverified(f"the journal counts {state} leaves but holds {size}")
    with Session(bind=dst) as session:
        checked = verify_journal(session, pinned_key=settings.journal_key_fingerprint)
        if not checked.ok:
            first = checked.problems[0]
            raise MoveUnverified(
                f"`sae journal verify` fails on the target: leaf {first.leaf_index}: "
                f"{first.kind}: {first.message}"
            )
        event = append_event(
            session,
            type=EVENT,
            actor=ACTOR,
            payload={
                "source": redacted(settings.db_url),
                "target": redacted(dst.engine.url.render_as_string(hide_password=False)),
                "counts": counts,
                "tree_size": size,
                "root_hash": root.hex(),
            },
        )
        leaf = event.leaf_index
    return MoveReport(
        source="",
        target="",
        counts=counts,
        tree_size=size,
        root_hash=root,
        event_leaf=leaf,
        seconds=0.0,
        heads_checked=checked.heads_checked,
        objects_checked=checked.objects_checked,
        sequences=sequences,
    )
