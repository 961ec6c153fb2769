"""Errors of the witness, each with a stable code and the HTTP status tlog-witness requires.

::

    SAEError
    ├── WitnessDataError        witness.data (500): --data DIR unusable (no key, a key file
    │                           readable by others, a key already there, a corrupt state file)
    ├── BadRequest
    │   └── MalformedRequest    witness.malformed (400): not an add-checkpoint body, or old > size
    ├── Forbidden
    │   └── LogSignatureRefused witness.log_signature (403): no valid signature by the log's key
    ├── NotFound
    │   └── UnknownOrigin       witness.unknown_origin (404): no trusted log has this origin
    ├── Conflict
    │   └── OldSizeConflict     witness.conflict (409): old is not the size last co-signed
    └── UnprocessableEntity
        └── InconsistentCheckpoint  witness.inconsistent (422): bad consistency proof, another
                                    root at the same size, a wrong empty-tree root
"""

from __future__ import annotations

from sae.errors import BadRequest, Conflict, Forbidden, NotFound, SAEError, UnprocessableEntity


class WitnessDataError(SAEError):
    code = "witness.data"
    title = "Witness data directory unusable"


class MalformedRequest(BadRequest):
    code = "witness.malformed"
    title = "Malformed add-checkpoint request"


class LogSignatureRefused(Forbidden):
    code = "witness.log_signature"
    title = "No valid signature by the log's key"


class UnknownOrigin(NotFound):
    code = "witness.unknown_origin"
    title = "Unknown log origin"


class OldSizeConflict(Conflict):
    """The request's ``old`` size is not the size this witness last co-signed for the origin;
    ``latest`` is that size (the 409's body)."""

    code = "witness.conflict"
    title = "Old size does not match"

    def __init__(self, detail: str, latest: int) -> None:
        super().__init__(detail, latest_size=latest)
        self.latest = latest


class InconsistentCheckpoint(UnprocessableEntity):
    code = "witness.inconsistent"
    title = "Checkpoint inconsistent with the witness's record"
