"""Copies whose quarantine should be over and is not: what the metrics and the alerts watch.

``sae.storage.quarantine`` seals a copy's GOVERNANCE lock into COMPLIANCE once its window has
passed; a copy its offer cannot seal keeps its due date pushed a lease ahead, round after
round, so the due date alone never looks late. The window's true end is the copy's
``stored_at`` plus its offer's ``quarantine_days``: a copy still unsealed
``SAE_QUARANTINE_OVERDUE_HOURS`` after that is overdue — withdrawable by an account allowed to
bypass governance, which the archive promised would stop.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sae.config import Settings
from sae.db import utcnow
from sae.storage.models import ObjectCopy
from sae.storage.offers import OfferSet


def overdue_by_offer(session: Session, offer_set: OfferSet, settings: Settings) -> dict[str, int]:
    """How many copies are overdue, offer by offer (offers with none left out)."""
    now = utcnow()
    grace = timedelta(hours=settings.quarantine_overdue_hours)
    counts: dict[str, int] = {}
    for name, offer in offer_set.offers.items():
        cutoff = now - timedelta(days=offer.quarantine_days) - grace
        count = session.scalar(
            select(func.count())
            .select_from(ObjectCopy)
            .where(
                ObjectCopy.offer == name,
                ObjectCopy.quarantine_ends_at.is_not(None),
                ObjectCopy.stored_at < cutoff,
            )
        )
        if count:
            counts[name] = int(count)
    return counts


def overdue_copies(session: Session, offer_set: OfferSet, settings: Settings) -> int:
    """How many copies are overdue on all offers."""
    return sum(overdue_by_offer(session, offer_set, settings).values())
