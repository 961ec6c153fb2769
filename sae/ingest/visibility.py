"""Who may see a transfer: one rule, for the API, the console and anything after them.

Admins and archivists see every transfer; a depositor sees the transfers it submitted and those
of the producing services it acts for; any other caller, what it submitted. "It submitted": its
account did, with any of its tokens or console sessions (``Principal.submitter_ids``). The rule
is written twice on purpose, side by side: as a predicate on a transfer in hand
(:func:`may_see_transfer`) and as a query (:func:`visible_transfers`), so that a list is
filtered in SQL; a test checks that the two agree.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, Select, or_, select
from sqlalchemy.orm import Session

from sae.auth.service import Principal
from sae.errors import NotFound
from sae.ingest.models import Transfer

#: The roles that see every transfer.
SEE_ALL = ("admin", "archivist")


def may_see_transfer(principal: Principal, transfer: Transfer) -> bool:
    """Whether ``principal`` may see ``transfer``."""
    if principal.role in SEE_ALL:
        return True
    if transfer.submitted_by in principal.submitter_ids:
        return True
    return principal.role == "depositor" and transfer.producer in principal.producers


def visible_transfers(principal: Principal) -> Select[Transfer]:
    """The transfers ``principal`` may see, as a query to filter and order further."""
    stmt = select(Transfer)
    if principal.role in SEE_ALL:
        return stmt
    seen: ColumnElement[bool] = Transfer.submitted_by.in_(principal.submitter_ids)
    if principal.role == "depositor" and principal.producers:
        seen = or_(seen, Transfer.producer.in_(principal.producers))
    return stmt.where(seen)


def get_visible_transfer(session: Session, principal: Principal, transfer_id: str) -> Transfer:
    """The transfer ``transfer_id``, if ``principal`` may see it; else 404 ``no transfer …``."""
    transfer = session.get(Transfer, transfer_id)
    if transfer is None or not may_see_transfer(principal, transfer):
        # Same answer as for a missing one: a depositor learns nothing of others' transfers.
        raise NotFound(f"no transfer {transfer_id}")
    return transfer
