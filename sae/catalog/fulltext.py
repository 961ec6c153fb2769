"""Full-text search over the catalogue: the two databases' indexes behind one function.

The indexes are built by the database itself (triggers of migration ``0015_fulltext``) from
``ArchiveUnit.title_folded`` and ``ArchiveUnit.search_text``; this module only asks them.
A query's terms (``sae.catalog.text.parse_query``) become:

* SQLite: an FTS5 ``MATCH`` expression — every term required, a phrase in quotes, ``*`` for a
  prefix — ranked by ``bm25`` with the title ten times heavier than the rest;
* PostgreSQL: a ``to_tsquery`` over the French configuration — ``&`` between terms, ``<->``
  inside a phrase, ``:*`` for a prefix (after stemming: « délibérations » finds
  « délibération ») — ranked by ``ts_rank_cd`` (title weighted A, the rest B).

Every word reaches the database as letters and digits only, quoted: nothing a user types is
read as an operator of either syntax.
"""

from __future__ import annotations

from sqlalchemy import (
    ColumnElement,
    Double,
    Select,
    cast,
    column,
    func,
    literal_column,
    select,
    table,
)
from sqlalchemy.sql.expression import ColumnClause

from sae.catalog.models import ArchiveUnit
from sae.catalog.text import Term

#: The title's weight against the rest of the text in SQLite's ranking (bm25's column weights).
TITLE_WEIGHT = 10.0

_FTS = table("unit_fts", column("rowid"))
_ROWS = table("unit_search_rows", column("id"), column("unit_id"))
_VECTOR: ColumnClause[object] = literal_column("archive_units.search_vector")


def fts5_expression(terms: list[Term]) -> str:
    """The FTS5 query of ``terms``: ``"conseil municipal" AND "deliber" *``."""
    parts = []
    for term in terms:
        phrase = '"' + " ".join(term.words) + '"'
        parts.append(phrase + " *" if term.prefix else phrase)
    return " AND ".join(parts)


def tsquery_expression(terms: list[Term]) -> str:
    """The ``to_tsquery`` text of ``terms``: ``'conseil' <-> 'municipal' & 'deliber':*``."""
    parts = []
    for term in terms:
        words = [f"'{word}'" for word in term.words]
        if term.prefix:
            words[-1] += ":*"
        parts.append(" <-> ".join(words) if len(words) == 1 else "(" + " <-> ".join(words) + ")")
    return " & ".join(parts)


def apply_match(
    stmt: Select[ArchiveUnit], dialect: str, terms: list[Term]
) -> tuple[Select[ArchiveUnit], ColumnElement[float]]:
    """``stmt`` (over ``ArchiveUnit``) narrowed to the units matching every term, and the
    expression of their score (higher is better), to sort and page on."""
    if dialect == "sqlite":
        # bm25 is lower for a better match: negated, so that both databases sort the same way.
        score: ColumnElement[float] = -func.bm25(literal_column("unit_fts"), TITLE_WEIGHT, 1.0)
        hits = (
            select(_ROWS.c.unit_id.label("unit_id"), score.label("score"))
            .select_from(_FTS.join(_ROWS, _ROWS.c.id == _FTS.c.rowid))
            .where(literal_column("unit_fts").op("MATCH")(fts5_expression(terms)))
            .subquery("hits")
        )
        return stmt.join(hits, hits.c.unit_id == ArchiveUnit.id), hits.c.score
    if dialect == "postgresql":
        query = func.to_tsquery(
            literal_column("'pg_catalog.french'::regconfig"), tsquery_expression(terms)
        )
        # In double precision: a float4 read back as text and sent again in a cursor would not
        # compare equal to itself, and paging would skip or repeat the units of equal score.
        return stmt.where(_VECTOR.op("@@")(query)), cast(func.ts_rank_cd(_VECTOR, query), Double)
    raise NotImplementedError(f"full-text search is written for SQLite and PostgreSQL: {dialect}")
