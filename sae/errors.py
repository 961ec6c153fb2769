"""The SAE error hierarchy, mapped to HTTP once (problem+json, RFC 9457).

::

    SAEError (code, status)   500  a bug, or an error without a more precise class
    ├── BadRequest            400  input refused (e.g. a search query SAE cannot run)
    ├── Unauthorized          401  no or unknown token
    ├── Forbidden             403  the token's role may not do this
    ├── NotFound              404
    ├── Conflict              409  e.g. the same MessageIdentifier twice
    ├── Gone                  410  destroyed archive
    ├── PayloadTooLarge       413
    ├── UnsupportedMediaType  415
    ├── UnprocessableEntity   422  well-formed but refused (a referential, a visa, a hold)
    ├── TooManyRequests       429  e.g. too many refused sign-ins (with Retry-After)
    └── ServiceUnavailable    503  a dependency (offer, TSA, database) does not answer
        └── SpoolFailed       503  the spool ($SAE_DATA_DIR/tmp) cannot be written

A SIP refused at ingest is not an exception: the transfer is recorded as refused, with its
faults (``sae.ingest.errors.IngestFault``), and the reply says so. This tree is checked against
the classes below by ``tests/test_errors.py``: a new class is drawn here too.

Domain packages subclass these with their own stable ``code``; the one handler in ``sae.app``
writes the problem document.
"""

from __future__ import annotations

from typing import Any, ClassVar


class SAEError(Exception):
    """Base of every error SAE reports to a caller."""

    code: ClassVar[str] = "sae.error"
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    def problem(self) -> dict[str, Any]:
        """The problem+json document for this error."""
        doc: dict[str, Any] = {
            "type": f"urn:sae:error:{self.code}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        doc.update(self.extra)
        return doc


class BadRequest(SAEError):
    code = "request.invalid"
    status = 400
    title = "Bad request"


class Unauthorized(SAEError):
    code = "auth.unauthorized"
    status = 401
    title = "Authentication required"


class Forbidden(SAEError):
    code = "auth.forbidden"
    status = 403
    title = "Forbidden"


class NotFound(SAEError):
    code = "not_found"
    status = 404
    title = "Not found"


class Conflict(SAEError):
    code = "conflict"
    status = 409
    title = "Conflict"


class Gone(SAEError):
    code = "gone"
    status = 410
    title = "Gone"


class PayloadTooLarge(SAEError):
    code = "request.too_large"
    status = 413
    title = "Payload too large"


class UnsupportedMediaType(SAEError):
    code = "request.media_type"
    status = 415
    title = "Unsupported media type"


class UnprocessableEntity(SAEError):
    code = "request.unprocessable"
    status = 422
    title = "Unprocessable entity"


class TooManyRequests(SAEError):
    code = "request.too_many"
    status = 429
    title = "Too many requests"


class ServiceUnavailable(SAEError):
    code = "service.unavailable"
    status = 503
    title = "Service unavailable"


class SpoolFailed(ServiceUnavailable):
    """A temporary file of the spool (``$SAE_DATA_DIR/tmp``: a SIP being received, a DIP being
    built) could not be written — its disk full, an I/O error. Nothing half-written is kept;
    retry once the operator has made room."""

    code = "service.spool_failed"
    title = "Temporary space unavailable"
