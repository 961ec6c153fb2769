"""Sealing tree heads: after each transfer, and at least every N minutes while facts arrive.

Any instance may seal; the database decides who does (``journal_state`` row ``sealer`` taken
with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, the unique ``tree_heads.tree_size`` everywhere),
so several API instances never seal the same leaves twice and never wait on each other. The
background sealers of every process also take turns through a lease (:func:`seal_in_turn`), so
that the installation seals — and pays the TSA for — one head per spacing, not one per process.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from sae import leases
from sae.config import Settings
from sae.db import transaction, utcnow
from sae.journal import service
from sae.journal.errors import KeyChanged
from sae.journal.keys import forget_journal_keys, load_journal_keys, record_tsa_check
from sae.journal.models import TreeHead
from sae.journal.notekey import load_note_key

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
    note_key = load_note_key(settings)
    for attempt in (1, 2):
        try:
            with transaction(sessions) as session:
                head = service.seal(
                    session,
                    signer=keys.signer,
                    tsa=keys.tsa,
                    origin=keys.origin,
                    note_key=note_key,
                    wait=wait,
                )
            break
        except KeyChanged:
            if attempt == 2:
                raise
            # ``sae journal rotate-key`` ran in another process: read the key file again, once.
            forget_journal_keys()
            keys = load_journal_keys(settings)
    if head is not None:
        at = head.tsa_time if head.tsa_time.tzinfo else head.tsa_time.replace(tzinfo=dt.UTC)
        # A verified token is as good a TSA check as /health's (an old head: an old check).
        record_tsa_check(settings, ok=True, detail=f"TSA time-stamped head {head.tree_size}", at=at)
    return head


#: The lease (:mod:`sae.leases`) of the process sealing the installation's next head.
SEALER_LEASE = "journal.sealer"
#: How long a sealer holds the lease while it seals: the TSA's round trip (10 s at most) and the
#: head's transaction, with room to spare. A sealer that dies meanwhile is replaced after that.
SEALING_HOLD = dt.timedelta(seconds=60)
#: A sealer that finds the lease held looks again after this long at most (or the spacing, if
#: longer): the holder usually finishes in a TSA round trip, then keeps the lease until its
#: spacing is over, which the second look learns.
LOOK_AGAIN = dt.timedelta(seconds=1)


@dataclass(frozen=True, slots=True)
class SealTurn:
    """What :func:`seal_in_turn` did: the head it sealed, or when leaves still waiting for a
    head should be looked at again (another process holds the turn, or the spacing runs)."""

    head: TreeHead | None = None
    again_at: dt.datetime | None = None


def seal_in_turn(
    sessions: sessionmaker[Session], settings: Settings, owner: str, *, due_only: bool = False
) -> SealTurn:
    """Seal a head for the whole installation, if leaves wait for one and it is this
    ``owner``'s turn: one head per ``SAE_SEAL_SPACING_SECONDS`` between all the processes and
    machines sharing the journal, each time-stamped once.

    The turn is the :data:`SEALER_LEASE`: taken before the TSA is asked, kept after the seal
    until the spacing from the new head is over, so that a second process poked meanwhile
    waits for the end of the spacing instead of time-stamping the same leaves (on SQLite, two
    sealers used to both call the TSA; on PostgreSQL the second stepped back and left its
    leaves to the next interval). ``due_only``: only when the latest head is older than
    ``SAE_SEAL_INTERVAL_MINUTES`` (the periodic round, not a poke).
    """
    spacing = dt.timedelta(seconds=settings.seal_spacing_seconds)
    now = utcnow()
    with sessions() as session:
        if due_only:
            if not service.seal_due(
                session, interval=dt.timedelta(minutes=settings.seal_interval_minutes)
            ):
                return SealTurn()
        elif not service.leaves_unsealed(session):
            return SealTurn()
        latest = session.scalar(
            select(TreeHead.timestamp).order_by(TreeHead.tree_size.desc()).limit(1)
        )
    if latest is not None and latest + spacing > now:
        # A head sealed on request (``wait``: a proof, the latest head) spaces too; never
        # longer than the spacing, whatever the clock of the machine that sealed it says.
        return SealTurn(again_at=min(latest, now) + spacing)
    if not leases.take(sessions, SEALER_LEASE, owner, max(SEALING_HOLD, spacing), now=now):
        held = leases.holder(sessions, SEALER_LEASE)
        soon = now + max(spacing, LOOK_AGAIN)
        return SealTurn(again_at=min(held[1], soon) if held is not None else soon)
    until = None
    try:
        head = seal_now(sessions, settings)
        if head is not None:
            until = head.timestamp + spacing
    finally:
        leases.release(sessions, SEALER_LEASE, owner, until=until)
    if head is None:
        # A head on request is being sealed by another process (PostgreSQL's sealer lock):
        # look again once it is done, in case it started before these leaves were committed.
        return SealTurn(again_at=utcnow() + max(spacing, LOOK_AGAIN))
    return SealTurn(head=head)
