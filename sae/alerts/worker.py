"""The background thread that detects and sends alerts (never a request's thread).

Every ``SAE_ALERT_CHECK_SECONDS`` it reads the journal since its cursor, checks the state
``/health`` reports (offers, TSA at most every ``SAE_TSA_CHECK_MINUTES``, quarantine backlog),
then sends what is pending (``sae.alerts.service``). Every server process runs one; the database
lock makes their rounds take turns and each alert is sent once.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from sae.config import Settings

log = logging.getLogger("sae.alerts")


def run_once(
    sessions: sessionmaker[Session], settings: Settings, offer_set: Any, *, state: bool = True
) -> int:
    """One round: detect, then send; how many alerts were sent."""
    from sae.alerts.channels import channels
    from sae.alerts.service import evaluate, observe_state, send_pending

    observed = observe_state(offer_set, settings) if state else None
    evaluate(sessions, settings, offer_set, observed)
    return send_pending(sessions, channels(settings))


class AlertWorker:
    """A daemon thread running :func:`run_once` every ``SAE_ALERT_CHECK_SECONDS``."""

    def __init__(self, sessions: sessionmaker[Session], settings: Settings, offer_set: Any) -> None:
        self.sessions = sessions
        self.settings = settings
        self.offer_set = offer_set
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="sae-alerts", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        # The first round at once: it sets the journal cursor of a new archive.
        while True:
            try:
                run_once(self.sessions, self.settings, self.offer_set)
            except Exception:  # an outage or a bug must not end alerting for the process
                log.exception("alerts.round_failed")
            if self._stop.wait(self.settings.alert_check_seconds):
                return
