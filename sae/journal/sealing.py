"""Sealing tree heads: after each transfer, and at least every N minutes while facts arrive.

Any instance may seal; the database decides who does (``journal_state`` row ``sealer`` taken
with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, the unique ``tree_heads.tree_size`` everywhere),
so several API instances never seal the same leaves twice and never wait on each other.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading

from sqlalchemy.orm import Session, sessionmaker

from sae.config import Settings
from sae.db import transaction
from sae.errors import SAEError
from sae.journal import service
from sae.journal.keys import load_journal_keys
from sae.journal.models import TreeHead

log = logging.getLogger("sae.journal")


def seal_now(
    sessions: sessionmaker[Session], settings: Settings, *, wait: bool = False
) -> TreeHead | None:
    """Seal a head over every committed leaf, in its own transaction.

    Call it after committing a transfer: the returned head covers the transfer's leaves (its
    ``tree_size`` is the URL ``/api/v1/journal/heads/{tree_size}`` an ATR can link to). Returns
    None when another instance is sealing at this very moment (its head will cover them) —
    unless ``wait``, which waits for it and returns a head covering every committed leaf.
    """
    keys = load_journal_keys(settings)
    with transaction(sessions) as session:
        return service.seal(
            session, signer=keys.signer, tsa=keys.tsa, origin=keys.origin, wait=wait
        )


def seal_if_due(sessions: sessionmaker[Session], settings: Settings) -> TreeHead | None:
    """Seal when leaves arrived and the last head is older than ``SAE_SEAL_INTERVAL_MINUTES``."""
    interval = dt.timedelta(minutes=settings.seal_interval_minutes)
    with sessions() as session:
        due = service.seal_due(session, interval=interval)
    return seal_now(sessions, settings) if due else None


class PeriodicSealer:
    """A daemon thread that calls :func:`seal_if_due` every ``check_seconds``.

    Start one per process (``start()`` in the app's lifespan, ``stop()`` at shutdown); the
    database coordination makes one seal per interval across all instances.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: Settings,
        *,
        check_seconds: float = 30.0,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.check_seconds = check_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (idempotent)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="sae-sealer", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the thread to stop and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.check_seconds):
            try:
                head = seal_if_due(self.sessions, self.settings)
                if head is not None:
                    log.info("journal.sealed tree_size=%s", head.tree_size)
            except SAEError as exc:
                # The TSA or the database may be down for a while: try again next round.
                log.warning("journal.seal_failed %s: %s", exc.code, exc.detail)
