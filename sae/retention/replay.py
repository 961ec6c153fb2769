"""Replays of the retention events (see :mod:`sae.recovery.replay`).

Each event of the referential, the holds and the disposal circuit carries in its leaf what it
takes to make the same rows again, timestamps included; the replay calls the functions the live
act called (``apply_referential``, ``refresh_for_rules``, ``cover``, ``make_lines``,
``fingerprint_lines``, ``keep_unit``, ``destroy_object``, ``destroy_unit``,
``mark_transferred_units``…). Where a set is large (the units a referential change recomputes,
the lines of a list, their fingerprints), the leaf names the inputs and the replay recomputes
from the catalogue as it stands at that leaf — the same as when the act ran, since every
earlier leaf was replayed — and, where the leaf carries one, checks a digest of the outcome.

A replay that cannot be exact raises :class:`~sae.retention.errors.ReplayMismatch` naming the
leaf: a rebuild stops rather than papering over. The one leniency: a leaf journaled before its
event carried its exact times (``created_at``, ``decided_at``…) takes the leaf's own time, and
the rebuild's report says so (``ReplayContext.notes``). docs/recovery.md, "Replay of retention
events", lists what each leaf carries.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import select

from sae.catalog.models import ArchiveUnit, DataObject
from sae.recovery.replay import LeafEvent, ReplayContext, changes_no_state, replays
from sae.retention import dates, disposal, execution, holds, outgoing, referential
from sae.retention.errors import ReplayMismatch
from sae.retention.models import DisposalLine, DisposalList, Hold, Rule

changes_no_state(
    "rules.minimum_duration_alert",
    "a referential refused for a duration below the minimum: the alert changes no rule",
)

# --- reading a leaf ----------------------------------------------------------------------------


def _mismatch(event: LeafEvent, detail: str) -> ReplayMismatch:
    return ReplayMismatch(
        f"leaf {event.index} ({event.type}): {detail}", leaf=event.index, type=event.type
    )


def _need(event: LeafEvent, key: str) -> Any:
    if key not in event.payload:
        raise _mismatch(event, f"the leaf has no {key!r}, which its replay needs")
    return event.payload[key]


def _text(event: LeafEvent, key: str) -> str:
    value = _need(event, key)
    if not isinstance(value, str):
        raise _mismatch(event, f"{key!r} is not a string")
    return value


def _strings(event: LeafEvent, key: str) -> list[str]:
    value = _need(event, key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _mismatch(event, f"{key!r} is not a list of strings")
    return value


def _time(ctx: ReplayContext, event: LeafEvent, key: str) -> datetime:
    """The exact time the leaf carries under ``key``; the leaf's own time (said in the notes)
    for a leaf journaled before its event carried it."""
    raw = event.payload.get(key)
    if raw is None:
        ctx.notes.append(
            f"leaf {event.index} ({event.type}): no {key!r}, the leaf's time is used instead"
        )
        return event.occurred_at.replace(tzinfo=UTC)
    try:
        at = datetime.fromisoformat(str(raw))
    except ValueError:
        raise _mismatch(event, f"{key!r} is not an ISO 8601 time: {raw!r}") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _day(event: LeafEvent, key: str) -> date:
    raw = _text(event, key)
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise _mismatch(event, f"{key!r} is not an ISO 8601 date: {raw!r}") from None


def _list(ctx: ReplayContext, event: LeafEvent) -> DisposalList:
    list_id = _text(event, "list_id")
    found = ctx.session.get(DisposalList, list_id)
    if found is None:
        raise _mismatch(event, f"no disposal list {list_id} in the rebuilt catalogue")
    return found


def _unit(ctx: ReplayContext, event: LeafEvent) -> ArchiveUnit:
    unit = ctx.session.get(ArchiveUnit, event.unit_id) if event.unit_id else None
    if unit is None:
        raise _mismatch(event, f"no archive unit {event.unit_id} in the rebuilt catalogue")
    return unit


def _require_units(ctx: ReplayContext, event: LeafEvent, unit_ids: list[str]) -> None:
    found: set[str] = set()
    for i in range(0, len(unit_ids), dates.BATCH):
        found.update(
            ctx.session.scalars(
                select(ArchiveUnit.id).where(ArchiveUnit.id.in_(unit_ids[i : i + dates.BATCH]))
            )
        )
    missing = [u for u in unit_ids if u not in found]
    if missing:
        raise _mismatch(event, f"units not in the rebuilt catalogue: {', '.join(missing[:10])}")


def _object(ctx: ReplayContext, event: LeafEvent) -> DataObject:
    obj = ctx.session.get(DataObject, event.object_id) if event.object_id else None
    if obj is None:
        raise _mismatch(event, f"no data object {event.object_id} in the rebuilt catalogue")
    return obj


def _line(ctx: ReplayContext, event: LeafEvent, d: DisposalList, unit_id: str) -> DisposalLine:
    line = ctx.session.scalar(
        select(DisposalLine).where(DisposalLine.list_id == d.id, DisposalLine.unit_id == unit_id)
    )
    if line is None:
        raise _mismatch(event, f"unit {unit_id} is not on list {d.reference}")
    return line


def _check(event: LeafEvent, what: str, journaled: Any, replayed: Any) -> None:
    if journaled != replayed:
        raise _mismatch(event, f"the replay made {what} {replayed!r}, the leaf says {journaled!r}")


def _check_digest(ctx: ReplayContext, event: LeafEvent, key: str, what: str, replayed: str) -> None:
    journaled = event.payload.get(key)
    if journaled is None:
        ctx.notes.append(f"leaf {event.index} ({event.type}): no {key!r}, {what} not checked")
        return
    _check(event, f"{what} with SHA-256", journaled, replayed)


# --- the referential ---------------------------------------------------------------------------


@replays("rules.imported")
def replay_rules_imported(ctx: ReplayContext, event: LeafEvent) -> None:
    """The imported version, whole, applied as the import applied it."""
    rows = _need(event, "referential")
    if not isinstance(rows, list):
        raise _mismatch(event, "'referential' is not a list of rules")
    try:
        specs = [referential.RuleSpec(**row) for row in rows]
    except TypeError as exc:
        raise _mismatch(event, f"a rule of 'referential' is not a rule: {exc}") from None
    before = set(ctx.session.scalars(select(Rule.id)))
    added, changed = referential.apply_referential(
        ctx.session, specs, now=_time(ctx, event, "updated_at")
    )
    removed = len(before - {spec.id for spec in specs})
    _check(
        event,
        "(added, changed, removed)",
        (event.payload.get("added"), event.payload.get("changed"), event.payload.get("removed")),
        (added, changed, removed),
    )


@replays("rules.end_dates_recomputed")
def replay_end_dates_recomputed(ctx: ReplayContext, event: LeafEvent) -> None:
    """The units that use the changed rules, recomputed from the catalogue at this leaf."""
    _, count = dates.refresh_for_rules(
        ctx.session, _strings(event, "rules"), computed_at=_time(ctx, event, "computed_at")
    )
    _check(event, "a number of recomputed units", event.payload.get("units"), count)


# --- holds -------------------------------------------------------------------------------------


@replays("hold.placed")
def replay_hold_placed(ctx: ReplayContext, event: LeafEvent) -> None:
    """The hold and the units it covered: those named and their descendants at this leaf."""
    until = event.payload.get("until")
    hold = Hold(
        id=_text(event, "hold_id"),
        reason=_text(event, "reason"),
        owner=_text(event, "owner"),
        until=_day(event, "until") if until is not None else None,
        created_at=_time(ctx, event, "created_at"),
    )
    units = _strings(event, "units")
    _require_units(ctx, event, units)
    covered = holds.cover(ctx.session, hold, units)
    _check(event, "a number of covered units", event.payload.get("covered"), len(covered))


@replays("hold.lifted")
def replay_hold_lifted(ctx: ReplayContext, event: LeafEvent) -> None:
    hold_id = _text(event, "hold_id")
    hold = ctx.session.get(Hold, hold_id)
    if hold is None:
        raise _mismatch(event, f"no hold {hold_id} in the rebuilt catalogue")
    hold.lifted_at = _time(ctx, event, "lifted_at")
    hold.lifted_by = event.actor
    ctx.session.flush()


# --- disposal lists ----------------------------------------------------------------------------


@replays("disposal.list_created")
def replay_list_created(ctx: ReplayContext, event: LeafEvent) -> None:
    """The list, and its lines made again by ``make_lines`` from the units the leaf names."""
    final_action = _text(event, "final_action")
    if final_action not in disposal.FINAL_ACTIONS:
        raise _mismatch(event, f"final action {final_action!r}")
    producer = event.payload.get("producer")
    population = _need(event, "population")
    if not isinstance(population, int):
        raise _mismatch(event, "'population' is not a whole number")
    d = DisposalList(
        id=_text(event, "list_id"),
        reference=_text(event, "reference"),
        final_action=final_action,
        producer=producer if isinstance(producer, str) else None,
        due_before=_day(event, "due_before"),
        state="draft",
        created_at=_time(ctx, event, "created_at"),
        created_by=event.actor,
        notification_object_ids=[],
    )
    ctx.session.add(d)
    ctx.session.flush()
    units = _strings(event, "units")
    _require_units(ctx, event, units)
    lines = disposal.make_lines(ctx.session, d, units, population=population)
    _check(
        event,
        "sampled units",
        _strings(event, "sampled"),
        [ln.unit_id for ln in lines if ln.state == "sampled"],
    )
    _check_digest(ctx, event, "lines_sha256", "the lines", disposal.lines_digest(lines))


@replays("disposal.submitted")
def replay_submitted(ctx: ReplayContext, event: LeafEvent) -> None:
    d = _list(ctx, event)
    d.state = "submitted"
    d.submitted_at = _time(ctx, event, "submitted_at")
    d.submitted_by = event.actor
    ctx.session.flush()


@replays("disposal.approved")
def replay_approved(ctx: ReplayContext, event: LeafEvent) -> None:
    """Approved, every line fingerprinted again on the day it was (``fingerprint_lines``)."""
    d = _list(ctx, event)
    decided_at = _time(ctx, event, "decided_at")
    day = _day(event, "fingerprint_day") if "fingerprint_day" in event.payload else None
    if day is None:
        ctx.notes.append(
            f"leaf {event.index} ({event.type}): no 'fingerprint_day', the day of the leaf is used"
        )
        day = decided_at.date()
    lines = disposal.fingerprint_lines(ctx.session, d, day)
    d.state = "approved"
    d.decided_at = decided_at
    d.decided_by = event.actor
    d.decision_comment = _text(event, "comment")
    ctx.session.flush()
    _check_digest(
        ctx, event, "lines_sha256", "the fingerprinted lines", disposal.lines_digest(lines)
    )


@replays("disposal.rejected")
def replay_rejected(ctx: ReplayContext, event: LeafEvent) -> None:
    d = _list(ctx, event)
    d.state = "rejected"
    d.decided_at = _time(ctx, event, "decided_at")
    d.decided_by = event.actor
    d.decision_comment = _text(event, "comment")
    ctx.session.flush()


@replays("disposal.visa_recorded")
def replay_visa_recorded(ctx: ReplayContext, event: LeafEvent) -> None:
    """The visa, its excluded lines, and the record its signed document became (the leaf's
    unit and object: archived just before, replayed by the ingest's leaves)."""
    d = _list(ctx, event)
    visa_reference = _text(event, "visa_reference")
    excluded = _strings(event, "excluded")
    for uid in excluded:
        _line(ctx, event, d, uid)
    disposal.exclude_at_visa(ctx.session, d, excluded, visa_reference)
    d.state = "visa_recorded"
    d.visa_reference = visa_reference
    d.visa_decision_date = _day(event, "decision_date")
    d.visa_recorded_at = _time(ctx, event, "visa_recorded_at")
    d.visa_recorded_by = event.actor
    d.visa_unit_id = event.unit_id
    d.visa_object_id = event.object_id
    ctx.session.flush()


# --- execution ---------------------------------------------------------------------------------


@replays("disposal.execution_started")
def replay_execution_started(ctx: ReplayContext, event: LeafEvent) -> None:
    """Executing, with no claim: the executor of the lost catalogue is gone, so a rebuilt one
    may resume at once (the claim and its lease are bookkeeping, not the list's state)."""
    d = _list(ctx, event)
    d.state = "executing"
    d.execution_token = None
    d.execution_started_at = event.occurred_at.replace(tzinfo=UTC)
    ctx.session.flush()


@replays("disposal.execution_refused")
def replay_execution_refused(ctx: ReplayContext, event: LeafEvent) -> None:
    """A refusal after the claim puts the list back (``back_to``); one before changes nothing."""
    d = _list(ctx, event)
    if "back_to" in event.payload:
        back_to = event.payload["back_to"]
    elif event.payload.get("reason") == "recheck_failed":
        back_to = "visa_recorded" if d.final_action == "Destroy" else "approved"
        ctx.notes.append(f"leaf {event.index} ({event.type}): no 'back_to', {back_to} assumed")
    else:
        back_to = None
    if back_to is not None:
        if back_to not in ("visa_recorded", "approved"):
            raise _mismatch(event, f"'back_to' {back_to!r}")
        d.state = back_to
        d.execution_token = None
        ctx.session.flush()


@replays("disposal.line_excluded")
def replay_line_excluded(ctx: ReplayContext, event: LeafEvent) -> None:
    d = _list(ctx, event)
    line = _line(ctx, event, d, _unit(ctx, event).id)
    line.state = "excluded"
    line.exclusion_reason = _text(event, "reason")
    line.done_at = _time(ctx, event, "done_at")
    ctx.session.flush()


@replays("disposal.object_destroyed", "disposal.object_transferred")
def replay_object_gone(ctx: ReplayContext, event: LeafEvent) -> None:
    """The object destroyed (or transferred and purged), its copies forgotten, its tombstone
    naming this leaf (``destroy_object``)."""
    d = _list(ctx, event)
    unit = _unit(ctx, event)
    obj = _object(ctx, event)
    if event.digests.get(obj.id, obj.sha512) != obj.sha512:
        raise _mismatch(event, f"object {obj.id} has another SHA-512 than the leaf")
    execution.destroy_object(
        ctx.session,
        unit,
        obj,
        d,
        at=_time(ctx, event, "destroyed_at"),
        leaf_index=event.index,
    )


@replays("disposal.unit_destroyed")
def replay_unit_destroyed(ctx: ReplayContext, event: LeafEvent) -> None:
    d = _list(ctx, event)
    unit = _unit(ctx, event)
    line = _line(ctx, event, d, unit.id)
    execution.destroy_unit(
        ctx.session, unit, line, d, at=_time(ctx, event, "destroyed_at"), leaf_index=event.index
    )


@replays("retention.permanent")
def replay_permanent(ctx: ReplayContext, event: LeafEvent) -> None:
    """Kept permanently: status, end dates recomputed (``keep_unit``), line kept."""
    d = _list(ctx, event)
    unit = _unit(ctx, event)
    line = _line(ctx, event, d, unit.id)
    _check(event, "a sampled line", _need(event, "sampled"), line.state == "sampled")
    execution.keep_unit(ctx.session, unit, line, at=_time(ctx, event, "done_at"))
    line.state = "kept"
    ctx.session.flush()


@replays("disposal.executed")
def replay_executed(ctx: ReplayContext, event: LeafEvent) -> None:
    """Executed, with the notifications archived before this leaf (their records are replayed
    by the ingest's leaves); the certificate, archived after it, by the next leaf."""
    d = _list(ctx, event)
    lines = disposal.lines_of(ctx.session, d.id)
    for key, state in (
        ("destroyed_units", "destroyed"),
        ("kept_units", "kept"),
        ("excluded_units", "excluded"),
    ):
        _check(
            event,
            key.replace("_", " "),
            _strings(event, key),
            [ln.unit_id for ln in lines if ln.state == state],
        )
    d.notification_object_ids = _strings(event, "notifications")
    d.state = "executed"
    d.executed_at = _time(ctx, event, "executed_at")
    d.executed_by = event.actor
    d.execution_token = None
    ctx.session.flush()


@replays("disposal.certificate_archived")
def replay_certificate_archived(ctx: ReplayContext, event: LeafEvent) -> None:
    d = _list(ctx, event)
    obj = _object(ctx, event)
    d.certificate_object_id = obj.id
    ctx.session.flush()


# --- outgoing transfers ------------------------------------------------------------------------


@replays("disposal.transfer_sent")
def replay_transfer_sent(ctx: ReplayContext, event: LeafEvent) -> None:
    d = _list(ctx, event)
    size = _need(event, "sip_size")
    if not isinstance(size, int):
        raise _mismatch(event, "'sip_size' is not a whole number")
    sent_at = event.payload.get("sent_at")
    if not isinstance(sent_at, str):
        sent_at = _time(ctx, event, "sent_at").isoformat()
    d.outgoing_transfer = outgoing.sent_transfer(
        ctx.session,
        d,
        message_identifier=_text(event, "message_identifier"),
        archival_agency=_text(event, "archival_agency"),
        sent_at=sent_at,
        sip_sha512=_text(event, "sip_sha512"),
        sip_size=size,
    )
    _check(
        event, "a number of units", event.payload.get("units"), len(d.outgoing_transfer["units"])
    )
    ctx.session.flush()


def _sent(event: LeafEvent, d: DisposalList) -> dict[str, Any]:
    sent = dict(d.outgoing_transfer or {})
    if sent.get("state") not in ("sent", "refused", "acknowledged"):
        raise _mismatch(event, f"list {d.reference} has no outgoing transfer")
    return sent


@replays("disposal.transfer_refused")
def replay_transfer_refused(ctx: ReplayContext, event: LeafEvent) -> None:
    d = _list(ctx, event)
    d.outgoing_transfer = {
        **_sent(event, d),
        "state": "refused",
        "reply_code": _text(event, "reply_code"),
    }
    ctx.session.flush()


@replays("disposal.transfer_acknowledged")
def replay_transfer_acknowledged(ctx: ReplayContext, event: LeafEvent) -> None:
    """Acknowledged by the reply the leaf names (archived as a record just before); what was
    purged follows in ``disposal.object_transferred`` and ``disposal.transfer_purged``."""
    d = _list(ctx, event)
    d.outgoing_transfer = {
        **_sent(event, d),
        "state": "acknowledged",
        "reply_code": _text(event, "reply_code"),
        "reply_identifier": _text(event, "reply_identifier"),
        "reply_object_id": _object(ctx, event).id,
        "locked": [],
    }
    ctx.session.flush()


@replays("disposal.transfer_purged")
def replay_transfer_purged(ctx: ReplayContext, event: LeafEvent) -> None:
    """The units with nothing left here go (``mark_transferred_units``, checked against the
    leaf's digest), and the transfer's state is the one the acknowledgement left."""
    d = _list(ctx, event)
    sent = _sent(event, d)
    gone = outgoing.mark_transferred_units(ctx.session, d, sent, at=_time(ctx, event, "at"))
    _check(event, "a number of units gone", event.payload.get("destroyed_units"), len(gone))
    _check_digest(
        ctx, event, "destroyed_units_sha256", "the units gone", outgoing.units_digest(gone)
    )
    d.outgoing_transfer = {
        **sent,
        "state": "acknowledged",
        "reply_code": _text(event, "reply_code"),
        "reply_identifier": _text(event, "reply_identifier"),
        "reply_object_id": _text(event, "reply_object_id"),
        "locked": _strings(event, "locked"),
    }
    ctx.session.flush()
