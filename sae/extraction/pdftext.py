"""A PDF's text layer, read with pypdf, bounded.

Bounded in pages (:data:`MAX_PAGES`) and characters (the index keeps
:data:`sae.catalog.text.MAX_SEARCH_TEXT` of a unit anyway). A PDF that pypdf cannot read —
broken, encrypted with a password, not a PDF at all — has no text: that is what the result
says, with a note in French for the archivist, never an error of the archive.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sae.catalog.text import MAX_SEARCH_TEXT, fold

#: Pages read at most: the first ones find a document (and a 5,000-page register is read in
#: about 20 s, measured at 3.5 ms a page of text on the reference machine).
MAX_PAGES = 1000

# pypdf reports every oddity of a damaged file through logging: one line of ours is enough.
logging.getLogger("pypdf").setLevel(logging.ERROR)


@dataclass(frozen=True)
class Extracted:
    """What was read: ``text`` (folded) if any, else ``empty`` with a note saying why."""

    state: str  # text | empty
    text: str
    pages: int
    note: str | None = None


def pdf_text(path: Path | BinaryIO) -> Extracted:
    """The folded text layer of the PDF at ``path`` (or in a binary stream)."""
    from pypdf import PdfReader

    try:
        reader = PdfReader(path)
        if reader.is_encrypted:
            # An owner password alone (printing forbidden…) opens with the empty user password.
            try:
                opened = bool(reader.decrypt(""))
            except Exception:  # noqa: BLE001 - an unsupported cipher is a PDF without text
                opened = False
            if not opened:
                return Extracted("empty", "", 0, "PDF chiffré : texte non lisible")
        parts: list[str] = []
        size = 0
        pages = 0
        for page in reader.pages:
            if pages >= MAX_PAGES or size >= MAX_SEARCH_TEXT:
                break
            pages += 1
            folded = fold(page.extract_text() or "")
            if folded:
                parts.append(folded)
                size += len(folded) + 1
    except Exception as exc:  # noqa: BLE001 - pypdf raises many kinds on a damaged file
        return Extracted("empty", "", 0, f"PDF illisible ({type(exc).__name__})")
    text = " ".join(parts)[:MAX_SEARCH_TEXT]
    if not text:
        return Extracted("empty", "", pages, "aucun texte (document numérisé sans OCR ?)")
    return Extracted("text", text, pages)
