"""catalog: full-text search — FTS5 on SQLite, a French tsvector with a GIN index on PostgreSQL

Revision ID: 0015_fulltext
Revises: 0014_leases
Create Date: 2026-12-06

Both indexes are kept by triggers in the database, from two columns the catalogue writes
(``title_folded``, ``search_text``: folded in Python, ``sae.catalog.text``) and the unit's
status: every way a unit row is written (ingest, rebuild, restore, a migration, raw SQL) is
indexed, and a unit destroyed or withdrawn leaves the index in the same transaction.

SQLite: ``unit_fts``, a contentless FTS5 table (the text is already in ``archive_units``;
``unicode61 remove_diacritics 2``), whose rowids come from ``unit_search_rows`` — an INTEGER
PRIMARY KEY per indexed unit, because VACUUM may renumber the implicit rowids of
``archive_units`` — which also holds what the facets count and the usual filters test
(producer, year, status): a narrow row beside each match, where reading the wide
``archive_units`` row of every match of a common word cost most of a search's time.
A contentless table forgets a row by being given the row's indexed values again ('delete'):
the triggers give the old row's columns, which are exactly what was indexed.

PostgreSQL: ``unit_search``, a narrow row per indexed unit (its id, producer, year, status and
``vector``: title weighted A, the rest B, French stemming, ``pg_catalog.french``) with a GIN
index — ranking reads each match's vector, and a wide ``archive_units`` row per match (its
description, its Content XML) cost most of a common word's search. Its parser is given words only (what is not a letter or a
digit becomes a space): left to itself it reads « BP-2024-001 » as "bp", "-2024", "-001" and
« facture_2013.pdf » as one host name, where a user types words — and SQLite's FTS5 splits them
so. No ``unaccent`` extension: the text is folded before it
reaches the database, the same folding as on SQLite, ligatures included.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from sae.catalog.text import fold

revision: str = "0015_fulltext"
down_revision: str | Sequence[str] | None = "0014_leases"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 2000

SQLITE = [
    "CREATE TABLE unit_search_rows (id INTEGER PRIMARY KEY, unit_id VARCHAR(36) NOT NULL UNIQUE,"
    " producer VARCHAR(255), year VARCHAR(4), status VARCHAR(16))",
    "CREATE VIRTUAL TABLE unit_fts USING fts5("
    " title, body, content='', tokenize='unicode61 remove_diacritics 2')",
    """CREATE TRIGGER archive_units_fts_insert AFTER INSERT ON archive_units
    WHEN new.status NOT IN ('destroyed', 'withdrawn')
    BEGIN
        INSERT INTO unit_search_rows(unit_id, producer, year, status)
            VALUES (new.id, new.producer, substr(new.start_date, 1, 4), new.status);
        INSERT INTO unit_fts(rowid, title, body)
            VALUES (last_insert_rowid(), new.title_folded, new.search_text);
    END""",
    """CREATE TRIGGER archive_units_fts_update
    AFTER UPDATE OF title_folded, search_text, status, producer, start_date ON archive_units
    BEGIN
        INSERT INTO unit_fts(unit_fts, rowid, title, body)
            SELECT 'delete', id, old.title_folded, old.search_text
            FROM unit_search_rows WHERE unit_id = old.id;
        DELETE FROM unit_search_rows WHERE unit_id = old.id;
        INSERT INTO unit_search_rows(unit_id, producer, year, status)
            SELECT new.id, new.producer, substr(new.start_date, 1, 4), new.status
            WHERE new.status NOT IN ('destroyed', 'withdrawn');
        INSERT INTO unit_fts(rowid, title, body)
            SELECT id, new.title_folded, new.search_text
            FROM unit_search_rows WHERE unit_id = new.id;
    END""",
    """CREATE TRIGGER archive_units_fts_delete AFTER DELETE ON archive_units
    BEGIN
        INSERT INTO unit_fts(unit_fts, rowid, title, body)
            SELECT 'delete', id, old.title_folded, old.search_text
            FROM unit_search_rows WHERE unit_id = old.id;
        DELETE FROM unit_search_rows WHERE unit_id = old.id;
    END""",
]
SQLITE_BUILD = [
    "INSERT INTO unit_search_rows(unit_id, producer, year, status)"
    " SELECT id, producer, substr(start_date, 1, 4), status FROM archive_units"
    " WHERE status NOT IN ('destroyed', 'withdrawn') ORDER BY created_at, id",
    "INSERT INTO unit_fts(rowid, title, body)"
    " SELECT r.id, u.title_folded, u.search_text"
    " FROM unit_search_rows r JOIN archive_units u ON u.id = r.unit_id",
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS archive_units_fts_insert",
    "DROP TRIGGER IF EXISTS archive_units_fts_update",
    "DROP TRIGGER IF EXISTS archive_units_fts_delete",
    "DROP TABLE IF EXISTS unit_fts",
    "DROP TABLE IF EXISTS unit_search_rows",
]

POSTGRESQL = [
    "CREATE TABLE unit_search (unit_id VARCHAR(36) PRIMARY KEY, producer VARCHAR(255),"
    " year VARCHAR(4), status VARCHAR(16), vector tsvector NOT NULL)",
    """CREATE FUNCTION archive_units_search() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP <> 'INSERT' THEN
            DELETE FROM unit_search WHERE unit_id = OLD.id;
        END IF;
        IF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
        IF NEW.status NOT IN ('destroyed', 'withdrawn') THEN
            INSERT INTO unit_search (unit_id, producer, year, status, vector) VALUES (
                NEW.id, NEW.producer, substr(NEW.start_date, 1, 4), NEW.status,
                setweight(to_tsvector('pg_catalog.french', regexp_replace(
                    coalesce(NEW.title_folded, ''), '[^[:alnum:]]+', ' ', 'g')), 'A')
                || setweight(to_tsvector('pg_catalog.french', regexp_replace(
                    coalesce(NEW.search_text, ''), '[^[:alnum:]]+', ' ', 'g')), 'B'));
        END IF;
        RETURN NEW;
    END
    $$""",
    """CREATE TRIGGER archive_units_search
    AFTER INSERT OR DELETE
    OR UPDATE OF title_folded, search_text, status, producer, start_date ON archive_units
    FOR EACH ROW EXECUTE FUNCTION archive_units_search()""",
]
POSTGRESQL_BUILD = [
    # Fires the trigger on every unit catalogued before this revision.
    "UPDATE archive_units SET status = status",
    "CREATE INDEX ix_unit_search_vector ON unit_search USING gin (vector)",
]
POSTGRESQL_DROP = [
    "DROP TRIGGER IF EXISTS archive_units_search ON archive_units",
    "DROP FUNCTION IF EXISTS archive_units_search()",
    "DROP TABLE IF EXISTS unit_search",
]


def _fold_titles() -> None:
    units = sa.table(
        "archive_units",
        sa.column("id", sa.String()),
        sa.column("title", sa.Text()),
        sa.column("title_folded", sa.Text()),
    )
    bind = op.get_bind()
    update = (
        units.update()
        .where(units.c.id == sa.bindparam("unit_id"))
        .values(title_folded=sa.bindparam("folded"))
    )
    last = ""
    while True:  # keyset batches: nothing held open while the table is written
        batch = bind.execute(
            sa.select(units.c.id, units.c.title)
            .where(units.c.id > last)
            .order_by(units.c.id)
            .limit(BATCH)
        ).all()
        if not batch:
            return
        bind.execute(update, [{"unit_id": r.id, "folded": fold(r.title or "")} for r in batch])
        last = batch[-1].id


def upgrade() -> None:
    with op.batch_alter_table("archive_units", schema=None) as batch_op:
        batch_op.add_column(sa.Column("title_folded", sa.Text(), nullable=False, server_default=""))
    _fold_titles()
    dialect = op.get_bind().dialect.name
    statements = {
        "sqlite": SQLITE + SQLITE_BUILD,
        "postgresql": POSTGRESQL + POSTGRESQL_BUILD,
    }.get(dialect)
    if statements is None:
        raise RuntimeError(f"full-text search is written for SQLite and PostgreSQL, not {dialect}")
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for statement in SQLITE_DROP if dialect == "sqlite" else POSTGRESQL_DROP:
        op.execute(statement)
    with op.batch_alter_table("archive_units", schema=None) as batch_op:
        batch_op.drop_column("title_folded")
