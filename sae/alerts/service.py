"""Alerts: which conditions need a person, deduplicated in the database, sent by the background.

Where the conditions come from — one owner each, nothing else raises an alert:

* **the journal**, for facts SAE already records as events. :func:`read_journal` reads the
  leaves written since its cursor (committed only: an alert is never sent for a fact rolled
  back) and :func:`from_event` maps each to an alert:

  ========================================  ===================================================
  event                                     alert
  ========================================  ===================================================
  ``storage.copy_damaged``                  ``copy_damaged`` (subject: object and offer)
  ``integrity.failed``                      ``copy_damaged`` (found while serving the content)
  ``storage.copy_repaired``                 clears ``copy_damaged`` for that copy
  ``storage.audit_failed``                  ``audit_failed``; ``storage.audit_completed`` clears
  ``recovery.drill_completed`` not          ``drill_failed``; an identical drill clears
  identical
  ``journal.witness_refused``               ``witness_refused`` (subject: the witness)
  ========================================  ===================================================

* **the state** that ``/health`` reports, checked every round: an offer that does not answer
  (``offer_down``), the TSA's last check failed (``tsa_down``: the result the sealer and
  ``/health`` got, asking at most every ``SAE_TSA_CHECK_MINUTES``; never a token bought here),
  copies still in
  quarantine long after their window (``quarantine_overdue``, per offer). They clear when the
  state is good again.

Deduplication (:func:`raise_alert`): one row per condition and subject. A condition already
standing is not sent again before ``SAE_ALERT_REPEAT_HOURS`` (then a reminder); once cleared,
its next occurrence is a new alert. The rows survive restarts, and the rounds of several
processes are serialised by a database lock, so an installation sends each alert once.

Sending (:func:`send_pending`) happens in the background worker (``sae.alerts.worker``),
never on a request's path: a mail server that is down delays the alert (retried with a growing
delay, logged) and blocks nothing else.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from sae.alerts.models import Alert, AlertCursor
from sae.config import Settings
from sae.db import lock_for_writing, transaction, utcnow
from sae.journal.models import Event

log = logging.getLogger("sae.alerts")

COPY_DAMAGED = "copy_damaged"
OFFER_DOWN = "offer_down"
TSA_DOWN = "tsa_down"
AUDIT_FAILED = "audit_failed"
DRILL_FAILED = "drill_failed"
WITNESS_REFUSED = "witness_refused"
QUARANTINE_OVERDUE = "quarantine_overdue"
CONDITIONS = (
    COPY_DAMAGED,
    OFFER_DOWN,
    TSA_DOWN,
    AUDIT_FAILED,
    DRILL_FAILED,
    WITNESS_REFUSED,
    QUARANTINE_OVERDUE,
)

#: The journal events read for alerts (the rest is skipped by the query).
ALERT_EVENTS = (
    "storage.copy_damaged",
    "integrity.failed",
    "storage.copy_repaired",
    "storage.audit_failed",
    "storage.audit_completed",
    "recovery.drill_completed",
    "journal.witness_refused",
)
#: Leaves read per query, and queries per round.
BATCH = 500
MAX_BATCHES = 20
#: The lock that makes one process at a time evaluate or claim alerts.
_ALERTS_LOCK = 0x5AE0A1E7
#: How long a claimed alert is left to the process sending it.
SEND_LEASE = timedelta(minutes=5)
#: Retry delays of a notification a channel refused: 1, 2, 4… minutes, at most an hour.
FIRST_RETRY = timedelta(minutes=1)
LAST_RETRY = timedelta(hours=1)
JOURNAL_CURSOR = "journal"


@dataclass(frozen=True)
class Change:
    """What one observation does: raise (``details`` given) or clear an alert."""

    condition: str
    subject: str
    details: dict[str, Any] | None  # None: clear
    #: When what is reported was seen, for a state only one process may have seen (the TSA's
    #: last check is each process's own): an observation older than the one the alert last
    #: took is ignored, so two processes that checked at different times do not make it flap.
    observed_at: datetime | None = None

    @property
    def raises(self) -> bool:
        return self.details is not None


# --------------------------------------------------------------------------- deduplication


def raise_alert(
    session: Session,
    condition: str,
    subject: str,
    details: dict[str, Any],
    *,
    repeat: timedelta,
    now: datetime | None = None,
) -> Alert:
    """Record that ``condition`` holds for ``subject``; pending a send when it is new, was
    cleared since, or was last sent more than ``repeat`` ago (a reminder)."""
    now = now or utcnow()
    alert = session.scalar(
        select(Alert).where(Alert.condition == condition, Alert.subject == subject)
    )
    if alert is None:
        alert = Alert(
            condition=condition,
            subject=subject,
            first_seen_at=now,
            notifications=0,
            attempts=0,
            delivered=[],
        )
        session.add(alert)
        fresh = True
    else:
        fresh = not alert.active
    alert.last_seen_at = now
    alert.details = details
    if fresh:
        alert.active = True
        alert.first_seen_at = now
        alert.cleared_at = None
        alert.notifications = 0
    if not alert.pending and (
        fresh or alert.notified_at is None or alert.notified_at <= now - repeat
    ):
        alert.pending = True
        alert.attempts = 0
        alert.delivered = []
        alert.next_attempt_at = now
    session.flush()
    return alert


def clear_alert(
    session: Session, condition: str, subject: str, *, now: datetime | None = None
) -> bool:
    """The condition no longer holds: its next occurrence is a new alert. A notification not
    sent yet is still sent (a damaged copy repaired at once was still damaged). Whether a
    standing alert was cleared."""
    alert = session.scalar(
        select(Alert).where(
            Alert.condition == condition, Alert.subject == subject, Alert.active.is_(True)
        )
    )
    if alert is None:
        return False
    alert.active = False
    alert.cleared_at = now or utcnow()
    session.flush()
    return True


def _stale(session: Session, change: Change) -> bool:
    """Whether ``change`` reports an observation older than the one its alert last took."""
    if change.observed_at is None:
        return False
    alert = session.scalar(
        select(Alert).where(Alert.condition == change.condition, Alert.subject == change.subject)
    )
    if alert is None:
        return False
    last = (alert.details or {}).get("observed_at") if alert.active else None
    if last is not None:
        return change.observed_at <= datetime.fromisoformat(str(last))
    return alert.cleared_at is not None and change.observed_at <= alert.cleared_at


def apply(session: Session, changes: Iterable[Change], settings: Settings) -> None:
    repeat = timedelta(hours=settings.alert_repeat_hours)
    for change in changes:
        if _stale(session, change):
            continue
        if change.details is not None:
            if change.observed_at is not None:
                change.details["observed_at"] = change.observed_at.isoformat()
            raise_alert(session, change.condition, change.subject, change.details, repeat=repeat)
        else:
            clear_alert(session, change.condition, change.subject, now=change.observed_at)


def standing(session: Session, *, include_cleared: bool = False) -> list[Alert]:
    """The alerts standing (or every alert row), newest first."""
    query = select(Alert).order_by(Alert.last_seen_at.desc())
    if not include_cleared:
        query = query.where(Alert.active.is_(True))
    return list(session.scalars(query))


def standing_counts(session: Session) -> dict[str, int]:
    """Alerts standing, by condition (every condition named, 0 included): for the metrics."""
    counts = dict.fromkeys(CONDITIONS, 0)
    rows = session.execute(
        select(Alert.condition, func.count())
        .where(Alert.active.is_(True))
        .group_by(Alert.condition)
    )
    for condition, count in rows:
        counts[str(condition)] = int(count)
    return counts


# --------------------------------------------------------------------------- the journal


def _copy_subject(object_id: str | None, offer: object) -> str:
    return f"{object_id or '?'}@{offer or '?'}"


def from_event(event: Event) -> Change | None:
    """The alert an event raises or clears (None: none)."""
    payload = event.payload or {}
    base = {"leaf_index": event.leaf_index, "occurred_at": event.occurred_at.isoformat()}
    if event.type in ("storage.copy_damaged", "integrity.failed"):
        return Change(
            COPY_DAMAGED,
            _copy_subject(event.object_id, payload.get("offer")),
            {
                **base,
                "object_id": event.object_id,
                "offer": payload.get("offer"),
                "kind": payload.get("kind", "corrupt"),
                "detail": payload.get("detail"),
                "repaired": bool(payload.get("repaired", False)),
                "found_by": "audit" if event.type == "storage.copy_damaged" else "access",
                "audit_id": (payload.get("audit") or {}).get("id")
                if isinstance(payload.get("audit"), dict)
                else None,
            },
        )
    if event.type == "storage.copy_repaired":
        return Change(COPY_DAMAGED, _copy_subject(event.object_id, payload.get("offer")), None)
    if event.type == "storage.audit_failed":
        return Change(
            AUDIT_FAILED,
            "",
            {
                **base,
                "audit_id": payload.get("audit_id"),
                "checked": payload.get("checked"),
                "error": payload.get("error"),
            },
        )
    if event.type == "storage.audit_completed":
        return Change(AUDIT_FAILED, "", None)
    if event.type == "recovery.drill_completed":
        from sae.recovery.drill import IDENTICAL

        outcome = str(payload.get("outcome", ""))
        if outcome == IDENTICAL:
            return Change(DRILL_FAILED, "", None)
        return Change(
            DRILL_FAILED,
            "",
            {
                **base,
                "outcome": outcome,
                "offers": payload.get("offers") or {},
                "report_units": payload.get("report_units") or [],
            },
        )
    if event.type == "journal.witness_refused":
        return Change(
            WITNESS_REFUSED,
            str(payload.get("witness", "")),
            {
                **base,
                "witness": payload.get("witness"),
                "url": payload.get("url"),
                "status": payload.get("status"),
                "tree_size": payload.get("tree_size"),
                "body": str(payload.get("body", ""))[:500],
            },
        )
    return None


def _describe_copy(session: Session, details: dict[str, Any]) -> None:
    """Add what the archivist recognises a record by: its file name, transfer and unit."""
    from sae.catalog.models import ArchiveUnit, DataObject

    object_id = details.get("object_id")
    if not object_id:
        return
    obj = session.get(DataObject, object_id)
    if obj is None:
        return
    details["filename"] = obj.filename
    details["transfer_id"] = obj.transfer_id
    unit = session.scalars(
        select(ArchiveUnit).where(ArchiveUnit.data_object_group_id == obj.group_id).limit(1)
    ).first()
    if unit is not None:
        details["unit_id"] = unit.id
        details["title"] = unit.title


def read_journal(session: Session) -> list[Change]:
    """The changes of the leaves written since the cursor, which moves past them (in the
    caller's transaction). The first call (an archive that never alerted) starts at the
    journal's end: its history is not news."""
    from sae.journal.service import tree_size

    cursor = session.get(AlertCursor, JOURNAL_CURSOR)
    if cursor is None:
        session.add(AlertCursor(name=JOURNAL_CURSOR, leaf_index=tree_size(session)))
        session.flush()
        return []
    # The journal's size first: every leaf below it is committed (the size is written in the
    # same transaction as the leaves), so the cursor never passes a leaf committed while this
    # round read (under READ COMMITTED each statement sees the latest commits).
    end = tree_size(session)
    changes: list[Change] = []
    for _ in range(MAX_BATCHES):
        events = list(
            session.scalars(
                select(Event)
                .where(
                    Event.leaf_index >= cursor.leaf_index,
                    Event.leaf_index < end,
                    Event.type.in_(ALERT_EVENTS),
                )
                .order_by(Event.leaf_index)
                .limit(BATCH)
            )
        )
        for event in events:
            change = from_event(event)
            if change is not None:
                if change.condition == COPY_DAMAGED and change.details is not None:
                    _describe_copy(session, change.details)
                changes.append(change)
        if len(events) < BATCH:
            cursor.leaf_index = max(cursor.leaf_index, end)
            break
        cursor.leaf_index = events[-1].leaf_index + 1
    session.flush()
    return changes


# --------------------------------------------------------------------------- the state


@dataclass(frozen=True)
class State:
    """What the state checks found, gathered outside any transaction (they may be slow)."""

    offers: list[tuple[str, bool, str]]
    #: The TSA's last check in this process: ok, detail, when (None: none yet).
    tsa: tuple[bool, str, datetime] | None


def state_changes(
    session: Session, state: State, offer_set: Any, settings: Settings
) -> list[Change]:
    """Raise or clear the state conditions from ``state`` and the quarantine backlog."""
    from sae.storage.quarantine_watch import overdue_by_offer

    now = utcnow().isoformat()
    changes: list[Change] = []
    for name, ok, detail in state.offers:
        changes.append(
            Change(OFFER_DOWN, name, None if ok else {"offer": name, "detail": detail, "at": now})
        )
    if state.tsa is not None:
        ok, detail, checked_at = state.tsa
        external = settings.tsa_url or "autorité intégrée"
        changes.append(
            Change(
                TSA_DOWN,
                "",
                None if ok else {"tsa": external, "detail": detail, "at": checked_at.isoformat()},
                observed_at=checked_at,
            )
        )
    overdue = overdue_by_offer(session, offer_set, settings)
    for name in offer_set.offers:
        count = overdue.get(name, 0)
        changes.append(
            Change(
                QUARANTINE_OVERDUE,
                name,
                {
                    "offer": name,
                    "copies": count,
                    "quarantine_days": offer_set.offers[name].quarantine_days,
                    "overdue_hours": settings.quarantine_overdue_hours,
                    "at": now,
                }
                if count
                else None,
            )
        )
    return changes


def observe_state(offer_set: Any, settings: Settings) -> State:
    """Ask the offers as ``/health`` does; take the TSA's last result as this process knows it
    (the sealer asks it at most every SAE_TSA_CHECK_MINUTES, and a seal counts): an alert
    round never buys a time-stamp."""
    from sae.journal.keys import last_tsa_check
    from sae.storage.offers import offers_health

    offers = [(h.name, h.ok, h.detail) for h in offers_health(offer_set)]
    last = last_tsa_check(settings)
    tsa = (last.ok, last.detail, last.at) if last is not None else None
    return State(offers=offers, tsa=tsa)


def evaluate(
    sessions: sessionmaker[Session], settings: Settings, offer_set: Any, state: State | None
) -> None:
    """One round of detection: the journal since the cursor, then the state (if observed)."""
    with transaction(sessions) as session:
        lock_for_writing(session, _ALERTS_LOCK)
        changes = read_journal(session)
        if state is not None:
            changes += state_changes(session, state, offer_set, settings)
        apply(session, changes, settings)


# --------------------------------------------------------------------------- sending


@dataclass(frozen=True)
class Notification:
    """What is sent for an alert (composed by ``sae.alerts.texts``)."""

    alert_id: int
    condition: str
    subject_key: str
    title: str
    body: str
    details: dict[str, Any]
    first_seen_at: datetime
    reminder: bool
    active: bool


#: A channel: sends a notification or raises; its name is what ``delivered`` records.
Channel = tuple[str, Callable[[Notification], None]]


def _claim(sessions: sessionmaker[Session]) -> list[Notification]:
    from sae.alerts.texts import compose

    now = utcnow()
    with transaction(sessions) as session:
        lock_for_writing(session, _ALERTS_LOCK)
        alerts = list(
            session.scalars(
                select(Alert)
                .where(Alert.pending.is_(True), Alert.next_attempt_at <= now)
                .order_by(Alert.id)
                .limit(50)
            )
        )
        claimed = []
        for alert in alerts:
            alert.next_attempt_at = now + SEND_LEASE
            title, body = compose(alert)
            claimed.append(
                Notification(
                    alert_id=alert.id,
                    condition=alert.condition,
                    subject_key=alert.subject,
                    title=title,
                    body=body,
                    details=dict(alert.details or {}),
                    first_seen_at=alert.first_seen_at,
                    reminder=alert.notifications > 0,
                    active=alert.active,
                )
            )
        return claimed


def _retry_delay(attempts: int) -> timedelta:
    delay: timedelta = FIRST_RETRY * (2 ** max(attempts - 1, 0))
    return min(delay, LAST_RETRY)


def send_pending(sessions: sessionmaker[Session], channels: list[Channel]) -> int:
    """Send the pending alerts due now on every channel that has not taken them yet; how many
    were sent on all. A channel's failure is logged and retried later, never raised."""
    sent = 0
    # A channel that failed once in this round is not tried again before the next: fifty
    # alerts pending behind a mail server that times out must not hold the worker fifty times.
    down: dict[str, str] = {}
    for notification in _claim(sessions):
        log.warning(
            "alert.%s subject=%s: %s",
            notification.condition,
            notification.subject_key,
            notification.title,
        )
        with transaction(sessions) as session:
            alert = session.get(Alert, notification.alert_id)
            done = set(alert.delivered or []) if alert is not None else set()
        errors = []
        for name, send in channels:
            if name in done:
                continue
            if name in down:
                errors.append(f"{name}: not tried, it failed earlier in the round ({down[name]})")
                continue
            try:
                send(notification)
                done.add(name)
            except Exception as exc:  # a channel down must not stop the others
                down[name] = f"{type(exc).__name__}: {exc}"
                errors.append(f"{name}: {down[name]}")
                log.warning(
                    "alert.send_failed channel=%s condition=%s: %s",
                    name,
                    notification.condition,
                    exc,
                )
        with transaction(sessions) as session:
            alert = session.get(Alert, notification.alert_id)
            if alert is None:
                continue
            now = utcnow()
            alert.delivered = sorted(done)
            if errors:
                alert.attempts += 1
                alert.last_error = "; ".join(errors)[:2000]
                alert.next_attempt_at = now + _retry_delay(alert.attempts)
            else:
                alert.pending = False
                alert.notified_at = now
                alert.notifications += 1
                alert.attempts = 0
                alert.last_error = None
                alert.next_attempt_at = None
                sent += 1
    return sent
