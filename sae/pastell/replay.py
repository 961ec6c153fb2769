"""Replays of the Pastell events (see :mod:`sae.recovery.replay`).

None changes what a rebuild restores. A transfer Pastell sent is archived by the ingest, whose
own events (``ingest.accepted``/``ingest.rejected``) rebuild it; the mailbox of Pastell's
ACKs and ATRs is not rebuilt. (Pastell accounts are service accounts of ``sae.auth.accounts``,
journaled as ``auth.user_created`` and not rebuilt either: their secret never reaches the
journal.)
These events stay in the journal as evidence of what Pastell sent, by whom, and when.
"""

from __future__ import annotations

from sae.recovery.replay import changes_no_state

changes_no_state(
    "pastell.received",
    "evidence of a receipt; the transfer itself is rebuilt from the ingest's events",
)
changes_no_state(
    "pastell.rejected",
    "a refusal before the ingest (hostile or unreadable attachments): nothing was stored",
)
