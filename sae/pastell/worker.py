"""The background thread that ingests what Pastell sent (never a request's thread).

Each server process and ``sae worker`` run one (``sae.background``): it wakes when a transfer
was received by its process (:meth:`PastellWorker.poke`) and every ``SAE_PASTELL_RETRY_SECONDS``
to take what others received, what a storage outage left for later, and what a process that
died left half-done (``sae.pastell.service``: claims are atomic, so processes share the work).
At start it looks at once: an upload accepted before a crash is ingested when SAE is back.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import update

from sae.db import utcnow
from sae.pastell import service
from sae.pastell.models import PastellMessage
from sae.runtime import Runtime

log = logging.getLogger("sae.pastell")

#: A message whose ingest failed unexpectedly this many times is refused (the ATR says so)
#: rather than retried for ever.
MAX_ATTEMPTS = 5


class PastellWorker:
    """A daemon thread that runs :func:`run_once` when poked and every retry interval."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="sae-pastell", daemon=True)
            self._thread.start()

    def poke(self) -> None:
        """Look for work now (a transfer was just received)."""
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                run_once(self.runtime, self._stop)
            except Exception:  # the thread must survive a database outage
                log.exception("pastell.worker_failed")
            self._wake.wait(self.runtime.settings.pastell_retry_seconds)
            self._wake.clear()


def run_once(runtime: Runtime, stop: threading.Event | None = None) -> int:
    """Ingest every pending message this process can claim; how many were processed."""
    service.expire_chunk_sessions(runtime)
    service.sweep_orphan_uploads(runtime)
    done = 0
    for message_id in service.pending(runtime):
        if stop is not None and stop.is_set():
            break
        if not service.claim(runtime, message_id):
            continue
        try:
            service.process(runtime, message_id)
            done += 1
        except Exception:
            log.exception("pastell.ingest_failed message=%s", message_id)
            _after_failure(runtime, message_id)
    return done


def _after_failure(runtime: Runtime, message_id: str) -> None:
    with runtime.sessions() as session:
        message = session.get(PastellMessage, message_id)
        if message is None:
            return
        if message.attempts < MAX_ATTEMPTS:
            session.execute(
                update(PastellMessage)
                .where(PastellMessage.id == message_id)
                .values(status="received", claimed_at=utcnow())
            )
            session.commit()
            return
    service.refuse(
        runtime,
        message_id,
        [
            {
                "code": "pastell.ingest_failed",
                "message": f"le traitement a échoué {MAX_ATTEMPTS} fois ; voir le journal du SAE",
                "where": None,
            }
        ],
    )
