"""Replays of the Pastell events (see :mod:`sae.recovery.replay`).

None changes what a rebuild restores. A transfer Pastell sent is archived by the ingest, whose
own events (``ingest.accepted``/``ingest.rejected``) rebuild it; the mailbox of Pastell's
ACKs and ATRs and its accounts are not rebuilt (an account's secret never reaches the journal:
after a rebuild each connector is given a new password, ``sae pastell-account create``).
These events stay in the journal as evidence of what Pastell sent, by whom, and when.
"""

from __future__ import annotations

from sae.recovery.replay import changes_no_state

changes_no_state(
    "pastell.account_created",
    "Pastell accounts are not rebuilt (their secret never reaches the journal): give each "
    "connector a new password after a rebuild",
)
changes_no_state(
    "pastell.received",
    "evidence of a receipt; the transfer itself is rebuilt from the ingest's events",
)
changes_no_state(
    "pastell.rejected",
    "a refusal before the ingest (hostile or unreadable attachments): nothing was stored",
)
