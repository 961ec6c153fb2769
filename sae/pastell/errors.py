"""Errors of the Pastell-compatible routes (problem+json; Pastell only tells 200 from the rest)."""

from __future__ import annotations

from sae.errors import BadRequest, Conflict, NotFound, PayloadTooLarge, Unauthorized


class PastellUnauthorized(Unauthorized):
    code = "pastell.unauthorized"


class PastellBadMessage(BadRequest):
    """The request is not a call of the as@lae contract (missing part, unreadable bordereau)."""

    code = "pastell.bad_message"


class PastellNotFound(NotFound):
    """No transfer of this account with that (agency, identifier), or no such reply."""

    code = "pastell.not_found"


class PastellNotReady(Conflict):
    """The reply does not exist yet (Pastell asks again later; as@lae answered non-200 too)."""

    code = "pastell.not_ready"


class PastellChunkRefused(BadRequest):
    """A chunk out of order, of another session or account, after expiry, or past a cap."""

    code = "pastell.chunk_refused"


class PastellTooLarge(PayloadTooLarge):
    code = "pastell.too_large"
