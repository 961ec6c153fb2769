"""Text as the catalogue's search compares it: no case, no accents, one space between words.

An archivist types « deliberation », « DÉLIBÉRATION » or « Délibération » and expects the same
units; SQLite's ``lower()`` and ``LIKE`` only fold ASCII, and neither database ignores accents
without an extension. So each unit keeps its searchable text folded once, at ingest
(``ArchiveUnit.title_folded`` and ``ArchiveUnit.search_text``), the full-text indexes of both
databases are built from those columns (``sae.catalog.fulltext``), and a query is folded the
same way before it is compared — one folding, in Python, for SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

# Letters that Unicode does not decompose into a base letter and a mark.
_LIGATURES = str.maketrans(
    {"œ": "oe", "Œ": "oe", "æ": "ae", "Æ": "ae", "ø": "o", "Ø": "o", "ł": "l", "Ł": "l"}
)
_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "ʼ": "'", "`": "'"})

#: What the index keeps of one unit's text: a description or an extracted text longer than this
#: is cut (PostgreSQL refuses a ``tsvector`` over 1 MiB, and a unit is found by its first pages).
MAX_SEARCH_TEXT = 200_000

# A word as both indexes see it: letters and digits (FTS5's unicode61 and PostgreSQL's parser
# split on everything else), so "au-root" is the two words "au" and "root", one after the other.
_WORD = re.compile(r"[^\W_]+")
_QUOTED = re.compile(r'"([^"]*)"?')


def fold(text: str) -> str:
    """``text`` without case, accents or runs of white space (« Œuvre  d’Été » → "oeuvre d'ete")."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_LIGATURES).translate(_APOSTROPHES))
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(bare.casefold().split())


def search_text(
    title: str | None,
    description: str | None,
    sip_id: str | None,
    extra: Iterable[str | None] = (),
) -> str:
    """What a unit is found by: title, description, identifiers, keywords, producer (``extra``),
    folded, one field a line, cut at :data:`MAX_SEARCH_TEXT`."""
    parts = (title, description, sip_id, *extra)
    return "\n".join(fold(part) for part in parts if part)[:MAX_SEARCH_TEXT]


@dataclass(frozen=True)
class Term:
    """One thing a query asks for: its words in this order, the last one maybe a prefix."""

    words: tuple[str, ...]
    prefix: bool


def parse_query(q: str) -> list[Term]:
    """The terms of a search box's text, every one required, in any order.

    ``"conseil municipal"`` in quotes is a phrase (those words, in that order, whole);
    any other word is also a prefix (« délib » finds « délibération »); words joined by
    punctuation (« AU-12 », « l'éclairage ») are a phrase whose last word is a prefix. Case,
    accents and ligatures are folded (:func:`fold`); what is not a letter or a digit is not
    searched for. No term: nothing to search (an empty list).
    """
    terms: list[Term] = []
    rest: list[str] = []
    position = 0
    for match in _QUOTED.finditer(q):
        rest.append(q[position : match.start()])
        words = tuple(_WORD.findall(fold(match.group(1))))
        if words:
            terms.append(Term(words, prefix=False))
        position = match.end()
    rest.append(q[position:])
    for chunk in " ".join(rest).split():
        words = tuple(_WORD.findall(fold(chunk)))
        if words:
            terms.append(Term(words, prefix=True))
    return terms
