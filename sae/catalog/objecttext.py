"""The text of data objects in their units' search document.

A unit is found by its description (``sae.catalog.text.search_text``) and by the text of the
objects of its group: a PDF's text layer now, the OCR of a scan later. That text is derived
data, one :class:`~sae.catalog.models.ObjectText` row per object read (``sae.extraction``),
and it reaches the index through the unit's ``search_text`` column, after the unit's own text
and :data:`SEPARATOR` — so the triggers of migration ``0015_fulltext`` index it exactly as they
index the rest, on SQLite and PostgreSQL, and drop it with the unit.

:func:`refresh_groups` rewrites the objects' part of the units of some groups from the rows;
it is called whenever a row is written, and after an object leaves (a trigger of migration
``0021_object_text`` deletes its row when its status becomes destroyed or withdrawn).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from sae.catalog.models import GONE, ArchiveUnit, DataObject, ObjectText
from sae.catalog.text import MAX_SEARCH_TEXT

#: Between a unit's own text and its objects' text in ``search_text``. The record separator
#: is white space to :func:`sae.catalog.text.fold` (so no folded field ever holds one) and to
#: both indexes' tokenizers (so it is never a word).
SEPARATOR = "\n\x1e\n"


def own_text(search_text: str) -> str:
    """The part of a unit's ``search_text`` that comes from its description."""
    return search_text.split(SEPARATOR, 1)[0]


def with_object_text(own: str, texts: Sequence[str]) -> str:
    """A unit's search document: its own text, then its objects' (cut at the index's cap)."""
    body = " ".join(text for text in texts if text)
    if not body:
        return own
    return (own + SEPARATOR + body)[:MAX_SEARCH_TEXT]


def refresh_groups(session: Session, group_ids: Iterable[str]) -> int:
    """Rewrite the objects' part of the search document of every unit still archived in these
    groups, from the text of their objects still archived; the units changed (flush, no
    commit)."""
    ids = sorted(set(group_ids))
    if not ids:
        return 0
    texts: dict[str, list[str]] = {}
    rows = session.execute(
        select(DataObject.group_id, ObjectText.text)
        .join(ObjectText, ObjectText.object_id == DataObject.id)
        .where(
            DataObject.group_id.in_(ids),
            DataObject.status.not_in(GONE),
            ObjectText.state == "text",
        )
        .order_by(DataObject.group_id, DataObject.sip_id, DataObject.id)
    )
    for group_id, text in rows:
        texts.setdefault(group_id, []).append(text)
    changed = 0
    for unit in session.scalars(
        select(ArchiveUnit).where(
            ArchiveUnit.data_object_group_id.in_(ids), ArchiveUnit.status.not_in(GONE)
        )
    ):
        assert unit.data_object_group_id is not None
        document = with_object_text(
            own_text(unit.search_text), texts.get(unit.data_object_group_id, [])
        )
        if document != unit.search_text:
            unit.search_text = document
            changed += 1
    session.flush()
    return changed
