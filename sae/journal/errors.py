"""Errors of the journal, each with a stable code.

::

    SAEError
    ├── JournalError                 journal.error (500)
    │   ├── JournalCorrupt           journal.corrupt: a stored leaf, node or head does not check
    │   ├── WitnessesConfigError     journal.witnesses_invalid: SAE_WITNESSES_FILE is refused
    │   └── SigningKeyError          journal.signing_key: the SAE key is missing or unreadable
    │       ├── KeyMissing           journal.key_missing: the pinned key's file is gone
    │       ├── KeyChanged           journal.key_changed: the key file is not the pinned key
    │       └── KeyFileMode          journal.key_file_mode: a private key file wider than 0600
    ├── NotFound
    │   └── HeadNotFound             journal.head_not_found (404)
    ├── BadRequest
    │   └── InvalidProofRequest      journal.invalid_proof_request (400): sizes out of range
    ├── ServiceUnavailable
    │   └── TsaUnavailable           journal.tsa_unavailable (503): the TSA did not answer
    └── TimestampInvalid             journal.timestamp_invalid.<check> (502): a token is refused
        (check: status, format, imprint, nonce, signature, ess, eku, chain, policy)
"""

from __future__ import annotations

from typing import Any

from sae.errors import BadRequest, NotFound, SAEError, ServiceUnavailable


class JournalError(SAEError):
    code = "journal.error"
    status = 500
    title = "Journal error"


class JournalCorrupt(JournalError):
    code = "journal.corrupt"
    title = "Journal corrupt"


class SigningKeyError(JournalError):
    code = "journal.signing_key"
    title = "Journal signing key unusable"


class WitnessesConfigError(JournalError):
    """``SAE_WITNESSES_FILE`` is refused at start; the message names the problem."""

    code = "journal.witnesses_invalid"
    title = "Witnesses configuration refused"


class KeyMissing(SigningKeyError):
    """A key file is missing once the journal has pinned its key: never re-created silently."""

    code = "journal.key_missing"
    title = "Journal key file missing"


class KeyChanged(SigningKeyError):
    """The key file holds another key than the one the journal (or configuration) pins."""

    code = "journal.key_changed"
    title = "Journal key changed"


class KeyFileMode(SigningKeyError):
    """A private key file others may read (mode wider than 0600)."""

    code = "journal.key_file_mode"
    title = "Key file mode too wide"


class HeadNotFound(NotFound):
    code = "journal.head_not_found"
    title = "No such tree head"


class InvalidProofRequest(BadRequest):
    code = "journal.invalid_proof_request"
    title = "Invalid proof request"


class TsaUnavailable(ServiceUnavailable):
    code = "journal.tsa_unavailable"
    title = "Time-stamping authority unavailable"


class TimestampInvalid(SAEError):
    """A time-stamp token fails one named check (``check`` is stable, see module docstring)."""

    code = "journal.timestamp_invalid"
    status = 502
    title = "Time-stamp token refused"

    CHECKS = ("status", "format", "imprint", "nonce", "signature", "ess", "eku", "chain", "policy")

    def __init__(self, check: str, detail: str, **extra: Any) -> None:
        if check not in self.CHECKS:
            raise ValueError(f"unknown time-stamp check {check!r}")
        super().__init__(f"time-stamp token refused ({check}): {detail}", check=check, **extra)
        self.check = check
