"""Full-text search over the catalogue: the two databases' indexes behind one function.

The indexes are built by the database itself (triggers of migration ``0015_fulltext``) from
``ArchiveUnit.title_folded`` and ``ArchiveUnit.search_text``; this module only asks them.
A query's terms (``sae.catalog.text.parse_query``) become:

* SQLite: an FTS5 ``MATCH`` expression — every term required, a phrase in quotes, ``*`` for a
  prefix — ranked by ``bm25`` with the title ten times heavier than the rest;
* PostgreSQL: a ``to_tsquery`` over the French configuration, on ``unit_search`` — ``&``
  between terms, ``<->`` inside a phrase, ``:*`` for a prefix (after stemming:
  « délibérations » finds « délibération ») — ranked by ``ts_rank_cd`` (title weighted A,
  the rest B).

Every word reaches the database as letters and digits only, quoted: nothing a user types is
read as an operator of either syntax.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Double,
    Select,
    cast,
    column,
    func,
    literal_column,
    not_,
    select,
    table,
)

from sae.catalog.models import ArchiveUnit
from sae.catalog.text import Term

#: The tables of the full-text index (migration 0015): written by the database's triggers, never
#: by the catalogue, so not in its metadata (FTS5 adds its shadow tables ``unit_fts_*``).
INDEX_TABLES = frozenset(
    {
        "unit_search",
        "unit_search_rows",
        "unit_fts",
        "unit_fts_config",
        "unit_fts_data",
        "unit_fts_docsize",
        "unit_fts_idx",
    }
)


def outside_metadata(obj: object, name: str | None, type_: str, *_args: object) -> bool:
    """Alembic's ``include_object``: False for the index's tables and their indexes, which
    the migrations create and the models do not declare (``alembic check``, autogenerate)."""
    if type_ == "table":
        return name not in INDEX_TABLES
    table = getattr(obj, "table", None)
    return getattr(table, "name", None) not in INDEX_TABLES


#: The title's weight against the rest of the text in SQLite's ranking (bm25's column weights).
TITLE_WEIGHT = 10.0

_FTS = table("unit_fts", column("rowid"))
_ROWS = table(
    "unit_search_rows",
    column("id"),
    column("unit_id"),
    column("producer"),
    column("year"),
    column("status"),
)
_SEARCH = table(
    "unit_search",
    column("unit_id"),
    column("producer"),
    column("year"),
    column("status"),
    column("vector"),
    column("title"),
)


#: Which matches a query selects: all of them, those whose title holds every term, or the
#: others (the two tiers of a capped search, ``sae.catalog.service``).
Part = Literal["all", "title", "rest"]


def fts5_expression(terms: list[Term], part: Part = "all") -> str:
    """The FTS5 query of ``terms``: ``"conseil municipal" AND "deliber" *``; ``part="title"``
    restricts it to the title column, ``part="rest"`` excludes what that one finds."""
    parts = []
    for term in terms:
        phrase = '"' + " ".join(term.words) + '"'
        parts.append(phrase + " *" if term.prefix else phrase)
    everywhere = " AND ".join(parts)
    if part == "all":
        return everywhere
    in_title = f"title : ({everywhere})"
    return in_title if part == "title" else f"({everywhere}) NOT {in_title}"


def tsquery_expression(terms: list[Term]) -> str:
    """The ``to_tsquery`` text of ``terms``: ``'conseil' <-> 'municipal' & 'deliber':*``."""
    parts = []
    for term in terms:
        words = [f"'{word}'" for word in term.words]
        if term.prefix:
            words[-1] += ":*"
        parts.append(" <-> ".join(words) if len(words) == 1 else "(" + " <-> ".join(words) + ")")
    return " & ".join(parts)


@dataclass(frozen=True)
class Selection:
    """What a search selects, as columns: the unit's id, what the facets count and the usual
    filters test, and the relevance score (None without a full-text query). ``stmt`` selects
    ``id`` from wherever these columns live; ``wide`` says whether ``archive_units`` is joined
    (filters on its other columns need it)."""

    stmt: Select[Any]
    id: ColumnElement[str]
    producer: ColumnElement[str]
    year: ColumnElement[str | None]
    status: ColumnElement[str]
    score: ColumnElement[float] | None
    wide: bool


def catalogue() -> Selection:
    """Every unit, from ``archive_units`` itself."""
    return Selection(
        stmt=select(ArchiveUnit.id),
        id=ArchiveUnit.__table__.c.id,
        producer=ArchiveUnit.__table__.c.producer,
        year=func.substr(ArchiveUnit.start_date, 1, 4),
        status=ArchiveUnit.__table__.c.status,
        score=None,
        wide=True,
    )


def matching(dialect: str, terms: list[Term], part: Part = "all") -> Selection:
    """The units matching every term, with their score (higher is better); ``part`` (see
    :data:`Part`) keeps the title matches only, or the others only."""
    if dialect == "sqlite":
        # bm25 is lower for a better match: negated, so that both databases sort the same way.
        # The narrow row of each match (unit_search_rows; unit_search on PostgreSQL) holds the
        # facets and filters: a common word's thousands of matches never read archive_units.
        score: ColumnElement[float] = -func.bm25(literal_column("unit_fts"), TITLE_WEIGHT, 1.0)
        hits = (
            select(
                _ROWS.c.unit_id.label("id"),
                _ROWS.c.producer.label("producer"),
                _ROWS.c.year.label("year"),
                _ROWS.c.status.label("status"),
                score.label("score"),
            )
            .select_from(_FTS.join(_ROWS, _ROWS.c.id == _FTS.c.rowid))
            .where(literal_column("unit_fts").op("MATCH")(fts5_expression(terms, part)))
        )
    else:  # PostgreSQL: the only other database migration 0015 builds an index in
        french: ColumnElement[Any] = literal_column("'pg_catalog.french'::regconfig")
        query = func.to_tsquery(french, tsquery_expression(terms))
        # The title's own lexemes (migration 0023), indexed apart: the weight A inside
        # ``vector`` is not in the GIN index, and testing it read every match's row. A title
        # match is a match (``vector`` holds the title's lexemes): the title's index alone.
        everywhere = _SEARCH.c.vector.op("@@")(query)
        in_title = _SEARCH.c.title.op("@@")(query)
        which = {
            "all": [everywhere],
            "title": [in_title],
            "rest": [everywhere, not_(in_title)],
        }[part]
        hits = select(
            _SEARCH.c.unit_id.label("id"),
            _SEARCH.c.producer.label("producer"),
            _SEARCH.c.year.label("year"),
            _SEARCH.c.status.label("status"),
            # In double precision: a float4 read back as text and sent again in a cursor would
            # not compare equal to itself, and paging would skip or repeat equal scores.
            cast(func.ts_rank_cd(_SEARCH.c.vector, query), Double).label("score"),
        ).where(*which)
    found = hits.subquery("hits")
    return Selection(
        stmt=select(found.c.id).select_from(found),
        id=found.c.id,
        producer=found.c.producer,
        year=found.c.year,
        status=found.c.status,
        score=found.c.score,
        wide=False,
    )


def widened(selection: Selection) -> Selection:
    """``selection`` with ``archive_units`` joined, for filters on its other columns."""
    if selection.wide:
        return selection
    return replace(
        selection,
        stmt=selection.stmt.join(ArchiveUnit, ArchiveUnit.id == selection.id),
        wide=True,
    )
