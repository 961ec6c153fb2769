"""Replays of the auth events (see :mod:`sae.recovery.replay`).

Tokens are not rebuilt: their hashes are secrets' fingerprints that must never reach an offer,
and a rebuilt catalogue starts with a new admin token written as on a first start (issue 17).
Their creation and revocation stay in the journal as evidence of who could act, and when.
"""

from __future__ import annotations

from sae.recovery.replay import changes_no_state

_NOT_REBUILT = (
    "API tokens are not rebuilt (nothing secret goes to an offer): a rebuilt catalogue gets a "
    "new admin token, as on a first start"
)

changes_no_state("auth.token_created", _NOT_REBUILT)
changes_no_state("auth.token_revoked", _NOT_REBUILT)
