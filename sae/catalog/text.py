"""Text as the catalogue's search compares it: no case, no accents, one space between words.

An archivist types « deliberation », « DÉLIBÉRATION » or « Délibération » and expects the same
units; SQLite's ``lower()`` and ``LIKE`` only fold ASCII, and neither database ignores accents
without an extension. So each unit keeps its searchable text folded once, at ingest
(``ArchiveUnit.search_text``), and a query is folded the same way before it is compared.
"""

from __future__ import annotations

import unicodedata

# Letters that Unicode does not decompose into a base letter and a mark.
_LIGATURES = str.maketrans(
    {"œ": "oe", "Œ": "oe", "æ": "ae", "Æ": "ae", "ø": "o", "Ø": "o", "ł": "l", "Ł": "l"}
)
_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "ʼ": "'", "`": "'"})


def fold(text: str) -> str:
    """``text`` without case, accents or runs of white space (« Œuvre  d’Été » → "oeuvre d'ete")."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_LIGATURES).translate(_APOSTROPHES))
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(bare.casefold().split())


def search_text(title: str | None, description: str | None, sip_id: str | None) -> str:
    """What a unit is found by: its title, description and identifier in the SIP, folded."""
    return "\n".join(fold(part) for part in (title, description, sip_id) if part)
