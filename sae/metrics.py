"""Metrics for Prometheus: what the deposits did, and the state of the archive at scrape time.

Two kinds, so that every figure is right whichever process a scrape reaches:

* **Events counted as they happen** (deposits accepted and refused, bytes, ingest time): kept
  by ``prometheus_client`` in the process that served the deposit. Under ``sae serve`` they
  live in memory-mapped files in ``$SAE_DATA_DIR/metrics/`` (``prometheus_client``'s
  multiprocess mode, set up by :func:`prepare_multiprocess` before any worker starts): a scrape
  served by any worker sums every worker's files, those of workers that have exited included,
  so a counter never goes back when the other worker answers. The directory is emptied when
  ``sae serve`` starts (a restart resets the counters, which Prometheus's ``rate()`` expects).
* **State read at scrape time** (:class:`ArchiveCollector`): journal size, age of the last
  sealed and witnessed heads, quarantine backlog, last drill, audit totals, offer and TSA
  health, standing alerts — read from the database and from what ``/health`` knows, so that
  every process and every machine answers the same figures. The TSA is never asked from here:
  its last result is what the background sealer and ``/health`` learnt
  (``sae.journal.keys.last_tsa_check``).

Labels carry only bounded, non-personal values (a refusal's stable code, an offer's name, an
alert's condition): never a record's identifier, title or producer.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Histogram
    from prometheus_client.metrics_core import Metric

    from sae.runtime import Runtime

log = logging.getLogger("sae.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Ingest durations (seconds): a small scan in tens of milliseconds to a large SIP in minutes.
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)


def metrics_directory(data_dir: Path) -> Path:
    return data_dir / "metrics"


def prepare_multiprocess(data_dir: Path) -> Path:
    """Called by ``sae serve`` before it serves: an empty ``$SAE_DATA_DIR/metrics`` and
    ``PROMETHEUS_MULTIPROC_DIR`` naming it, inherited by the worker processes.

    ``prometheus_client`` chooses between memory and files when it is first imported: nothing
    of SAE imports it before this runs (:func:`_instruments` imports it on first use)."""
    directory = metrics_directory(data_dir)
    if "prometheus_client" in sys.modules and os.environ.get(MULTIPROC_ENV) != str(directory):
        log.warning("metrics: prometheus_client was imported before the multiprocess set-up")
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(directory)
    return directory


@dataclass(frozen=True)
class _Instruments:
    registry: CollectorRegistry
    accepted: Counter
    refused: Counter
    ingested_bytes: Counter
    duration: Histogram


@functools.cache
def _instruments() -> _Instruments:
    from prometheus_client import CollectorRegistry, Counter, Histogram

    # A registry of our own: the default one's process collectors are wrong in multiprocess
    # mode, and the scrape builds its answer itself (render).
    registry = CollectorRegistry(auto_describe=True)
    return _Instruments(
        registry=registry,
        accepted=Counter(
            "sae_transfers_accepted",
            "Transfers accepted (ATR OK).",
            registry=registry,
        ),
        refused=Counter(
            "sae_transfers_refused",
            "Transfers refused, by the stable code of their first fault.",
            ["reason"],
            registry=registry,
        ),
        ingested_bytes=Counter(
            "sae_ingested_bytes",
            "Bytes of the data objects of accepted transfers (one copy counted).",
            registry=registry,
        ),
        duration=Histogram(
            "sae_ingest_duration_seconds",
            "Time from a received SIP to its committed answer, by outcome.",
            ["outcome"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        ),
    )


def transfer_accepted(size: int, seconds: float) -> None:
    """Count an accepted transfer, its bytes and its ingest time."""
    instruments = _instruments()
    instruments.accepted.inc()
    instruments.ingested_bytes.inc(max(size, 0))
    instruments.duration.labels("accepted").observe(seconds)


def transfer_refused(reason: str, seconds: float) -> None:
    """Count a refused transfer under ``reason``, a stable fault or error code."""
    instruments = _instruments()
    instruments.refused.labels(reason).inc()
    instruments.duration.labels("refused").observe(seconds)


class ArchiveCollector:
    """The archive's state, read at scrape time (see the module's docstring)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        from sae import __version__

        rt = self.runtime
        info = GaugeMetricFamily("sae_info", "SAE version.", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        offers = GaugeMetricFamily(
            "sae_offer_up", "1 when the storage offer answers (as /health).", labels=["offer"]
        )
        from sae.storage.offers import offers_health

        for health in offers_health(rt.offer_set):
            offers.add_metric([health.name], 1 if health.ok else 0)
        yield offers
        yield from _tsa(rt)
        try:
            with rt.sessions() as session:
                state = read_state(session, rt)
        except Exception as exc:  # a scrape reports what it can; the database may be down
            log.warning("metrics: the database could not be read: %s", type(exc).__name__)
            up = GaugeMetricFamily("sae_database_up", "1 when the database answers.")
            up.add_metric([], 0)
            yield up
            return
        up = GaugeMetricFamily("sae_database_up", "1 when the database answers.")
        up.add_metric([], 1)
        yield up
        for name, help_text, value in state.gauges:
            if value is None:
                continue
            gauge = GaugeMetricFamily(name, help_text)
            gauge.add_metric([], value)
            yield gauge
        checked = CounterMetricFamily(
            "sae_audit_copies_checked", "Copies re-read by fixity audits (all time)."
        )
        checked.add_metric([], state.copies_checked)
        yield checked
        problems = CounterMetricFamily(
            "sae_audit_copies_damaged",
            "Copies found damaged by fixity audits (all time), by kind (corrupt, missing).",
            labels=["kind"],
        )
        for kind in ("corrupt", "missing"):
            problems.add_metric([kind], state.problems.get(kind, 0))
        yield problems
        repaired = CounterMetricFamily(
            "sae_audit_copies_repaired", "Damaged copies repaired from a healthy one (all time)."
        )
        repaired.add_metric([], state.repaired)
        yield repaired
        alerts = GaugeMetricFamily(
            "sae_alerts_active",
            "Alerts standing (not cleared), by condition.",
            labels=["condition"],
        )
        for condition, count in sorted(state.alerts.items()):
            alerts.add_metric([condition], count)
        yield alerts


def _tsa(rt: Runtime) -> Iterator[Metric]:
    from prometheus_client.core import GaugeMetricFamily

    from sae.journal.keys import last_tsa_check

    last = last_tsa_check(rt.settings)
    if last is None:  # nobody in this process asked it yet: unknown, not down
        return
    up = GaugeMetricFamily("sae_tsa_up", "1 when the TSA's last check succeeded.")
    up.add_metric([], 1 if last.ok else 0)
    yield up
    age = GaugeMetricFamily("sae_tsa_check_age_seconds", "Age of the TSA's last check.")
    age.add_metric([], max(0.0, time.time() - last.at.timestamp()))
    yield age


@dataclass
class ArchiveState:
    """What a scrape reads from the database."""

    gauges: list[tuple[str, str, float | None]]
    copies_checked: int
    problems: dict[str, int]
    repaired: int
    alerts: dict[str, int]


def _age(moment: datetime | None) -> float | None:
    from sae.db import utcnow

    if moment is None:
        return None
    return max(0.0, (utcnow() - moment).total_seconds())


def read_state(session: Any, rt: Runtime) -> ArchiveState:
    """The database's figures (one short read transaction)."""
    from sqlalchemy import func, select

    from sae.alerts.service import standing_counts
    from sae.journal.service import latest_head, tree_size
    from sae.recovery.drill import IDENTICAL, last_drill
    from sae.storage.models import Audit, AuditProblem, ObjectCopy
    from sae.storage.quarantine_watch import overdue_copies

    head = latest_head(session)
    drill = last_drill(session)
    quarantined = session.scalar(
        select(func.count())
        .select_from(ObjectCopy)
        .where(ObjectCopy.quarantine_ends_at.is_not(None))
    )
    gauges: list[tuple[str, str, float | None]] = [
        ("sae_journal_size", "Leaves (events) in the journal.", tree_size(session)),
        (
            "sae_journal_sealed_size",
            "Leaves covered by the last sealed tree head.",
            head.tree_size if head is not None else None,
        ),
        (
            "sae_journal_sealed_age_seconds",
            "Age of the last sealed tree head.",
            _age(head.timestamp) if head is not None else None,
        ),
        ("sae_quarantine_copies", "Copies still in quarantine (GOVERNANCE lock).", quarantined),
        (
            "sae_quarantine_overdue_copies",
            "Copies whose quarantine should have ended SAE_QUARANTINE_OVERDUE_HOURS ago.",
            overdue_copies(session, rt.offer_set, rt.settings),
        ),
        (
            "sae_drill_last_success",
            "1 when the last restore drill found the rebuilt catalogue identical.",
            (1 if drill.outcome == IDENTICAL else 0) if drill is not None else None,
        ),
        (
            "sae_drill_last_age_seconds",
            "Age of the last restore drill.",
            _age(drill.at) if drill is not None else None,
        ),
    ]
    if rt.witnesses is not None:
        from sae.journal.witnessing import witness_status

        status = witness_status(session, rt.witnesses, rt.settings)
        gauges += [
            (
                "sae_journal_witnessed_size",
                "Leaves covered by the last head co-signed by a quorum of witnesses.",
                status.witnessed_size,
            ),
            (
                "sae_journal_witnessed_age_seconds",
                "Age of the last head co-signed by a quorum of witnesses.",
                status.age_seconds(),
            ),
        ]
    if rt.settings.ocr:
        from sae.extraction.ocr import ocr_counts

        counts = ocr_counts(session)
        gauges += [
            ("sae_ocr_done", "Scans OCRed into a PDF/A by the server (SAE_OCR).", counts.done),
            (
                "sae_ocr_failed",
                "Scans whose OCR failed and will be tried again.",
                counts.retrying,
            ),
            (
                "sae_ocr_given_up",
                "Scans whose OCR failed every try (the error is on the job; the scan is kept).",
                counts.given_up,
            ),
        ]
    problems = dict(
        session.execute(select(AuditProblem.kind, func.count()).group_by(AuditProblem.kind)).all()
    )
    repaired = session.scalar(
        select(func.count()).select_from(AuditProblem).where(AuditProblem.repaired.is_(True))
    )
    checked = session.scalar(select(func.coalesce(func.sum(Audit.checked), 0)))
    return ArchiveState(
        gauges=gauges,
        copies_checked=int(checked or 0),
        problems={str(k): int(v) for k, v in problems.items()},
        repaired=int(repaired or 0),
        alerts=standing_counts(session),
    )


def authorize_scrape(runtime: Runtime, authorization: str) -> None:
    """Let a scrape through with ``SAE_METRICS_TOKEN`` or an admin token; else 401/403.

    A dedicated token, so that the monitoring server holds no admin power; it is compared in
    constant time and never logged."""
    import hmac

    from sae.auth.errors import MissingToken, RoleNotAllowed
    from sae.auth.service import authenticate_and_record

    scheme, _, secret = authorization.partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        raise MissingToken("send 'Authorization: Bearer <SAE_METRICS_TOKEN or an admin token>'")
    expected = runtime.settings.metrics_token
    if expected is not None and hmac.compare_digest(
        secret.encode(), expected.get_secret_value().encode()
    ):
        return
    principal = authenticate_and_record(runtime.sessions, secret, reads=runtime.reads)
    if principal.role != "admin":
        raise RoleNotAllowed("the metrics are for SAE_METRICS_TOKEN or an admin token")


def render(runtime: Runtime) -> bytes:
    """The exposition text of one scrape: the counters (every process's, in multiprocess
    mode) and the archive's state."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    instruments = _instruments()
    registry = CollectorRegistry(auto_describe=False)
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    else:  # one process (tests, a CLI): the counters in memory
        registry.register(_Forward(instruments.registry))
    registry.register(ArchiveCollector(runtime))
    return bytes(generate_latest(registry))


class _Forward:
    """Collects another registry's metrics into this one."""

    def __init__(self, source: Any) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        yield from self.source.collect()
