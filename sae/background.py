"""Background work of one SAE process: sealing tree heads.

A head is sealed soon after each accepted transfer (the ingest route ``poke``s the sealer once
its commit is durable) and at least every ``SAE_SEAL_INTERVAL_MINUTES`` while events arrive.
Sealing in the background keeps the time-stamping authority's round trip off the deposit's
path, and a burst of deposits is covered by one head instead of one each. The database makes
one instance seal at a time (see ``sae.journal.sealing``).
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy.orm import Session, sessionmaker

from sae.config import Settings
from sae.errors import SAEError
from sae.journal.sealing import seal_if_due, seal_now

log = logging.getLogger("sae.journal")


class Sealer:
    """A daemon thread sealing heads when poked, and when due."""

    def __init__(
        self, sessions: sessionmaker[Session], settings: Settings, *, check_seconds: float = 30.0
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.check_seconds = check_seconds
        self._poke = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="sae-sealer", daemon=True)
            self._thread.start()

    def poke(self) -> None:
        """Ask for a head over everything committed so far (coalesced)."""
        self._poke.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop; a pending poke is honoured first, so no accepted transfer stays unsealed."""
        self._stop.set()
        self._poke.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            poked = self._poke.wait(self.check_seconds)
            self._poke.clear()
            try:
                head = (
                    seal_now(self.sessions, self.settings)
                    if poked
                    else seal_if_due(self.sessions, self.settings)
                )
                if head is not None:
                    log.info("journal.sealed tree_size=%s", head.tree_size)
            except SAEError as exc:
                # The TSA or the database may be down for a while: the next round tries again.
                log.warning("journal.seal_failed %s: %s", exc.code, exc.detail)
            except Exception:  # a bug must not kill sealing for the life of the process
                log.exception("journal.seal_crashed")
            if self._stop.is_set():
                return
