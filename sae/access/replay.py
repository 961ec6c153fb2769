"""Replays of the access events (see :mod:`sae.recovery.replay`): dérogations are archival
decisions, so a catalogue rebuilt from the journal has them, granted units and dates included;
reads by readers and depositors are the register of communications, rebuilt from their events
(a read by the staff, or one journaled before the register, writes no row).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sae.access import derogations, register
from sae.access.models import Derogation
from sae.recovery.replay import LeafEvent, ReplayContext, replays
from sae.retention.errors import ReplayMismatch


def _mismatch(event: LeafEvent, detail: str) -> ReplayMismatch:
    return ReplayMismatch(
        f"leaf {event.index} ({event.type}): {detail}", leaf=event.index, type=event.type
    )


def _need(event: LeafEvent, key: str, kind: type[Any] = str) -> Any:
    value = event.payload.get(key)
    if not isinstance(value, kind):
        raise _mismatch(event, f"the leaf has no {kind.__name__} {key!r}, which its replay needs")
    return value


def _time(event: LeafEvent, key: str) -> datetime:
    raw = _need(event, key)
    try:
        at = datetime.fromisoformat(raw)
    except ValueError:
        raise _mismatch(event, f"{key!r} is not an ISO 8601 time: {raw!r}") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _derogation(ctx: ReplayContext, event: LeafEvent) -> Derogation:
    derogation_id = _need(event, "derogation_id")
    found = ctx.session.get(Derogation, derogation_id)
    if found is None or found.state != "requested":
        raise _mismatch(event, f"no dérogation {derogation_id} awaiting a decision")
    return found


@replays("derogation.requested")
def replay_requested(ctx: ReplayContext, event: LeafEvent) -> None:
    units = _need(event, "units", list)
    ctx.session.add(
        Derogation(
            id=_need(event, "derogation_id"),
            user_id=_need(event, "user_id"),
            login=_need(event, "login"),
            units=[str(u) for u in units],
            purpose=_need(event, "purpose"),
            state="requested",
            requested_at=_time(event, "requested_at"),
            requested_by=event.actor,
        )
    )
    ctx.session.flush()


@replays("derogation.granted")
def replay_granted(ctx: ReplayContext, event: LeafEvent) -> None:
    d = _derogation(ctx, event)
    try:
        until = date.fromisoformat(_need(event, "until"))
    except ValueError:
        raise _mismatch(event, "'until' is not an ISO 8601 date") from None
    derogations.apply_grant(
        ctx.session,
        d,
        actor=event.actor,
        until=until,
        reference=_need(event, "reference"),
        at=_time(event, "decided_at"),
    )


@replays("derogation.refused")
def replay_refused(ctx: ReplayContext, event: LeafEvent) -> None:
    d = _derogation(ctx, event)
    derogations.apply_refusal(
        d, actor=event.actor, reason=_need(event, "reason"), at=_time(event, "decided_at")
    )
    ctx.session.flush()


@replays("access.unit_read", "access.object_read", "access.dip_exported")
def replay_read(ctx: ReplayContext, event: LeafEvent) -> None:
    entry = event.payload.get("register")
    if entry is not None and not (
        isinstance(entry, dict)
        and isinstance(entry.get("login"), str)
        and isinstance(entry.get("role"), str)
        and isinstance(entry.get("units"), list)
        and all(isinstance(u, list) and len(u) == 3 for u in entry["units"])
    ):
        raise _mismatch(event, "its 'register' is not the account, role and units' bases")
    register.record(
        ctx.session,
        leaf=event.index,
        at=event.occurred_at,
        event_type=event.type,
        object_id=event.object_id,
        payload=event.payload,
    )
