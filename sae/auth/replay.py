"""Replays of the auth events (see :mod:`sae.recovery.replay`).

Accounts and tokens are not rebuilt: token hashes are secrets' fingerprints and password hashes
are secrets that must never reach an offer (so the journal's payloads carry neither), and a
rebuilt catalogue starts with the first-start account and a new admin token written as on a
first start (issue 17); the administrator then creates the accounts again (LDAP and OIDC
accounts come back by themselves at their next sign-in). The events stay in the journal as
evidence of who could act, and when.
"""

from __future__ import annotations

from sae.recovery.replay import changes_no_state

_NOT_REBUILT = (
    "accounts and API tokens are not rebuilt (nothing secret goes to an offer): a rebuilt "
    "catalogue gets the first-start account and a new admin token, as on a first start"
)

for _type in (
    "auth.token_created",
    "auth.token_revoked",
    "auth.user_created",
    "auth.user_updated",
    "auth.user_disabled",
    "auth.user_enabled",
    "auth.password_set",
):
    changes_no_state(_type, _NOT_REBUILT)

changes_no_state(
    "auth.signed_in", "a sign-in changes no archive state (last_login_at is not rebuilt)"
)
