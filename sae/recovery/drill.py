"""The restore drill (issue 17): proof, regularly, that each offer can rebuild the catalogue.

A drill

1. seals a head over every committed leaf and publishes the journal's segments to every offer
   of the strategy, so that the offers hold everything up to now (size N);
2. rebuilds, from each offer of the strategy in turn, a scratch catalogue (a SQLite file under
   ``<data dir>/tmp/``, removed afterwards) with the same code as ``sae rebuild``;
3. compares it with the live catalogue (:mod:`sae.recovery.compare`: counts and rows of every
   rebuilt table, each unit's and object's API representation, the journal's root at N);
4. writes a dated report (JSON ``sae-drill-report/1`` and a PDF in French), archives both as
   records of the archives service (through the ingest, like the disposal certificates), and
   journals the outcome (``recovery.drill_completed``); the console's dashboard shows the last.

Outcomes: ``identical`` (every offer rebuilt the same catalogue), ``different`` (something
differs or a rebuild failed: the report names it), ``inconclusive`` (something differed while
the live catalogue changed during the drill: its journal grew past N; run it again in a quiet
hour). ``sae drill`` exits 0 only for ``identical``.

Scheduled by ``SAE_DRILL_INTERVAL_DAYS`` (default 30, 0 = never) in the background worker.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from sae import db
from sae.auth.service import SYSTEM
from sae.config import Settings
from sae.extraction.service import extract_pending
from sae.journal.models import Event
from sae.journal.publishing import publish_segments
from sae.journal.sealing import seal_now
from sae.journal.service import append_event, tree_size
from sae.recovery.compare import Comparison, compare_catalogues
from sae.recovery.replay import changes_no_state
from sae.storage.offers import OfferSet

log = logging.getLogger("sae.recovery")

FORMAT = "sae-drill-report/1"
EVENT = "recovery.drill_completed"
#: The turn (``sae.journal.publishing.exclusive_turn``) a drilling process holds.
DRILL_TURN = "drill"
IDENTICAL, DIFFERENT, INCONCLUSIVE = "identical", "different", "inconclusive"

changes_no_state(
    EVENT,
    "a drill's outcome: it changes nothing; its report is archived as records (their own "
    "ingest leaves) and the dashboard reads the last outcome from the rebuilt journal",
)

#: Rebuild ``offer`` into the empty catalogue at ``database_url``; returns its tree size.
RebuildInto = Callable[[Settings, str, str], int]


@dataclass
class OfferDrill:
    """The drill of one offer."""

    offer: str
    seconds: float = 0.0
    tree_size: int = 0
    comparison: Comparison | None = None
    #: Why the rebuild failed (a bad segment, an unreadable offer…), when it did.
    error: str | None = None

    @property
    def identical(self) -> bool:
        return self.error is None and self.comparison is not None and self.comparison.identical

    def as_dict(self) -> dict[str, Any]:
        comparison = self.comparison
        return {
            "offer": self.offer,
            "identical": self.identical,
            "seconds": round(self.seconds, 3),
            "tree_size": self.tree_size,
            "error": self.error,
            "counts_live": comparison.counts_live if comparison else {},
            "counts_rebuilt": comparison.counts_rebuilt if comparison else {},
            "differences": [d.as_dict() for d in comparison.differences] if comparison else [],
            "differences_not_named": comparison.unnamed if comparison else 0,
            "api_answers_compared": comparison.views_compared if comparison else {},
        }


@dataclass
class DrillReport:
    """What a drill found, offer by offer."""

    started_at: datetime
    finished_at: datetime | None = None
    tree_size: int = 0
    #: The live journal's size when the comparisons ended (> ``tree_size``: it changed).
    live_tree_size_after: int = 0
    offers: list[OfferDrill] = field(default_factory=list)
    #: The records the report became (set once archived).
    record_units: list[str] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        if self.offers and all(o.identical for o in self.offers):
            return IDENTICAL
        failed = any(o.error for o in self.offers)
        if not failed and self.live_tree_size_after > self.tree_size:
            return INCONCLUSIVE
        return DIFFERENT

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "outcome": self.outcome,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at) if self.finished_at else None,
            "tree_size": self.tree_size,
            "live_tree_size_after": self.live_tree_size_after,
            "offers": [o.as_dict() for o in self.offers],
        }

    def to_json(self) -> bytes:
        return json.dumps(self.as_dict(), indent=2, ensure_ascii=False, sort_keys=True).encode()


def _iso(value: datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.replace(microsecond=0).isoformat() + "Z"


def _tree_size(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return tree_size(session)


#: How long a drill waits for the journal's segments to be on every offer before it starts.
PUBLISH_TIMEOUT_SECONDS = 300.0


def _publish_everything(sessions: sessionmaker[Session], offer_set: OfferSet) -> None:
    """Publish every sealed head's segment to every offer of the strategy, waiting for the
    background publisher when it holds the turn; an offer that stays behind fails the drill
    (a rebuild from it would miss leaves the live catalogue has, and say so as a difference)."""
    from sae.journal.publishing import pending_segments

    deadline = time.monotonic() + PUBLISH_TIMEOUT_SECONDS
    while True:
        publish_segments(sessions, offer_set.copies(), limit=1_000_000)
        with sessions() as session:
            behind = [
                name for name in offer_set.strategy if pending_segments(session, name, limit=1)
            ]
        if not behind:
            return
        if time.monotonic() > deadline:
            log.warning("recovery.drill_offers_behind offers=%s", ",".join(behind))
            return
        time.sleep(0.5)


def run_drill(
    sessions: sessionmaker[Session],
    settings: Settings,
    offer_set: OfferSet,
    rebuild_into: RebuildInto,
    *,
    offers: Sequence[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> DrillReport:
    """Rebuild from each offer (the strategy's by default) and compare; nothing is recorded
    here (:func:`record_drill` archives and journals the report)."""
    say = progress or (lambda _message: None)
    report = DrillReport(started_at=db.utcnow())
    # 1. Everything committed is under a head, and every head's segment on every offer.
    seal_now(sessions, settings, wait=True)
    _publish_everything(sessions, offer_set)
    # 2. The text of the PDFs read (derived data, which the rebuild reads again at its end):
    # what the background worker would read in its next round, read now, so that a PDF
    # archived in the last seconds does not make its units' search text differ.
    extract_pending(sessions, offer_set.copies(), Path(settings.data_dir) / "tmp")
    report.tree_size = _tree_size(sessions)
    scratch_root = Path(settings.data_dir) / "tmp" / f"drill-{db.new_id()}"
    scratch_root.mkdir(parents=True, exist_ok=True)
    try:
        for name in offers or offer_set.strategy:
            say(f"reconstruction depuis l'offre {name}")
            result = OfferDrill(offer=name)
            report.offers.append(result)
            started = time.monotonic()
            url = f"sqlite:///{scratch_root / (name + '.db')}"
            try:
                result.tree_size = rebuild_into(settings, name, url)
            except Exception as exc:  # the report says why, the drill goes on with the next
                log.warning("recovery.drill_rebuild_failed offer=%s error=%s", name, exc)
                result.error = f"{type(exc).__name__}: {exc}"
                result.seconds = time.monotonic() - started
                continue
            say(f"comparaison avec le catalogue en service ({name})")
            scratch = db.make_engine(url)
            try:
                with sessions() as live, Session(scratch) as rebuilt:
                    result.comparison = compare_catalogues(live, rebuilt)
            finally:
                scratch.dispose()
            result.seconds = time.monotonic() - started
    finally:
        shutil.rmtree(scratch_root, ignore_errors=True)
    report.live_tree_size_after = _tree_size(sessions)
    report.finished_at = db.utcnow()
    return report


def record_drill(
    sessions: sessionmaker[Session],
    settings: Settings,
    offer_set: OfferSet,
    report: DrillReport,
    *,
    actor: str,
) -> None:
    """Archive the report (JSON and PDF) as records of the archives service and journal the
    outcome, in one transaction."""
    from sae.recovery.report import drill_pdf
    from sae.retention.config import retention_settings
    from sae.retention.records import archive_record

    config = retention_settings()
    stamp = report.started_at.strftime("%Y%m%dT%H%M%SZ")
    with db.transaction(sessions) as session:
        for filename, data, mime, title in (
            (
                f"exercice-restauration-{stamp}.json",
                report.to_json(),
                "application/json",
                f"Exercice de restauration du {stamp[:8]} (données)",
            ),
            (
                f"exercice-restauration-{stamp}.pdf",
                drill_pdf(report, archives_service_name=config.archives_service_name),
                "application/pdf",
                f"Exercice de restauration du {stamp[:8]} (rapport)",
            ),
        ):
            record = archive_record(
                session,
                settings=settings,
                offers=offer_set.copies(),
                principal=SYSTEM,  # SAE deposits what it writes; the event names who asked
                archives_service=config.archives_service,
                message_id=f"SAE-DRILL-{stamp}-{filename.rsplit('.', 1)[1].upper()}",
                title=title,
                description="Rapport d'exercice de reconstruction du catalogue depuis les "
                f"offres de stockage : {report.outcome}",
                filename=filename,
                data=data,
                mime=mime,
            )
            report.record_units.append(record.unit_id)
        append_event(
            session,
            type=EVENT,
            actor=actor,
            payload={
                "outcome": report.outcome,
                "started_at": _iso(report.started_at),
                "tree_size": report.tree_size,
                "offers": {
                    o.offer: {
                        "identical": o.identical,
                        "differences": len(o.comparison.differences) if o.comparison else None,
                        "error": o.error,
                        "seconds": round(o.seconds, 1),
                    }
                    for o in report.offers
                },
                "report_units": report.record_units,
            },
        )


@dataclass(frozen=True)
class LastDrill:
    """The last drill, as the dashboard shows it."""

    at: datetime
    outcome: str
    offers: dict[str, Any]
    report_units: list[str]


def last_drill(session: Session) -> LastDrill | None:
    """The latest ``recovery.drill_completed`` event, if any."""
    event = session.scalar(
        select(Event).where(Event.type == EVENT).order_by(Event.leaf_index.desc()).limit(1)
    )
    if event is None:
        return None
    payload = event.payload or {}
    return LastDrill(
        at=event.occurred_at,
        outcome=str(payload.get("outcome", "")),
        offers=dict(payload.get("offers") or {}),
        report_units=list(payload.get("report_units") or []),
    )


def drill_due(session: Session, interval_days: float) -> bool:
    """Whether a scheduled drill is due: ``interval_days`` after the last one or, before the
    first, after the archive's first event (never when ``interval_days`` is 0)."""
    if interval_days <= 0:
        return False
    last = session.scalar(select(func.max(Event.occurred_at)).where(Event.type == EVENT))
    if last is None:
        last = session.scalar(select(Event.occurred_at).where(Event.leaf_index == 0))
        if last is None:  # an empty archive: nothing to prove yet
            return False
    return last <= db.utcnow() - timedelta(days=interval_days)


def rebuild_into(settings: Settings, offer: str, database_url: str) -> int:
    """Rebuild from ``offer`` into the empty catalogue at ``database_url`` as ``sae rebuild``
    does, but as a scratch copy: no new admin token, no head sealed, nothing published or
    journaled anywhere but in that scratch catalogue; its tree size."""
    from sae.recovery.rebuild import rebuild

    return rebuild(settings, offer, database_url, scratch=True).tree_size


def drill_if_due(
    sessions: sessionmaker[Session],
    settings: Settings,
    offer_set: OfferSet,
    *,
    actor: str,
    rebuild: RebuildInto = rebuild_into,
) -> DrillReport | None:
    """Run, record and return a drill when one is due and no other process is running one."""
    from sae.journal.publishing import exclusive_turn

    with sessions() as session:
        if not drill_due(session, settings.drill_interval_days):
            return None
    with exclusive_turn(sessions, DRILL_TURN) as got:
        if not got:
            return None
        with sessions() as session:  # another process may have finished one meanwhile
            if not drill_due(session, settings.drill_interval_days):
                return None
        report = run_drill(sessions, settings, offer_set, rebuild)
        record_drill(sessions, settings, offer_set, report, actor=actor)
        log.info("recovery.drill_completed outcome=%s", report.outcome)
        return report
