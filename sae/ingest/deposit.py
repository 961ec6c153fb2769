"""One deposit as a unit of work: ingest, commit, then ask for a tree head.

Shared by ``POST /api/v1/transfers``, the console's deposit form and ``sae deposit`` run
locally, so all follow exactly the same steps: a 2xx (or the console's "accepté") only after
the commit; on a lost race for the same MessageIdentifier, the copies this attempt wrote are
removed and the caller gets 409.

There are two ways to ingest, and only two:

- **ingest and commit** (:func:`ingest_and_commit`, here): a deposit that is its own unit of
  work. Every deposit of a SIP from outside takes it.
- **ingest within the caller's transaction** (:func:`sae.ingest.service.ingest`): the transfer
  is one part of a larger act that the caller commits or rolls back as a whole, such as the
  service archiving its own records (``sae.retention.records``: a visa's signed PDF, archived
  in the transaction that records the visa). It flushes, never commits, and asks for no head.

Accepted transfers are committed in groups (:class:`GroupCommit`): the transfers of concurrent
deposits that are ready at the same moment share one transaction, one journal append and one
commit. Each request thread does everything else on its own (reading the SIP, storing and
syncing its copies, building its rows), at the same time as the others.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.exc import IntegrityError

from sae import metrics
from sae.auth.service import Principal
from sae.db import transaction
from sae.errors import SAEError
from sae.fileio import TrailingDigest
from sae.ingest import service
from sae.ingest.errors import CommitFailed, DuplicateTransfer, JournalNotOnOffers
from sae.runtime import Runtime

if TYPE_CHECKING:
    from sae.journal.tails import TailWriter

log = logging.getLogger("sae.ingest")


def ingest_and_commit(
    runtime: Runtime,
    principal: Principal,
    path: Path,
    sip_digest: TrailingDigest | None = None,
) -> service.IngestOutcome:
    """Ingest the SIP at ``path`` and commit; accepted transfers get a tree head soon after.

    ``sip_digest``: the SIP's SHA-512 being computed as it was spooled (see ``prepare``).
    Counted in the metrics (``sae.metrics``): accepted with its bytes, or refused by the code
    of its first fault (or of the error that refused it), with the time it took either way."""
    started = time.monotonic()
    try:
        outcome = _ingest_and_commit(runtime, principal, path, sip_digest)
    except SAEError as exc:
        metrics.transfer_refused(exc.code, time.monotonic() - started)
        raise
    if outcome.accepted:
        metrics.transfer_accepted(outcome.transfer.total_bytes, time.monotonic() - started)
    else:
        errors = outcome.transfer.errors or []
        reason = str(errors[0].get("code", "")) if errors else ""
        metrics.transfer_refused(reason or "unknown", time.monotonic() - started)
    return outcome


def _ingest_and_commit(
    runtime: Runtime,
    principal: Principal,
    path: Path,
    sip_digest: TrailingDigest | None,
) -> service.IngestOutcome:
    env = service.IngestEnv(settings=runtime.settings, offers=runtime.strategy_offers)
    with runtime.sessions() as session:
        prepared = service.prepare(session, env, principal, path, sip_digest=sip_digest)
        if isinstance(prepared, service.IngestOutcome):  # refused: its row and journal event
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                raise _duplicate(prepared.transfer.message_identifier) from None
            return prepared
    group_commit(runtime).commit(prepared)
    try:
        if prepared.leaf_index is not None:
            secure_leaves(runtime, prepared.leaf_index + 1, prepared.transfer_row.id)
    finally:
        request_seal(runtime)
    return prepared.outcome


def _duplicate(message_identifier: str | None) -> DuplicateTransfer:
    return DuplicateTransfer(
        f"MessageIdentifier {message_identifier!r} was accepted concurrently by another request"
    )


@dataclass(eq=False)
class _Slot:
    transfer: service.AcceptedTransfer
    done: bool = False
    error: SAEError | None = None


class GroupCommit:
    """Commits accepted transfers, those ready at the same moment together.

    The first thread to arrive writes and commits the transfers waiting then (its own among
    them, at most :attr:`max_group`), in one transaction; the others wait for its verdict, and
    the transfers that arrived meanwhile make the next group, led by one of their threads. SQLite
    lets one connection write at a time, and the journal appends one batch at a time on any
    database: one transaction per transfer made every deposit wait for every other's commit.

    All or nothing per transfer still: when a group fails on a constraint (the same
    MessageIdentifier accepted concurrently), its transfers are committed one by one, so that
    only the duplicate fails (409); any other failure fails every transfer of the group (503,
    ``ingest.commit_failed``). A transfer that is not committed has its copies removed.
    """

    def __init__(self, runtime: Runtime, max_group: int = 64) -> None:
        self.runtime = runtime
        self.max_group = max_group
        self._cond = threading.Condition()
        self._queue: list[_Slot] = []
        self._leading = False
        #: Leads ended so far (a waiter for the group in progress watches it change).
        self._leads = 0

    def commit(self, transfer: service.AcceptedTransfer) -> None:
        """Commit ``transfer`` (with whatever is ready beside it); raises what refused it."""
        slot = _Slot(transfer)
        with self._cond:
            self._queue.append(slot)
        while True:
            with self._cond:
                while self._leading and not slot.done:
                    self._cond.wait()
                if slot.done:
                    break
                self._leading = True
                group = self._queue[: self.max_group]
                del self._queue[: self.max_group]
            errors: list[SAEError | None] | None = None
            try:
                errors = self._write(group)
            finally:
                # The verdicts and the end of this lead, at once: a thread woken by one sees
                # the other.
                with self._cond:
                    for i, member in enumerate(group):
                        member.error = (
                            errors[i] if errors is not None else CommitFailed("interrupted")
                        )
                        member.done = True
                    self._leading = False
                    self._leads += 1
                    self._cond.notify_all()
        if slot.error is not None:
            raise slot.error

    def settle(self, timeout: float = 0.1) -> None:
        """Wait for the group being committed now, if any (at most ``timeout`` seconds).

        The journal's tail (``secure_leaves``) is written after it: one tail then covers
        that group's transfers too, instead of one tail each, a write and its syncs on every
        offer saved per group under load. Without a group in progress, returns at once."""
        with self._cond:
            if self._leading:
                leads = self._leads
                self._cond.wait_for(lambda: self._leads != leads, timeout)

    def _write(self, group: Sequence[_Slot]) -> list[SAEError | None]:
        """Write and commit the group; each transfer's error (None: committed)."""
        offers = self.runtime.strategy_offers
        try:
            with self.runtime.writer_turns.turn(), transaction(self.runtime.sessions) as session:
                leaves = service.write_accepted(session, [slot.transfer for slot in group])
            # Committed: the tail that puts them on the offers before the 201s needs not read
            # them back.
            tail_writer(self.runtime).note(leaves)
            return [None] * len(group)
        except IntegrityError:
            if len(group) > 1:
                return [self._write([slot])[0] for slot in group]
            group[0].transfer.discard(offers)
            return [_duplicate(group[0].transfer.transfer_row.message_identifier)]
        except Exception as exc:
            log.exception("ingest.commit_failed transfers=%d", len(group))
            for slot in group:
                slot.transfer.discard(offers)
            return [
                CommitFailed(f"the catalogue did not take the transfer ({type(exc).__name__})")
                for _ in group
            ]


_group_commits_lock = threading.Lock()


def group_commit(runtime: Runtime) -> GroupCommit:
    """The runtime's :class:`GroupCommit` (one per process and database)."""
    with _group_commits_lock:
        if runtime.group_commit is None:
            runtime.group_commit = GroupCommit(runtime)
        return runtime.group_commit


_tail_writers_lock = threading.Lock()


def tail_writer(runtime: Runtime) -> TailWriter:
    """The runtime's :class:`~sae.journal.tails.TailWriter` (one per process)."""
    from sae.journal.tails import TailWriter

    with _tail_writers_lock:
        if runtime.tail_writer is None:
            runtime.tail_writer = TailWriter(
                runtime.sessions,
                runtime.settings,
                runtime.strategy_offers,
                before_write=group_commit(runtime).settle,
            )
        return runtime.tail_writer


def secure_leaves(runtime: Runtime, end: int, transfer_id: str) -> None:
    """Return once the journal's leaves ``[0, end)`` are on every offer of the strategy (in
    segments, or in a tail: :mod:`sae.journal.tails`); before that, no 201.

    Raises :class:`JournalNotOnOffers` when an offer refused the tail: the transfer is
    committed (its description and objects are on every offer already), its leaves will reach
    the offers with the next segment, and the depositor is told so instead of a 201."""
    from sae.journal.tails import TailNotWritten

    try:
        tail_writer(runtime).cover(end)
    except TailNotWritten as exc:
        log.error("ingest.journal_not_on_offers transfer=%s end=%d: %s", transfer_id, end, exc)
        raise JournalNotOnOffers(
            f"transfer {transfer_id} is accepted and committed, and its description and objects "
            f"are on every offer, but its journal leaves could not be written to them ({exc}): "
            "they will be with the next journal segment published. See "
            f"/api/v1/transfers/{transfer_id}; sending the SIP again answers 409."
        ) from exc


def request_seal(runtime: Runtime) -> None:
    """Ask for a tree head over everything committed, now that a transfer is durable.

    The background sealer coalesces a burst of deposits into one head; a process that runs no
    sealer seals here, and publishes the head's journal segment to the offers. The transfer is
    durable whatever happens: if the TSA or an offer is down, the next round seals or
    publishes.
    """
    sealer = runtime.sealer
    if sealer is not None:
        sealer.poke()
        return
    from sae.journal.sealing import seal_now

    try:
        head = seal_now(runtime.sessions, runtime.settings)
    except SAEError as exc:
        log.warning("journal.seal_deferred %s: %s", exc.code, exc.detail)
        return
    if head is not None:
        from sae.journal.publishing import publish_quietly

        publish_quietly(runtime.sessions, runtime.strategy_offers)
