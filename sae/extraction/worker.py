"""The background reader of archived PDFs' text (:mod:`sae.extraction.service`), and with
``SAE_OCR=1`` the OCR of archived scans (:mod:`sae.extraction.ocr`) after it.

Every server process and ``sae worker`` runs one; the ``extraction.text`` lease
(:mod:`sae.leases`) makes one process of the installation read at a time. Its first round
looks at the whole catalogue (the PDFs archived before this version, or while no process
ran); later rounds at the objects created in the last :data:`LOOK_BACK` — a transfer's rows
are created before its commit, and a long commit must not hide them.

While deposits arrive (a transfer received in the last :data:`QUIET`), it leaves the
processors to them: it reads only the PDFs that have waited ``SAE_TEXT_WAIT_MINUTES``
(default 10), and the others once deposits pause. Reading a PDF costs about as much CPU as
depositing it (pypdf, the verified copy, its own transaction): run beside a stream of deposits,
the reader took a fifth of their rate (issue #17's benchmarks). A PDF's words are searchable a
few seconds after a pause, at the latest that long after it was archived.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from sae import leases
from sae.config import Settings
from sae.db import utcnow
from sae.extraction.service import Round, extract_pending
from sae.ingest.models import Transfer
from sae.storage.offers import OfferSet

log = logging.getLogger("sae.extraction")

LEASE = "extraction.text"
TTL = timedelta(minutes=5)
#: The lease is written again when it was last written this long ago (or more): a holder keeps
#: it until its expiry whatever others do, so renewing after every PDF (a write transaction and
#: a commit each, beside the deposits' own) bought nothing over renewing well before the end.
RENEW_AFTER = TTL / 5
#: How far back a round after the first looks for objects without text (plus the time a
#: PDF may wait while deposits arrive).
LOOK_BACK = timedelta(hours=1)
#: Deposits are arriving when a transfer was received this recently.
QUIET = timedelta(seconds=10)


class TextWorker:
    """A daemon thread reading new PDFs' text every ``check_seconds``."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: Settings,
        offer_set: OfferSet,
        *,
        check_seconds: float = 10.0,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.offer_set = offer_set
        self.check_seconds = check_seconds
        self.owner = leases.new_owner()
        self._since: datetime | None = None  # None: the whole catalogue (the first round)
        self._renewed: float | None = None  # monotonic time of the last successful take
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="sae-text", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if not self._thread.is_alive():
                leases.release(self.sessions, LEASE, self.owner)
                self._renewed = None

    def _run(self) -> None:
        while not self._stop.wait(self.check_seconds):
            try:
                self.run_once()
            except Exception:  # an outage or a bug must not end extraction for the process
                log.exception("extraction.round_failed")

    def _renew(self) -> bool:
        """Whether this process holds the lease; taken or renewed when not written for
        :data:`RENEW_AFTER` (the lease then still has four fifths of its time to run)."""
        now = time.monotonic()
        if self._renewed is not None and now - self._renewed < RENEW_AFTER.total_seconds():
            return True
        held = leases.take(self.sessions, LEASE, self.owner, TTL)
        self._renewed = now if held else None
        return held

    @property
    def _wait(self) -> timedelta:
        return timedelta(minutes=self.settings.text_wait_minutes)

    def _before(self, session: Session) -> datetime | None:
        """None when no deposit is arriving (every pending PDF may be read); else the time
        before which a PDF was archived to be read now (it has waited long enough)."""
        if self._wait <= timedelta(0):
            return None
        now = utcnow()
        newest = session.scalar(select(func.max(Transfer.received_at)))
        if newest is None or now - newest >= QUIET:
            return None
        return now - self._wait

    def run_once(self) -> Round | None:
        """One round, if this process holds the lease (None otherwise)."""
        if not self._renew():
            self._since = None  # whoever holds it now; if this process takes over, all again
            return None
        started = utcnow()
        done = extract_pending(
            self.sessions,
            self.offer_set.copies(),
            self.settings.data_dir / "tmp",
            since=self._since,
            stop=self._stop,
            keep=self._renew,
            before=self._before,
        )
        if done.read or done.skipped:
            log.info(
                "extraction.round read=%s with_text=%s skipped=%s",
                done.read,
                done.with_text,
                len(done.skipped),
            )
        if not self._stop.is_set():
            self._since = started - LOOK_BACK - self._wait
        if self.settings.ocr and not self._stop.is_set():
            from sae.extraction.ocr import ocr_pending

            ocred = ocr_pending(
                self.sessions,
                self.offer_set.copies(),
                self.settings.data_dir / "tmp",
                workers=self.settings.ocr_workers,
                languages=self.settings.ocr_languages,
                keep=self._renew,
            )
            if ocred:
                log.info(
                    "ocr.round done=%s failed=%s",
                    sum(o.state == "done" for o in ocred),
                    sum(o.state == "failed" for o in ocred),
                )
        return done
