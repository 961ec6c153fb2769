"""Replays of the contract and profile leaves (see :mod:`sae.recovery.replay`).

Each leaf carries the whole contract (``contracts.saved``) or the whole profile document
(``profiles.saved``) with their clocks: the replay makes the same row with the functions the
live act used (``apply_contract``, ``apply_profile``). A profile's document is checked against
the digest its leaf names.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from sae.contracts import service
from sae.contracts.errors import ContractReplayMismatch
from sae.recovery.replay import LeafEvent, ReplayContext, replays


def _mismatch(event: LeafEvent, detail: str) -> ContractReplayMismatch:
    return ContractReplayMismatch(
        f"leaf {event.index} ({event.type}): {detail}", leaf=event.index, type=event.type
    )


def _mapping(event: LeafEvent, key: str) -> dict[str, Any]:
    value = event.payload.get(key)
    if not isinstance(value, dict) or not isinstance(value.get("id"), str):
        raise _mismatch(event, f"the leaf has no {key!r} with an id, which its replay needs")
    return value


def _time(event: LeafEvent, key: str) -> datetime:
    value = event.payload.get(key)
    if not isinstance(value, str):
        return event.occurred_at
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise _mismatch(event, f"{key!r} is not a date and time") from None


@replays("contracts.saved")
def replay_contract_saved(ctx: ReplayContext, event: LeafEvent) -> None:
    """The contract, whole, as the act left it."""
    service.apply_contract(
        ctx.session,
        _mapping(event, "contract"),
        created_at=_time(event, "created_at"),
        updated_at=_time(event, "updated_at"),
    )


@replays("profiles.saved")
def replay_profile_saved(ctx: ReplayContext, event: LeafEvent) -> None:
    """The profile's document from its leaf, checked against the digest the leaf names."""
    values = _mapping(event, "profile")
    document = event.payload.get("document")
    if not isinstance(document, str):
        raise _mismatch(event, "the leaf has no 'document'")
    data = document.encode("utf-8")
    if hashlib.sha512(data).hexdigest() != values.get("sha512"):
        raise _mismatch(event, "the profile's document does not have the SHA-512 of its leaf")
    service.apply_profile(
        ctx.session,
        values,
        data,
        created_at=_time(event, "created_at"),
        updated_at=_time(event, "updated_at"),
    )
