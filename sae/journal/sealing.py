"""Sealing tree heads: after each transfer, and at least every N minutes while facts arrive.

Any instance may seal; the database decides who does (``journal_state`` row ``sealer`` taken
with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, the unique ``tree_heads.tree_size`` everywhere),
so several API instances never seal the same leaves twice and never wait on each other.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from sae.config import Settings
from sae.db import transaction
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


def seal_if_due(sessions: sessionmaker[Session], settings: Settings) -> TreeHead | None:
    """Seal when leaves arrived and the last head is older than ``SAE_SEAL_INTERVAL_MINUTES``."""
    interval = dt.timedelta(minutes=settings.seal_interval_minutes)
    with sessions() as session:
        due = service.seal_due(session, interval=interval)
    return seal_now(sessions, settings) if due else None


def last_sealed_at(sessions: sessionmaker[Session]) -> dt.datetime | None:
    """When the latest head was sealed (by any instance); None before the first."""
    with sessions() as session:
        return session.scalar(
            select(TreeHead.timestamp).order_by(TreeHead.tree_size.desc()).limit(1)
        )
