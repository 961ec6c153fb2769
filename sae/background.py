"""Background work of one SAE process: sealing tree heads, running fixity audits.

A head is sealed soon after each accepted transfer (the ingest route ``poke``s the sealer once
its commit is durable; pokes within ``SAE_SEAL_SPACING_SECONDS`` of the last head wait for the
end of that spacing, so a busy archive signs and time-stamps at most one head per spacing) and
at least every ``SAE_SEAL_INTERVAL_MINUTES`` while events arrive.
Sealing in the background keeps the time-stamping authority's round trip off the deposit's
path, and a burst of deposits is covered by one head instead of one each.

Every server process runs these threads; the work they guard is done by one process of the
installation at a time, through leases in the database (:mod:`sae.leases`): the sealers take
turns (``journal.sealer``: one head, one time-stamp per spacing for all the processes and
machines together), one auditor runs the rounds (``storage.auditor``: quarantine ends, audits,
drills) and one process talks to the witnesses (``journal.witnessing``). A holder that dies is
replaced once its lease expires; one that stops lets its lease go at once. With
``SAE_WITNESSES_FILE``, each head is offered to the witnesses by a thread of its own
(``sae.journal.witnessing``), so that a slow witness delays neither deposits nor heads.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session, sessionmaker

from sae import leases
from sae.config import Settings
from sae.db import utcnow
from sae.errors import SAEError
from sae.journal.errors import TimestampInvalid, TsaUnavailable
from sae.journal.keys import record_tsa_check, tsa_health
from sae.journal.sealing import seal_in_turn, seal_now
from sae.journal.witnessing import WitnessClient, WitnessSet
from sae.storage.offers import OfferSet

if TYPE_CHECKING:  # the runtime holds the sealer: imported for its type only
    from sae.alerts.worker import AlertWorker
    from sae.extraction.worker import TextWorker
    from sae.pastell.worker import PastellWorker
    from sae.runtime import Runtime

log = logging.getLogger("sae.journal")

#: The background sealer publishes the journal's new segments at most this often (seconds).
PUBLISH_SPACING_SECONDS = 10.0
#: The lease (:mod:`sae.leases`) of the one process that asks the witnesses to co-sign, how long
#: it lasts unrenewed (a round asks each witness, 10 s at most each), and how often its holder
#: looks for a head to offer.
WITNESSING_LEASE = "journal.witnessing"
WITNESSING_TTL = timedelta(minutes=2)
WITNESSING_LOOK_SECONDS = 5.0


class Sealer:
    """A daemon thread sealing heads when poked, and when due."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: Settings,
        *,
        check_seconds: float = 30.0,
        offer_set: OfferSet | None = None,
        witnesses: WitnessSet | None = None,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        #: Where each sealed head's journal segment is published (None: not here).
        self.offer_set = offer_set
        self._published_at = -PUBLISH_SPACING_SECONDS  # monotonic; the first head publishes
        #: Asks the witnesses to co-sign each new head (None: no SAE_WITNESSES_FILE).
        self.witness_client = (
            WitnessClient(sessions, witnesses, keep_alive=True) if witnesses is not None else None
        )
        self.check_seconds = check_seconds
        #: This sealer's name in the installation's leases (:mod:`sae.leases`).
        self.owner = leases.new_owner()
        self._poke = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Witnessing has its own thread: a witness slow to answer (up to its timeout, for each
        # witness) must not delay the next head.
        self._witness_poke = threading.Event()
        self._witness_thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="sae-sealer", daemon=True)
            self._thread.start()
        if self.witness_client is not None and (
            self._witness_thread is None or not self._witness_thread.is_alive()
        ):
            self._witness_thread = threading.Thread(
                target=self._run_witnessing, name="sae-witnessing", daemon=True
            )
            self._witness_thread.start()

    def poke(self) -> None:
        """Ask for a head over everything committed so far (coalesced)."""
        self._poke.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop; a pending poke is honoured first, so no accepted transfer stays unsealed."""
        self._stop.set()
        self._poke.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._witness_poke.set()
        if self._witness_thread is not None:
            self._witness_thread.join(timeout)
        if self.witness_client is not None:
            self.witness_client.close()

    def _run(self) -> None:
        waiting = False  # leaves this process was poked for, not yet under a head
        while True:
            if not waiting:
                waiting = self._poke.wait(self.check_seconds)
            self._poke.clear()  # pokes arriving from here on are served by the same head
            stopping = self._stop.is_set()
            again_at = None
            try:
                if stopping:
                    # What this process committed leaves sealed with it, whoever's turn it is
                    # (at most one head more, at a stop).
                    head = seal_now(self.sessions, self.settings) if waiting else None
                else:
                    turn = seal_in_turn(
                        self.sessions, self.settings, self.owner, due_only=not waiting
                    )
                    head, again_at = turn.head, turn.again_at
                if head is not None:
                    log.info("journal.sealed tree_size=%s", head.tree_size)
                    self._publish()
                    self._witness_poke.set()  # after publishing: the witnesses' turn
                elif not waiting and again_at is None:
                    # The TSA check of /health, when due (SAE_TSA_CHECK_MINUTES): an idle
                    # archive still learns that its TSA stopped answering.
                    tsa_health(self.settings)
            except SAEError as exc:
                # The TSA or the database may be down for a while: the next round tries again.
                log.warning("journal.seal_failed %s: %s", exc.code, exc.detail)
                if isinstance(exc, TsaUnavailable | TimestampInvalid):
                    record_tsa_check(self.settings, ok=False, detail=f"{exc.code}: {exc.detail}")
            except Exception:  # a bug must not kill sealing for the life of the process
                log.exception("journal.seal_crashed")
            if stopping:
                self._publish(force=True)  # what this process sealed leaves with it
                return
            # Another process's turn, or the spacing after the latest head: the leaves wait
            # for a head then (this process's, or the other's if it covered them meanwhile).
            waiting = again_at is not None
            if again_at is not None:
                self._stop.wait(max(0.0, (again_at - utcnow()).total_seconds()))

    def _run_witnessing(self) -> None:
        """Ask the witnesses to co-sign the latest head: when a head was sealed and published,
        and every ``check_seconds`` (a witness that failed or refused is asked again in later
        rounds, with a growing delay, see :mod:`sae.journal.witnessing`)."""
        assert self.witness_client is not None
        ttl = max(WITNESSING_TTL, timedelta(seconds=3 * self.check_seconds))
        mine = False
        while True:
            # The holder looks often (a head another process sealed pokes only that one): a
            # round with nothing new is two small reads, and no witness is asked twice.
            self._witness_poke.wait(
                min(self.check_seconds, WITNESSING_LOOK_SECONDS) if mine else self.check_seconds
            )
            self._witness_poke.clear()
            if self._stop.is_set():
                if mine:  # the next process takes over at once, not after the expiry
                    leases.release(self.sessions, WITNESSING_LEASE, self.owner)
                return
            try:
                # One process of the installation talks to the witnesses: each witness is asked
                # once per head, and its back-off after a refusal is the archive's, not each
                # process's (the refusal journaled once).
                mine = leases.take(self.sessions, WITNESSING_LEASE, self.owner, ttl)
                if mine:
                    self.witness_client.round()
                    self._publish_checkpoints()
            except SAEError as exc:
                log.warning("journal.witnessing_failed %s: %s", exc.code, exc.detail)
            except Exception:  # a bug must not end witnessing for the life of the process
                log.exception("journal.witnessing_crashed")

    def _publish_checkpoints(self) -> None:
        """Put the heads whose cosignatures are final on every offer, with them
        (:mod:`sae.journal.checkpoints`): the witnesses' evidence outlives the catalogue."""
        if self.offer_set is None or self.witness_client is None:
            return
        from sae.journal.checkpoints import publish_checkpoints

        publish_checkpoints(
            self.sessions, self.offer_set.copies(), self.witness_client.witnesses.names
        )

    def _publish(self, *, force: bool = False) -> None:
        """Put the new heads' segments on every offer of the strategy, so that the offers
        alone hold the journal up to them (the auditor's round catches up what fails here).

        At most once per :data:`PUBLISH_SPACING_SECONDS` (unless ``force``): under load a head
        is sealed every second, and publishing each at once — four fsyncs per offer and a
        write to the database — cost a tenth of the one-document deposits' throughput on
        SQLite; the segments of the heads sealed meanwhile are written by the next round, one
        per head as always.
        """
        if self.offer_set is None:
            return
        now = time.monotonic()
        if not force and now - self._published_at < PUBLISH_SPACING_SECONDS:
            return
        from sae.journal.publishing import publish_quietly

        self._published_at = now
        publish_quietly(self.sessions, self.offer_set.copies())


SCHEDULER = "system:scheduler"
#: A scheduled drill that failed before being recorded is tried again after this long.
DRILL_RETRY_SECONDS = 3600.0
# An arbitrary constant: the PostgreSQL advisory lock that makes instances schedule audits in turn.
_AUDIT_SCHEDULE_LOCK = 0x5AE0A0D1
#: The lease (:mod:`sae.leases`) of the one process running the auditor's rounds, and how long
#: it lasts unrenewed (renewed each round, each audit batch, before a drill): a holder that
#: died is replaced after that.
AUDITOR_LEASE = "storage.auditor"
AUDITOR_TTL = timedelta(minutes=5)


class Auditor:
    """A daemon thread running fixity audits: scheduled ones, and any left waiting.

    Every ``check_seconds`` it publishes the journal segments an offer lacks (a backlog after
    an upgrade, an offer that was down: ``sae.journal.publishing``), seals the copies whose
    quarantine is over (``sae.storage.quarantine``), resumes audits nobody alive works on
    (requested through the API by a process that died, for instance), then, every
    ``SAE_AUDIT_INTERVAL_HOURS``, records a scheduled audit of a ``SAE_AUDIT_SAMPLE_RATE``
    sample and runs it — the regular checks
    NF Z42-013 asks for. Audits are claimed through the database, so several instances share
    the work and never run the same batch twice.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: Settings,
        offer_set: OfferSet,
        *,
        check_seconds: float = 60.0,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.offer_set = offer_set
        self.check_seconds = check_seconds
        #: This auditor's name in the installation's leases (:mod:`sae.leases`).
        self.owner = leases.new_owner()
        self._drill_tried_at = -DRILL_RETRY_SECONDS
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="sae-auditor", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if not self._thread.is_alive():  # the next process takes over at once
                leases.release(self.sessions, AUDITOR_LEASE, self.owner)

    def _run(self) -> None:
        while not self._stop.wait(self.check_seconds):
            try:
                self.run_once()
            except Exception:  # a bug or an outage must not end audits for the process
                log.exception("storage.auditor_round_failed")

    def run_once(self) -> list[str]:
        """One round: publish the journal segments the offers lack, end the quarantines that
        are due, schedule an audit if one is due, run every waiting audit, then the restore
        drill if one is due."""
        from sae.journal.publishing import publish_quietly
        from sae.storage.audit import run_audit
        from sae.storage.quarantine import end_metadata_quarantines, end_quarantines

        if not self._renew():
            return []  # another process is the installation's auditor
        publish_quietly(self.sessions, self.offer_set.copies())
        end_quarantines(self.sessions, self.offer_set)
        end_metadata_quarantines(self.sessions, self.offer_set)
        self.schedule_if_due()
        done = []
        while not self._stop.is_set():
            audit_id = run_audit(self.sessions, self.offer_set, progress=self._keep)
            if audit_id is None:
                break
            done.append(audit_id)
        if not self._stop.is_set() and self._renew():
            self.drill_if_due()
        return done

    def _keep(self, _: object) -> None:
        """Renew the lease after each audit batch (an audit may outlast the lease)."""
        self._renew()

    def _renew(self) -> bool:
        """Take or keep the installation's auditor lease: one process runs the rounds (ends
        the quarantines, schedules and runs the audits, drills), the others stand by and take
        over once it stops renewing."""
        ttl = max(AUDITOR_TTL, timedelta(seconds=3 * self.check_seconds))
        return leases.take(self.sessions, AUDITOR_LEASE, self.owner, ttl)

    def drill_if_due(self) -> None:
        """Run the restore drill when ``SAE_DRILL_INTERVAL_DAYS`` have passed since the last
        (``sae.recovery.drill``); its failure is logged, never the end of the round."""
        from sae.recovery.drill import drill_if_due

        # A drill that fails before it is recorded is not retried every minute.
        now = time.monotonic()
        if now - self._drill_tried_at < DRILL_RETRY_SECONDS:
            return
        self._drill_tried_at = now
        try:
            drill_if_due(self.sessions, self.settings, self.offer_set, actor=SCHEDULER)
        except Exception:
            log.exception("recovery.drill_failed")

    def schedule_if_due(self) -> str | None:
        """Record a scheduled audit when the last one is older than the interval."""
        from sqlalchemy import func, select

        from sae.db import lock_for_writing, transaction, utcnow
        from sae.storage.audit import create_audit
        from sae.storage.models import Audit

        hours = self.settings.audit_interval_hours
        if hours <= 0:
            return None
        with transaction(self.sessions) as session:
            # Instances (processes, machines) decide one at a time: the second sees the first's
            # audit and records none.
            lock_for_writing(session, _AUDIT_SCHEDULE_LOCK)
            last = session.scalar(
                select(func.max(Audit.created_at)).where(Audit.requested_by == SCHEDULER)
            )
            if last is not None and last > utcnow() - timedelta(hours=hours):
                return None
            audit = create_audit(
                session,
                self.offer_set,
                sample_rate=self.settings.audit_sample_rate,
                repair=True,
                requested_by=SCHEDULER,
            )
            return audit.id


@dataclass(frozen=True, slots=True)
class Background:
    """The background work of one process: the sealer, the auditor, the alerts and the reader
    of PDFs' text, started together."""

    sealer: Sealer
    auditor: Auditor
    alerts: AlertWorker
    pastell: PastellWorker
    text: TextWorker

    def stop(self) -> None:
        self.text.stop()
        self.pastell.stop()
        self.alerts.stop()
        self.auditor.stop()
        self.sealer.stop()


def start_background(runtime: Runtime) -> Background:
    """Start the sealer and the auditor of a process (a server's lifespan, ``sae worker``).

    Every server process runs them, and so does a ``sae worker``: the database makes one
    instance seal or claim an audit batch at a time, so more processes share the work rather
    than repeat it.
    """
    sealer = Sealer(
        runtime.sessions,
        runtime.settings,
        offer_set=runtime.offer_set,
        witnesses=runtime.witnesses,
    )
    runtime.sealer = sealer
    sealer.start()
    auditor = Auditor(runtime.sessions, runtime.settings, runtime.offer_set)
    auditor.start()
    from sae.alerts.worker import AlertWorker

    # Alerts are detected and sent here, in the background, never on a request's path.
    alerts = AlertWorker(runtime.sessions, runtime.settings, runtime.offer_set)
    alerts.start()
    from sae.pastell.worker import PastellWorker

    # What Pastell sent is ingested here, after its 200 (docs/pastell.md).
    pastell = PastellWorker(runtime)
    runtime.pastell_worker = pastell
    pastell.start()
    from sae.extraction.worker import TextWorker

    # The text of archived PDFs is read here, after their transfer is accepted (search).
    text = TextWorker(runtime.sessions, runtime.settings, runtime.offer_set)
    text.start()
    return Background(sealer, auditor, alerts, pastell, text)


def run_worker(runtime: Runtime, stop: threading.Event) -> None:
    """``sae worker``: the background work alone, with no HTTP API, until ``stop`` is set.

    A process of its own keeps heads sealed, audits, quarantines and drills going while the
    servers are restarted or scaled down to none (a deployment's ``worker`` service).
    """
    work = start_background(runtime)
    log.info("worker.started offers=%s", ",".join(runtime.offer_set.strategy))
    try:
        # Woken every second so that the signal handler setting ``stop`` is seen promptly.
        while not stop.wait(1.0):
            pass
    finally:
        work.stop()
        log.info("worker.stopped")
