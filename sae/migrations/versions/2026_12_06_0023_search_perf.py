"""catalog: search that scales — the title's own full-text index on PostgreSQL

Revision ID: 0023_search_perf
Revises: 0022_pastell
Create Date: 2026-12-06

A full-text search ranks at most 2,000 matches, those whose title holds every term first
(``sae.catalog.service.RANKED_AT_MOST``, docs/search.md). On PostgreSQL the title's words were
only told apart by their weight (A) inside ``unit_search.vector``, which GIN does not index:
asking for the title matches of « conseil » read every unit whose text holds it (35,536 rows
to find 2,572 at 200,000 units). ``unit_search.title`` holds the title's lexemes alone
(``ts_filter(vector, '{a}')``: the same words, stemmed the same way), with its own GIN index,
and the trigger of migration 0015 fills it. SQLite's FTS5 already keeps each word's column in
its index (``title : …`` is answered from the index): nothing changes there.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0023_search_perf"
down_revision: str | Sequence[str] | None = "0022_pastell"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _function(title: bool) -> str:
    """The trigger function of migration 0015, filling ``title`` too when asked."""
    columns = "unit_id, producer, year, status, vector" + (", title" if title else "")
    vector = (
        "setweight(to_tsvector('pg_catalog.french', regexp_replace("
        "coalesce(NEW.title_folded, ''), '[^[:alnum:]]+', ' ', 'g')), 'A')"
        " || setweight(to_tsvector('pg_catalog.french', regexp_replace("
        "coalesce(NEW.search_text, ''), '[^[:alnum:]]+', ' ', 'g')), 'B')"
    )
    if title:
        values = (
            "NEW.id, NEW.producer, substr(NEW.start_date, 1, 4), NEW.status, v,"
            " ts_filter(v, '{a}')"
        )
    else:
        values = "NEW.id, NEW.producer, substr(NEW.start_date, 1, 4), NEW.status, v"
    return f"""CREATE OR REPLACE FUNCTION archive_units_search() RETURNS trigger
    LANGUAGE plpgsql AS $$
    DECLARE
        v tsvector;
    BEGIN
        IF TG_OP <> 'INSERT' THEN
            DELETE FROM unit_search WHERE unit_id = OLD.id;
        END IF;
        IF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
        IF NEW.status NOT IN ('destroyed', 'withdrawn') THEN
            v := {vector};
            INSERT INTO unit_search ({columns}) VALUES ({values});
        END IF;
        RETURN NEW;
    END
    $$"""


POSTGRESQL = [
    "ALTER TABLE unit_search ADD COLUMN title tsvector",
    _function(title=True),
    "UPDATE unit_search SET title = ts_filter(vector, '{a}')",
    "ALTER TABLE unit_search ALTER COLUMN title SET NOT NULL",
    "CREATE INDEX ix_unit_search_title ON unit_search USING gin (title)",
    "ANALYZE unit_search",
]
POSTGRESQL_DOWN = [
    _function(title=False),
    "DROP INDEX IF EXISTS ix_unit_search_title",
    "ALTER TABLE unit_search DROP COLUMN IF EXISTS title",
]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in POSTGRESQL:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in POSTGRESQL_DOWN:
            op.execute(statement)
