"""Errors of the rebuild of the catalogue from an offer (``sae rebuild``).

::

    Conflict (409)
    └── RebuildTargetNotEmpty   the target catalogue holds rows that no rebuild of it left
    UnprocessableEntity (422)
    └── RebuildStopped          what the offer holds does not verify: the rebuild stops
        ├── SegmentInvalid      a journal segment (format, gap, count, index, root, head)
        └── DescriptionInvalid  a transfer's description (``transfers/<id>.zip``)

A stop names what is wrong (``key``: the segment's or the description's key on the offer;
``kind``: what check failed) and is never papered over: what was committed before it stays,
marked as a rebuild in progress, and the same command resumes once the offer is repaired.
"""

from __future__ import annotations

from sae.errors import Conflict, UnprocessableEntity


class RebuildTargetNotEmpty(Conflict):
    """The target database already holds a catalogue (or another offer's rebuild)."""

    code = "rebuild.target_not_empty"


class RebuildStopped(UnprocessableEntity):
    """The offer's content does not verify; ``key`` and ``kind`` say where and what."""

    code = "rebuild.stopped"

    def __init__(self, key: str, kind: str, message: str) -> None:
        super().__init__(f"{key}: {kind}: {message}", key=key, kind=kind)
        self.key = key
        self.kind = kind


class SegmentInvalid(RebuildStopped):
    """A journal segment that does not verify (or is missing: a gap)."""

    code = "rebuild.segment_invalid"


class DescriptionInvalid(RebuildStopped):
    """A transfer's description that is missing, unreadable or contradicts the journal."""

    code = "rebuild.description_invalid"
