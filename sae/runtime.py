"""The running service's shared parts, built once at startup from the settings.

``Runtime.open`` is the one place where a configuration is accepted or refused: it creates the
data directory, upgrades the database schema (``SAE_AUTO_MIGRATE``) or refuses one that is not
the code's (:mod:`sae.migrate`), loads and checks the storage offers (jurisdiction, strategy),
and on first start writes the admin token.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from sae.auth.accounts import PasswordDirectory, VerifiedSecrets
from sae.auth.service import ensure_admin_token
from sae.config import Settings
from sae.db import WriterTurns, make_engine, make_read_sessionmaker, make_sessionmaker, transaction
from sae.fileio import SpoolFiles
from sae.migrate import SchemaChange, check_schema, upgrade
from sae.storage.base import StorageOffer
from sae.storage.offers import OfferSet, check_offers, load_offers

if TYPE_CHECKING:  # both build on the runtime: imported for their types only
    from sae.background import Sealer
    from sae.ingest.deposit import GroupCommit
    from sae.journal.tails import TailWriter
    from sae.journal.witnessing import WitnessSet
    from sae.pastell.worker import PastellWorker

log = logging.getLogger("sae.runtime")

#: A check ``/health`` runs beside the database and the offers: ``(ok, detail)``.
HealthCheck = Callable[[], tuple[bool, str]]


#: A file of the spool directory (a SIP being received or ingested, a DIP being built) untouched
#: for this long was left by a process that died: removed at the next start. In-flight files
#: are written as they grow, and another worker process of the same instance may own them.
SPOOL_LEFTOVER_AGE = timedelta(days=1)


def sweep_spool(directory: Path) -> None:
    """Remove the spool's leftovers of a crash (see :data:`SPOOL_LEFTOVER_AGE`)."""
    cutoff = time.time() - SPOOL_LEFTOVER_AGE.total_seconds()
    for entry in directory.iterdir():
        try:
            if entry.is_file() and entry.stat().st_mtime < cutoff:
                entry.unlink()
                log.info("spool: removed %s, left by an earlier process", entry.name)
        except FileNotFoundError:
            continue


@dataclass
class Runtime:
    """Settings, database and offers of one SAE process."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    #: Sessions for a one-statement look-up in autocommit (``sae.db.make_read_sessionmaker``):
    #: the token check of every request, a deposit's journal reference.
    reads: sessionmaker[Session]
    offer_set: OfferSet
    #: The group commit's turn to write, among the processes sharing a SQLite database.
    writer_turns: WriterTurns
    #: Where the first start wrote the admin token (``sae init``/``serve`` say so), else None.
    admin_token_path: Path | None = None
    #: The process's group commit of deposits, created by the first deposit.
    group_commit: GroupCommit | None = None
    #: The background sealer of a server process; a process without one seals after a deposit.
    sealer: Sealer | None = None
    #: The background ingest of what Pastell sent (``sae.pastell.worker``), poked on receipt.
    pastell_worker: PastellWorker | None = None
    #: Puts a deposit's journal leaves on every offer before its 201, created by the first.
    tail_writer: TailWriter | None = None
    #: The witnesses of ``SAE_WITNESSES_FILE`` (None: heads are not witnessed).
    witnesses: WitnessSet | None = None
    #: Checks ``/health`` reports by name beside the database and the offers (the TSA).
    health_checks: dict[str, HealthCheck] = field(default_factory=dict)
    #: The schema upgrade this start ran (None: none was due, or SAE_AUTO_MIGRATE is off).
    schema_change: SchemaChange | None = None
    #: Directories the password sign-in asks after the local accounts (LDAP registers here).
    password_directories: list[PasswordDirectory] = field(default_factory=list)
    #: Secrets verified lately (Pastell's Basic auth with every call: one argon2 per minutes).
    verified_secrets: VerifiedSecrets = field(default_factory=VerifiedSecrets)
    #: The deposits' SIP spool files, kept for reuse (``sae.fileio.SpoolFiles``).
    sip_spool: SpoolFiles = field(init=False)

    def __post_init__(self) -> None:
        self.sip_spool = SpoolFiles(self.settings.data_dir / "tmp", "sip-", ".zip")

    @classmethod
    def open(
        cls, settings: Settings, *, migrate: bool | None = None, check_keys: bool = True
    ) -> Runtime:
        """Start: directories, schema, offers, first-start admin token, the journal's keys.

        ``migrate``: upgrade the schema first (default ``SAE_AUTO_MIGRATE``; ``sae init`` says
        True); otherwise a schema that is not the code's refuses the start
        (:class:`~sae.migrate.SchemaOutdated`, :class:`~sae.migrate.SchemaAhead`).

        ``check_keys=False`` skips the key check and the start's leaves (key pin, configuration
        digests): for ``sae journal rotate-key``, which replaces a missing or unwanted key itself
        (and journals it), and for ``sae restore``, whose catalogue must take the offer's leaves
        before any new one.
        """
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        (settings.data_dir / "tmp").mkdir(exist_ok=True)
        sweep_spool(settings.data_dir / "tmp")
        # A pool as large as the work a process does at once (eight deposits and the background
        # threads): with SQLAlchemy's five, every burst closed the connections it had opened
        # beyond them, and opened them again at the next (a fifth of a connection per deposit,
        # each a new server process on PostgreSQL; docs/benchmarks.md, session 15).
        pool_size = settings.database_pool_size
        engine = make_engine(
            settings.db_url, pool_size=pool_size, max_overflow=max(4, pool_size // 2)
        )
        change: SchemaChange | None = None
        try:
            if settings.auto_migrate if migrate is None else migrate:
                change = upgrade(engine)
            else:
                check_schema(engine)
        except BaseException:
            engine.dispose()
            raise
        offer_set = load_offers(settings)
        from sae.journal.witnessing import load_witnesses

        witnesses = load_witnesses(settings)  # refused at start, naming the problem
        # A misconfigured offer (region, Object Lock) refuses the start; one that is merely
        # down is reported by /health and the other offers keep serving reads.
        for problem in check_offers(offer_set):
            log.warning("storage.offer_unavailable at startup: %s", problem)
        runtime = cls(
            settings=settings,
            engine=engine,
            sessions=make_sessionmaker(engine),
            reads=make_read_sessionmaker(engine),
            offer_set=offer_set,
            writer_turns=WriterTurns(settings.db_url),
            witnesses=witnesses,
            schema_change=change if change is not None and change.changed else None,
        )
        if settings.ldap_url is not None:
            from sae.auth.ldap import LdapDirectory  # ldap3 is loaded only when configured

            runtime.password_directories.append(LdapDirectory(settings))
        with transaction(runtime.sessions) as session:
            path = ensure_admin_token(session, settings.data_dir)
        if path is not None:
            log.warning("first start: an admin token was written to %s (mode 0600)", path)
            runtime.admin_token_path = path
        if not check_keys:
            return runtime
        from sae.config_journal import journal_configuration
        from sae.journal.keys import check_keys_at_start  # the journal builds on the runtime

        try:
            # A missing, replaced or world-readable key refuses the start (never a new key).
            check_keys_at_start(settings, runtime.sessions)
            # Then what changed in the configuration since the last start is journaled.
            journal_configuration(settings, runtime.sessions)
        except BaseException:
            runtime.close()
            raise
        return runtime

    @property
    def strategy_offers(self) -> list[StorageOffer]:
        """The offers every object is written to, in strategy order."""
        return [self.offer_set.offers[name] for name in self.offer_set.strategy]

    def database_ok(self) -> tuple[bool, str]:
        """Whether the database answers."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("select 1"))
            return True, "ok"
        except Exception as exc:  # health must report, not raise
            return False, type(exc).__name__

    def close(self) -> None:
        self.sip_spool.clear()
        if self.tail_writer is not None and self.tail_writer.mark is not None:
            self.tail_writer.mark.close()
        self.engine.dispose()
        self.writer_turns.close()
