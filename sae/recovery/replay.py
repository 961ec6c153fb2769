"""Replaying journal events into a catalogue (issue 17): one function per event type.

Every change of state SAE makes is a journal event whose leaf carries what it takes to replay
it; the catalogue is then a projection of the transfers' descriptions and the journal, and a
rebuild is a replay of the leaves in order. Each owner registers the replays of its own events
in its own module (``sae.ingest.replay``, ``sae.retention.replay``, ``sae.storage.replay``…)
with :func:`replays`; events that change nothing a rebuild restores (a read, a token's
creation: tokens are not rebuilt) are declared with :func:`changes_no_state`.
``tests/recovery/test_replay_registry.py`` fails when a type SAE journals is neither.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from sae.storage.base import StorageOffer


class LeafFormatError(ValueError):
    """Bytes that are not a version-1 journal leaf."""


@dataclass(frozen=True, slots=True)
class LeafEvent:
    """A journal leaf, parsed (the fields of docs/journal.md §1)."""

    index: int
    type: str
    actor: str
    occurred_at: dt.datetime
    transfer_id: str | None
    unit_id: str | None
    object_id: str | None
    digests: dict[str, str]
    payload: dict[str, Any]
    leaf: bytes

    @classmethod
    def parse(cls, leaf: bytes) -> LeafEvent:
        """The fields of a leaf's exact bytes (as ``sae.journal.service.encode_leaf`` writes)."""
        try:
            doc = json.loads(leaf)
            at = dt.datetime.fromisoformat(str(doc["at"]).replace("Z", "+00:00"))
            return cls(
                index=int(doc["index"]),
                type=str(doc["type"]),
                actor=str(doc["actor"]),
                occurred_at=at.astimezone(dt.UTC).replace(tzinfo=None),
                transfer_id=doc["transfer"],
                unit_id=doc["unit"],
                object_id=doc["object"],
                digests=dict(doc["sha512"]),
                payload=dict(doc["data"]),
                leaf=leaf,
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise LeafFormatError(f"not a journal leaf: {exc}") from exc


@dataclass
class ReplayContext:
    """What a replay may use: the catalogue being rebuilt (its session, in the rebuild's
    transaction) and the offer it is rebuilt from (to read ``transfers/<id>.zip`` and other
    metadata objects). ``notes`` collects what a replay wants the rebuild's report to say."""

    session: Session
    offer: StorageOffer
    notes: list[str] = field(default_factory=list)


Replay = Callable[[ReplayContext, LeafEvent], None]

#: Event type -> its replay. Filled by the owners' modules at import (see :func:`load_all`).
REPLAYS: dict[str, Replay] = {}
#: Event types that change nothing a rebuild restores, with the reason (said in the docs).
NO_STATE: dict[str, str] = {}


def replays(*types: str) -> Callable[[Replay], Replay]:
    """Register ``fn`` as the replay of events of ``types``."""

    def register(fn: Replay) -> Replay:
        for type_ in types:
            if type_ in REPLAYS or type_ in NO_STATE:
                raise ValueError(f"{type_}: registered twice")
            REPLAYS[type_] = fn
        return fn

    return register


def changes_no_state(type_: str, reason: str) -> None:
    """Declare that events of ``type_`` are journaled but change nothing a rebuild restores."""
    if type_ in REPLAYS or type_ in NO_STATE:
        raise ValueError(f"{type_}: registered twice")
    NO_STATE[type_] = reason


#: The modules that register replays, one per owner of events.
OWNERS = (
    "sae.access.replay",
    "sae.ingest.replay",
    "sae.retention.replay",
    "sae.storage.replay",
    "sae.auth.replay",
    "sae.recovery.backup",
    "sae.recovery.drill",
    "sae.journal.witnessing",
    "sae.journal.replay",
    "sae.pastell.replay",
    "sae.extraction.replay",
    "sae.contracts.replay",
)


def load_all() -> None:
    """Import every owner's replays (idempotent)."""
    import importlib

    for name in OWNERS:
        importlib.import_module(name)


class UnknownEventType(LookupError):
    """A leaf of a type with no replay and not declared stateless: the rebuild stops."""


def apply(context: ReplayContext, event: LeafEvent) -> None:
    """Replay one leaf into the catalogue (nothing for a stateless type)."""
    replay = REPLAYS.get(event.type)
    if replay is not None:
        replay(context, event)
    elif event.type not in NO_STATE:
        raise UnknownEventType(f"leaf {event.index}: no replay for event type {event.type!r}")


# The rebuild's own summary (``sae.recovery.rebuild``): the rows it counts are restored from
# their own leaves; a rebuild of a rebuilt catalogue has nothing to do for it.
changes_no_state("catalog.rebuilt", "a rebuild's summary: what it rebuilt has its own leaves")
# ``sae migrate-db`` (``sae.migrate_db``): the catalogue moved whole; its rows have their leaves.
changes_no_state("catalog.migrated", "a move's summary: the rows moved have their own leaves")
